"""Image / mask pair folders for training and validation (torch ``Dataset``, no mmengine).

Two folder layouts are recognised per root, and several roots are concatenated:

* ``ROOT/images/NAME.jpg`` + ``ROOT/masks/NAME.png`` (the layout of ``../shared/data``);
* ``ROOT/NAME_im.jpg`` + ``ROOT/NAME_gt.png`` (the published training sets' layout).

Training items (``train=True``): the published augmentation (random crop with zero padding,
flip, colour jitter, random grayscale; :mod:`.transforms`) and the published perturbation to a
random IoU target in ``iou_range`` (:mod:`.perturbation`). Validation items (``train=False``):
the whole image, and a coarse mask that is the same for a given index every time (perturbation
seeded by ``seed`` and the index, or the ``8x`` down-up-sampled ground truth, binarised or,
with ``coarse='lowres_soft'``, as its bilinear probability).

Each item is a dict:
    ``image``: (3, S, S) float32, RGB / 255 normalised with ImageNet mean / std;
    ``seg``:   (1, S, S) float32 coarse mask in {-1, +1}; soft low-resolution inputs
               (``soft_lowres_prob``, ``coarse='lowres_soft'``) in [-1, 1], ``2 p - 1`` of
               their probability ``p`` (what a refiner with ``soft_input=True`` feeds the
               network for a 0..255 mask);
    ``gt``:    (1, S, S) float32 soft ground truth in [0, 1];
    ``index``: int.

Randomness: item ``i`` of a training set draws from a generator seeded with
``(seed, i, n)`` where ``n`` counts how often this process has drawn item ``i``; with the
samplers used here each index is handled by one worker at a time, so the augmentation stream is
reproducible for a given seed and worker count and differs between epochs.
"""
from __future__ import annotations

import glob
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..inference.crm import MAX_WORK_SCALE, enlarge_input, work_size
from ..io import read_image, read_mask
from ..masks import network_mask
from ..options import check_float
from .perturbation import lowres_mask, perturb_mask
from .transforms import color_jitter, random_crop_flip, random_grayscale, random_rescale

__all__ = ['find_pairs', 'MaskPairDataset', 'IMAGENET_MEAN', 'IMAGENET_STD']

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def _first_existing(stem: str, exts: Sequence[str]) -> Optional[str]:
    for ext in exts:
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def find_pairs(root: Union[str, os.PathLike]) -> List[Tuple[str, str]]:
    """All (image path, mask path) pairs under ``root``, sorted by name.

    Raises:
        ValueError: ``root`` is missing or holds no pair in either layout.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f'dataset root {root!r} is not a directory')
    pairs: List[Tuple[str, str]] = []
    img_dir, mask_dir = os.path.join(root, 'images'), os.path.join(root, 'masks')
    if os.path.isdir(img_dir) and os.path.isdir(mask_dir):
        for img in sorted(os.listdir(img_dir)):
            stem, ext = os.path.splitext(img)
            if ext.lower() not in _IMAGE_EXTS:
                continue
            mask = _first_existing(os.path.join(mask_dir, stem), ('.png', '.bmp', '.jpg'))
            if mask is not None:
                pairs.append((os.path.join(img_dir, img), mask))
    for gt in sorted(glob.glob(os.path.join(root, '*_gt.png'))):
        img = _first_existing(gt[:-len('_gt.png')] + '_im', _IMAGE_EXTS)
        if img is not None:
            pairs.append((img, gt))
    if not pairs:
        raise ValueError(f'no image / mask pairs in {root!r}: expected images/*.jpg + '
                         f'masks/*.png or *_im.jpg + *_gt.png')
    return pairs


def read_pair(image_path: str, mask_path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read an (H, W, 3) uint8 RGB image and its (H, W) uint8 mask; sizes must agree. The
    package's readers (:func:`~segrefine_plugins.io.read_image` / ``read_mask``): a corrupt
    or undecodable file or a colour mask raises ``ImageReadError`` (a ValueError) naming it."""
    image, mask = read_image(image_path), read_mask(mask_path)
    if image.shape[:2] != mask.shape:
        raise ValueError(f'{image_path!r} is {image.shape[1]}x{image.shape[0]} but its mask '
                         f'{mask_path!r} is {mask.shape[1]}x{mask.shape[0]}')
    return image, mask


