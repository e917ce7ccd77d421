"""``SegRefineWrapper``: a detectron2 meta-architecture that refines another one's outputs.

With a yacs config::

    MODEL:
      META_ARCHITECTURE: SegRefineWrapper
      SEGREFINE: {INNER_META_ARCHITECTURE: PanopticFPN, REFINER: {TYPE: CRM, CHECKPOINT: ...}}

``build_model(cfg)`` builds the inner meta-architecture from the same config and wraps it;
``DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)`` loads the inner model's usual weights
(the wrapper's state dict has exactly the inner model's keys, see below). For models built by
other means (LazyConfig, your own code): ``model = wrap_model(model, refiner)``.

In eval mode the wrapper runs the inner model, then refines (as configured) ``panoptic_seg``
(:mod:`.panoptic`), ``instances`` (:mod:`.instances`) and ``sem_seg`` of every output. In
training mode, or with ``enabled=False`` / no refiner, it returns the inner model's outputs
untouched (the very same objects).

**Image the refiner sees.** Outputs are at the original size (``height`` x ``width``) while the
model input ``image`` is usually resized. ``image_source='auto'`` (default) uses the input
itself when it already has the output size, else the original file (``file_name``, read with
detectron2's ``read_image``, EXIF orientation applied) when it exists and has the output size
— refinement gains most from full-resolution detail — else the input resized back
(``cv2.INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging). ``'input'`` and
``'file'`` force one source.

**Soft coarse input** (``soft_coarse=True``, opt-in): where the inner model's output carries
probabilities, the refiner gets them instead of the hard mask: ``sem_seg`` (the softmax over
its C scores when they are logits, as detectron2's SemanticSegmentor and PanopticFPN give;
scores without a negative value are probabilities, clipped to 1), float
``instances.pred_masks``, and the ``panoptic_seg`` segments that have a source in the same
output (a thing: its instance's float mask through ``instance_id``; a stuff segment: the
``sem_seg`` probability of its ``category_id``; :mod:`.soft_coarse`). Boolean masks
(detectron2's usual pasted masks) carry none and stay hard. Needs a refiner built with
``soft_input=True`` and ``mask_threshold=0.5``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Union

import cv2
import numpy as np
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..inference.base import Refiner, tensor_from_numpy
from ..multiobject import RoiOptions, refine_label_map
from ..options import to_bool
from ..threads import configure_threads
from .config import IMAGE_SOURCES, build_refiner_from_cfg
from .distributed import unwrap_parallel
from .instances import refine_instances
from .panoptic import check_segments_info, refine_panoptic
from .soft_coarse import panoptic_soft_masks, sem_seg_probs

_INNER = 'model.'


def _strip_inner_prefix(module: nn.Module, state_dict: Dict[str, Any], prefix: str,
                        local_metadata: Any) -> None:
    """state_dict post-hook: ``<prefix>model.X`` -> ``<prefix>X`` (the inner model's layout)."""
    inner = prefix + _INNER
    items = list(state_dict.items())
    for key, _ in items:
        del state_dict[key]
    for key, value in items:
        state_dict[prefix + key[len(inner):] if key.startswith(inner) else key] = value


def _add_inner_prefix(module: nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: accept the inner model's keys (and already prefixed ones)."""
    inner = prefix + _INNER
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)


def image_for_refiner(inp: Dict[str, Any], input_format: str = 'BGR',
                      source: str = 'auto') -> np.ndarray:
    """The (height, width, 3) uint8 RGB image an output of ``inp`` is to be refined on.

    Args:
        inp: one detectron2 model input: ``image`` (C, H', W') tensor in ``input_format``,
            optional ``height`` / ``width`` (output size, default H' x W') and ``file_name``.
        input_format: the model's ``INPUT.FORMAT``: 'BGR' or 'RGB'.
        source: 'auto', 'input' or 'file' (see the module docstring).

    Raises:
        ValueError: another format or source, an image that is not (3, H, W) with values in
            0..255, or ``source='file'`` without a readable file of the output size.
    """
    if source not in IMAGE_SOURCES:
        raise ValueError(f'image source must be one of {IMAGE_SOURCES}, got {source!r}')
    if input_format not in ('BGR', 'RGB'):
        raise ValueError(f'INPUT.FORMAT {input_format!r} is not supported (BGR or RGB)')
    image = inp.get('image')
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f'input "image" must be a (3, H, W) tensor, got '
                         f'{getattr(image, "shape", type(image).__name__)}')
    height = int(inp.get('height', image.shape[1]))
    width = int(inp.get('width', image.shape[2]))
    if height < 1 or width < 1 or min(image.shape[1:]) < 1:
        raise ValueError(f'input image {tuple(image.shape)} / output size {height}x{width}: '
                         f'sides must be >= 1')
    same_size = tuple(image.shape[1:]) == (height, width)
    if source == 'file' or (source == 'auto' and not same_size):
        from_file = _read_file(inp.get('file_name'), (height, width))
        if from_file is not None:
            return from_file
        if source == 'file':
            raise ValueError(f'image source "file": no readable file of size {height}x{width} '
                             f'at file_name={inp.get("file_name")!r}')
    arr = image.detach().cpu()
    if arr.dtype != torch.uint8:
        if not arr.is_floating_point() or not bool(torch.isfinite(arr).all()) \
                or float(arr.min()) < 0 or float(arr.max()) > 255:
            raise ValueError('input "image" must be uint8, or float in 0..255')
        if float(arr.max()) <= 1.0 and bool((arr != arr.round()).any()):
            raise ValueError('input "image" is float with every value <= 1 and fractions: it '
                             'looks scaled to 0..1, but detectron2 inputs are 0..255 (multiply '
                             'by 255)')
        arr = arr.round()
    arr = arr.to(torch.uint8).permute(1, 2, 0).numpy()
    if input_format == 'BGR':
        arr = arr[:, :, ::-1]
    if not same_size:
        shrink = height * width < arr.shape[0] * arr.shape[1]
        arr = cv2.resize(arr, (width, height),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(arr)


def _read_file(file_name: Optional[str], size: tuple) -> Optional[np.ndarray]:
    if not file_name or not os.path.isfile(file_name):
        return None
    from detectron2.data.detection_utils import read_image

    img = read_image(file_name, format='RGB')
    if img.ndim != 3 or tuple(img.shape[:2]) != tuple(size):
        return None
    return np.require(img, dtype=np.uint8, requirements=['C', 'W'])  # PIL arrays are read-only


def wrapper_options(cfg: Any) -> Dict[str, Any]:
    """``MODEL.SEGREFINE`` -> :class:`SegRefineWrapper`'s keyword arguments (not model / refiner)."""
    seg = cfg.MODEL.SEGREFINE
    roi = RoiOptions(roi_padding=seg.ROI_PADDING, min_area=seg.MIN_AREA,
                     stuff_scale=seg.STUFF_SCALE,
                     max_upscale=seg.MAX_UPSCALE if seg.MAX_UPSCALE else None,
                     roi_batch_size=seg.ROI_BATCH_SIZE,
                     gate_min_iou=seg.GATE_MIN_IOU if seg.GATE_MIN_IOU >= 0 else None,
                     gate_min_confidence=(seg.GATE_MIN_CONFIDENCE
                                          if seg.GATE_MIN_CONFIDENCE >= 0 else None),
                     gate_pixel_confidence=(seg.GATE_PIXEL_CONFIDENCE
                                            if seg.GATE_PIXEL_CONFIDENCE >= 0 else None),
                     gate_min_change_depth=(seg.GATE_MIN_CHANGE_DEPTH
                                            if seg.GATE_MIN_CHANGE_DEPTH >= 0 else None),
                     gate_trust_change_depth=(seg.GATE_TRUST_CHANGE_DEPTH
                                              if seg.GATE_TRUST_CHANGE_DEPTH >= 0 else None),
                     gate_trust_min_confidence=seg.GATE_TRUST_MIN_CONFIDENCE)
    return dict(enabled=seg.ENABLED, roi_options=roi, threads=seg.THREADS or None,
                refine_panoptic=seg.REFINE_PANOPTIC,
                refine_instances=seg.REFINE_INSTANCES, refine_sem_seg=seg.REFINE_SEM_SEG,
                instances_fuse=seg.INSTANCES_FUSE, recompute_boxes=seg.RECOMPUTE_BOXES,
                mask_threshold=seg.MASK_THRESHOLD, image_source=seg.IMAGE_SOURCE,
                input_format=cfg.INPUT.FORMAT, soft_coarse=seg.SOFT_COARSE)


def _wrapper_class(cls: type) -> type:
    if 'SegRefineWrapper' not in META_ARCH_REGISTRY:
        META_ARCH_REGISTRY.register(cls)
    return cls


@_wrapper_class
class SegRefineWrapper(nn.Module):
    """Runs ``model`` and refines its outputs with ``refiner`` (eval mode only).

    Args:
        model: any detectron2 model (``list[dict] -> list[dict]``).
        refiner: a segrefine Refiner, or None (no refinement).
        enabled: False returns the model's outputs untouched.
        roi_options: the multi-object protocol's options
            (:class:`~segrefine_plugins.multiobject.RoiOptions` or a dict of its fields;
            ``min_area`` defaults to 0 here); ``**roi_kwargs`` replace single fields, e.g.
            ``wrap_model(model, refiner, max_upscale=2.0, gate_min_iou=0.8)``.
        refine_panoptic, refine_instances, refine_sem_seg: which outputs to refine.
        instances_fuse: instances are entities (non-overlapping): fuse them.
        recompute_boxes: recompute ``pred_boxes`` from the refined masks.
        mask_threshold: binarises float ``pred_masks``.
        image_source: 'auto', 'input' or 'file' (module docstring).
        threads: torch intra-op threads for this process (OpenCV gets 1), set once through
            :func:`segrefine_plugins.threads.configure_threads`; None leaves them as they are.
        input_format: the model's INPUT.FORMAT ('BGR' / 'RGB'); default: ``model.input_format``
            when it has one, else 'BGR'.
        soft_coarse: give the refiner the model's probabilities where the output has them
            (module docstring). Needs a refiner with ``soft_input=True`` (others binarise
            their input, so the soft values would be lost): refused otherwise.

    ``state_dict()`` / ``load_state_dict()`` use the inner model's keys, so checkpoints of the
    inner model load into the wrapper and the wrapper's checkpoints into the inner model.
    Attributes the wrapper lacks are looked up on the inner model (``model.device`` ...), and
    through it on the module of a ``DistributedDataParallel`` model.
    """

    @configurable
    def __init__(self, *, model: nn.Module, refiner: Optional[Refiner], enabled: bool = True,
                 roi_options: Union[RoiOptions, Mapping[str, Any], None] = None,
                 refine_panoptic: bool = True, refine_instances: bool = True,
                 refine_sem_seg: bool = False, instances_fuse: bool = False,
                 recompute_boxes: bool = False, mask_threshold: float = 0.5,
                 image_source: str = 'auto', input_format: Optional[str] = None,
                 threads: Optional[int] = None, soft_coarse: bool = False,
                 **roi_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f'model must be an nn.Module, got {type(model).__name__}')
        if refiner is not None and not callable(getattr(refiner, 'refine', None)):
            raise ValueError(f'refiner must be a segrefine Refiner or None, got '
                             f'{type(refiner).__name__}')
        if image_source not in IMAGE_SOURCES:
            raise ValueError(f'image_source must be one of {IMAGE_SOURCES}, got {image_source!r}')
        self.soft_coarse = to_bool(soft_coarse, 'soft_coarse')
        if self.soft_coarse and refiner is not None and not getattr(refiner, 'soft_input', False):
            raise ValueError('soft_coarse=True needs a refiner built with soft_input=True '
                             '(MODEL.SEGREFINE.SOFT_COARSE builds it so; the published '
                             'refiners binarise their input)')
        self.model = model
        self.refiner = refiner
        self.enabled = to_bool(enabled, 'enabled')
        roi = RoiOptions.from_any(roi_options, **roi_kwargs)
        # min_area 0 here, as MODEL.SEGREFINE.MIN_AREA: the Python and yacs paths refine the
        # same (RoiOptions' None would mean the label-map default 1024 on the sem_seg path)
        self.roi_options = roi if roi.min_area is not None else roi.replace(min_area=0)
        if threads is not None:   # torch / OpenCV pools sized once (no oversubscription)
            configure_threads(threads)
        #: segments / instances that had an ROI kept coarse by the do-no-harm gate, and all
        #: refined ones, since construction
        self.segments_gated = 0
        self.segments_refined = 0
        self.refine_panoptic = to_bool(refine_panoptic, 'refine_panoptic')
        self.refine_instances = to_bool(refine_instances, 'refine_instances')
        self.refine_sem_seg = to_bool(refine_sem_seg, 'refine_sem_seg')
        self.instances_fuse = to_bool(instances_fuse, 'instances_fuse')
        self.recompute_boxes = to_bool(recompute_boxes, 'recompute_boxes')
        self.mask_threshold = float(mask_threshold)
        if self.soft_coarse and self.mask_threshold != 0.5:
            raise ValueError(f'soft_coarse=True needs mask_threshold=0.5 (the soft refiner reads '
                             f'probabilities at 0.5), got {self.mask_threshold}')
        self.image_source = image_source
        self.input_format = (input_format or getattr(unwrap_parallel(model), 'input_format', None)
                             or 'BGR')
        if self.input_format not in ('BGR', 'RGB'):   # refused when built, not at the 1st image
            raise ValueError(f'INPUT.FORMAT {self.input_format!r} is not supported (BGR or RGB)')
        post = getattr(self, 'register_state_dict_post_hook', self._register_state_dict_hook)
        post(_strip_inner_prefix)
        self.register_load_state_dict_pre_hook(_add_inner_prefix)

    @classmethod
    def from_config(cls, cfg: Any) -> Dict[str, Any]:
        inner_name = cfg.MODEL.SEGREFINE.INNER_META_ARCHITECTURE
        if inner_name == 'SegRefineWrapper':
            raise ValueError('MODEL.SEGREFINE.INNER_META_ARCHITECTURE cannot be SegRefineWrapper')
        inner_cfg = cfg.clone()
        inner_cfg.defrost()
        inner_cfg.MODEL.META_ARCHITECTURE = inner_name
        inner_cfg.freeze()
        model = META_ARCH_REGISTRY.get(inner_name)(inner_cfg)
        return dict(model=model, refiner=build_refiner_from_cfg(cfg), **wrapper_options(cfg))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == 'model':
                raise
            model = super().__getattr__('model')
            return getattr(model if hasattr(model, name) else unwrap_parallel(model), name)

    @property
    def active(self) -> bool:
        """Whether forward refines (eval mode, enabled, with a refiner)."""
        return self.enabled and self.refiner is not None and not self.training

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> Any:
        outputs = self.model(batched_inputs)
        if not self.active:
            return outputs
        return self.refine_outputs(batched_inputs, outputs)

    def refine_outputs(self, batched_inputs: List[Dict[str, Any]],
                       outputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Refine the inner model's outputs for these inputs (new dicts; inputs untouched).

        Usable on its own, e.g. to evaluate the raw and the refined outputs of one forward.
        """
        if self.refiner is None:
            raise ValueError('this SegRefineWrapper has no refiner')
        if len(batched_inputs) != len(outputs):
            raise ValueError(f'{len(batched_inputs)} inputs but {len(outputs)} outputs')
        return [self._refine_one(inp, out) for inp, out in zip(batched_inputs, outputs)]

    def _refine_one(self, inp: Dict[str, Any], out: Dict[str, Any]) -> Dict[str, Any]:
        todo = [k for k, on in (('panoptic_seg', self.refine_panoptic),
                                ('instances', self.refine_instances),
                                ('sem_seg', self.refine_sem_seg)) if on and k in out]
        if not todo:
            return out
        image = image_for_refiner(inp, self.input_format, self.image_source)
        if getattr(self.refiner, 'bgr', False):
            image = np.ascontiguousarray(image[:, :, ::-1])
        new = dict(out)
        if 'panoptic_seg' in todo:
            id_map, infos = out['panoptic_seg']
            soft = panoptic_soft_masks(   # the id map itself is checked by refine_panoptic
                check_segments_info(infos), image.shape[:2], out.get('instances'),
                out.get('sem_seg')) if self.soft_coarse else None
            new['panoptic_seg'] = refine_panoptic(image, id_map, infos, self.refiner,
                                                  self.roi_options, stats=self._count,
                                                  soft_masks=soft)
        if 'instances' in todo:
            new['instances'] = refine_instances(
                image, out['instances'], self.refiner, options=self.roi_options,
                fuse=self.instances_fuse, recompute_boxes=self.recompute_boxes,
                mask_threshold=self.mask_threshold, soft_coarse=self.soft_coarse,
                stats=self._count)
        if 'sem_seg' in todo:
            new['sem_seg'] = self._refine_sem_seg(image, out['sem_seg'])
        return new

    def _count(self, refined: int, gated: int) -> None:
        self.segments_refined += refined
        self.segments_gated += gated

    def _refine_sem_seg(self, image: np.ndarray, scores: torch.Tensor) -> torch.Tensor:
        """(C, H, W) scores -> one-hot (C, H, W) of the refined argmax (same dtype / device).

        The scores' soft values are not kept: downstream ``argmax`` gives the refined labels.
        With ``soft_coarse`` the ROIs' coarse masks are the scores' softmax (logits), or the
        scores themselves (clipped to 1) when none is negative (probabilities, e.g.
        MaskFormer's): :func:`.soft_coarse.sem_seg_probs`.
        """
        if not isinstance(scores, torch.Tensor) or scores.dim() != 3 or \
                tuple(scores.shape[1:]) != tuple(image.shape[:2]):
            raise ValueError(f'sem_seg must be a (C, H, W) tensor of the image size '
                             f'{image.shape[:2]}, got {getattr(scores, "shape", None)}')
        # sem_seg_probs checks the scores are finite (by blocks of rows); without it, here
        probs = sem_seg_probs(scores) if self.soft_coarse else None
        if probs is None and not bool(torch.isfinite(scores).all()):
            raise ValueError('sem_seg holds NaN / inf scores')
        labels = scores.argmax(dim=0).cpu().numpy().astype(np.int64)
        res = refine_label_map(image, labels, self.refiner,
                               self.roi_options.replace(ignore_index=None), probs=probs)
        self._count(len(res.rois), res.gated)
        refined = tensor_from_numpy(res.labels).to(scores.device)
        onehot = torch.zeros_like(scores)
        onehot.scatter_(0, refined[None], 1)
        return onehot


def wrap_model(model: nn.Module, refiner: Optional[Refiner], **options: Any) -> SegRefineWrapper:
    """Wrap an already built detectron2 model (e.g. from a LazyConfig).

    ``options`` are :class:`SegRefineWrapper`'s keyword arguments (``roi_options``, any
    RoiOptions field, ``refine_instances``, ``instances_fuse``, ...). The wrapper keeps the model's train / eval
    mode.
    """
    wrapped = SegRefineWrapper(model=model, refiner=refiner, **options)
    return wrapped.train(model.training)


__all__ = ['SegRefineWrapper', 'wrap_model', 'wrapper_options', 'image_for_refiner']