def to_tensors(image: np.ndarray, coarse: np.ndarray, gt: np.ndarray,
               soft: bool = False) -> Dict[str, torch.Tensor]:
    """uint8 image / coarse mask / ground truth -> the normalised tensors of an item.

    The coarse mask becomes the network's mask input exactly as the refiners make it
    (:func:`segrefine_plugins.masks.network_mask`): binarised at > 127 to {-1, +1} (the
    published input), or with ``soft`` read linearly, ``2 v / 255 - 1`` (0 / 255 masks give
    the same values either way).
    """
    img = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    seg = network_mask(torch.from_numpy(np.ascontiguousarray(coarse, dtype=np.uint8)), soft)
    return {'image': torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            'seg': seg[None],
            'gt': torch.from_numpy(gt.astype(np.float32) / 255.0)[None]}


def enlarge_item(image: np.ndarray, coarse: np.ndarray, gt: np.ndarray, size: Tuple[int, int],
                 soft: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image, (H, W) uint8 coarse mask and ground truth -> the same at
    ``size = (H', W')``: image and coarse mask as ``CRMRefiner(work_scale=...)`` enlarges them
    (bicubic; bilinear re-binarised unless ``soft``), the ground truth bilinearly (uint8)."""
    big, mask = enlarge_input(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                              torch.from_numpy(np.ascontiguousarray(coarse)), size, soft)
    gt_big = cv2.resize(gt, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big.numpy().transpose(1, 2, 0)), mask.numpy(), gt_big


class MaskPairDataset(Dataset):
    """Image / mask pairs from one or more roots (see the module docstring).

    Args:
        roots: one root or a list of roots (concatenated in order).
        train: augment + random perturbation (True) or whole images + fixed coarse masks.
        crop_size: training crop side (published: 224).
        iou_range: IoU targets of the perturbation, drawn uniformly (published: [0.8, 1.0)).
        coarse: validation coarse kind, ``'perturb'``, ``'lowres'`` or ``'lowres_soft'`` (the
            low-resolution probability, read linearly: see ``soft_lowres_prob``).
        val_iou: IoU target of the validation perturbation.
        lowres_factor: factor of the ``'lowres'`` kind; in training, a sequence of factors
            draws one uniformly per item (validation needs a single factor).
        lowres_prob: training only: probability of using the down-up-sampled ground truth as
            the coarse input instead of the perturbation (0 = published recipe).
        soft_lowres_prob: training only: probability that such a low-resolution input is
            given as its bilinear probability (``lowres_mask(..., soft=True)``, read linearly
            as a refiner with ``soft_input=True`` reads it) instead of binarised at 0.5: trains
            a refiner for adapters that pass the segmenter's probability. 0 (default) draws
            nothing extra, so existing recipes keep their random streams.
        scale_range: training only: resize image and mask by a random factor in this range
            before cropping (None = no resize, the published recipe). Lets a small crop see
            more of the object.
        perturb_symmetric: use ``perturb_mask(..., symmetric=True)``: the published
            perturbation without its down-right bias (which teaches a refiner to move
            perturbed-looking boundaries up-left); training and validation. False = published.
        work_scale: train a refiner for ``CRMRefiner(work_scale=s)`` (>= 1; 1 = off, the
            published recipe): the crop (``crop_size / s`` px) and its coarse mask are made at
            the image's own scale, then image and coarse mask are enlarged to ``crop_size``
            exactly as that refiner enlarges its input (``inference.crm.enlarge_input``) and
            the ground truth bilinearly. Validation items are whole images enlarged ``s``
            times (scored at the enlarged size). Same degradations, seen as the refiner sees
            them at that scale. The crop side is rounded, so the enlargement is exactly ``s``
            only when ``crop_size / s`` is whole (160 at 2: 80 -> 160; at 1.5: 107 -> 160).
        seed: base seed of all randomness.
        subset: ``(start, stop)``: use only these pairs (after concatenation, sorted by
            name), e.g. to hold out the tail of a folder for validation, or a handful for tests.
    """

    def __init__(self, roots: Union[str, Sequence[str]], train: bool = True,
                 crop_size: int = 224, iou_range: Tuple[float, float] = (0.8, 1.0),
                 coarse: str = 'perturb', val_iou: float = 0.8,
                 lowres_factor: Union[int, Sequence[int]] = 8,
                 lowres_prob: float = 0.0, scale_range: Optional[Tuple[float, float]] = None,
                 perturb_symmetric: bool = False, soft_lowres_prob: float = 0.0,
                 work_scale: float = 1.0, seed: int = 0, subset: Optional[Tuple[int, int]] = None) -> None:
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        if not roots:
            raise ValueError('at least one dataset root is needed')
        if coarse not in ('perturb', 'lowres', 'lowres_soft'):
            raise ValueError(f"coarse must be 'perturb', 'lowres' or 'lowres_soft', got "
                             f"{coarse!r}")
        for name, value in (('lowres_prob', lowres_prob), ('soft_lowres_prob', soft_lowres_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        self.pairs = [p for r in roots for p in find_pairs(os.path.expanduser(os.fspath(r)))]
        if subset is not None:
            start, stop = (int(v) for v in subset)
            self.pairs = self.pairs[start:stop]
            if not self.pairs:
                raise ValueError(f'subset {tuple(subset)} selects no pair')
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f'scale_range must be (lo, hi) with 0 < lo <= hi, got {scale_range}')
        self.scale_range = None if scale_range is None else tuple(float(v) for v in scale_range)
        self.train, self.crop_size = bool(train), int(crop_size)
        self.iou_range, self.coarse, self.val_iou = tuple(iou_range), coarse, float(val_iou)
        factors = ((lowres_factor,) if isinstance(lowres_factor, (int, np.integer))
                   else tuple(lowres_factor))
        if not factors or any(int(f) != f or f < 1 for f in factors):
            raise ValueError(f'lowres_factor must be an integer >= 1 or a non-empty sequence '
                             f'of them, got {lowres_factor!r}')
        if len(factors) > 1 and not train and coarse != 'perturb':
            raise ValueError(f'validation with coarse={coarse!r} needs a single lowres_factor, '
                             f'got {lowres_factor!r}')
        self.lowres_factors = tuple(int(f) for f in factors)
        self.lowres_factor, self.lowres_prob = self.lowres_factors[0], float(lowres_prob)
        self.seed, self.perturb_symmetric = int(seed), bool(perturb_symmetric)
        self.soft_lowres_prob = float(soft_lowres_prob)
        self.work_scale = check_float('work_scale', work_scale, 1.0, MAX_WORK_SCALE)
        if round(self.crop_size / self.work_scale) < 1:
            raise ValueError(f'crop_size {crop_size} is too small for work_scale {work_scale}')
        self._draws: Dict[int, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self.pairs)

    def generator(self, index: int) -> np.random.Generator:
        """The generator item ``index`` draws from next (advances the per-item counter)."""
        n = self._draws[index]
        self._draws[index] = n + 1
        return np.random.default_rng([self.seed, index, n])

    def __getitem__(self, index: int) -> Dict[str, Union[torch.Tensor, int]]:
        if not 0 <= index < len(self.pairs):
            raise IndexError(f'index {index} out of range for {len(self.pairs)} pairs')
        image, gt = read_pair(*self.pairs[index])
        soft = False
        if self.train:
            rng = self.generator(index)
            if self.scale_range is not None:
                image, gt = random_rescale(image, gt, self.scale_range, rng)
            image, gt = random_crop_flip(image, gt, round(self.crop_size / self.work_scale),
                                         rng)
            image = random_grayscale(color_jitter(image, rng), rng)
            if self.lowres_prob > 0 and rng.random() < self.lowres_prob:
                factor = (self.lowres_factor if len(self.lowres_factors) == 1
                          else self.lowres_factors[rng.integers(len(self.lowres_factors))])
                soft = self.soft_lowres_prob > 0 and rng.random() < self.soft_lowres_prob
                coarse = lowres_mask(gt, int(factor), soft=soft)
            else:
                coarse = perturb_mask(gt, rng, iou_range=self.iou_range,
                                      symmetric=self.perturb_symmetric)
        elif self.coarse != 'perturb':
            soft = self.coarse == 'lowres_soft'
            coarse = lowres_mask(gt, self.lowres_factor, soft=soft)
        else:
            coarse = perturb_mask(gt, np.random.default_rng([self.seed, index]),
                                  iou_target=self.val_iou, symmetric=self.perturb_symmetric)
        if self.work_scale != 1.0:
            size = ((self.crop_size, self.crop_size) if self.train
                    else work_size(*gt.shape[:2], self.work_scale))
            image, coarse, gt = enlarge_item(image, coarse, gt, size, soft)
        item: Dict[str, Union[torch.Tensor, int]] = dict(to_tensors(image, coarse, gt, soft))
        item['index'] = index
        return item
