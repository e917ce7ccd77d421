"""CascadePSP inference: the published global step, local step and fast mode.

``build_refiner(dict(type='CascadePSP', checkpoint=..., L=900, fast=False))`` gives a
:class:`CascadePSPRefiner`; ``refiner.refine(image, mask)`` returns the published pipeline's
probability map (REFERENCE.md section 2), to float rounding:

* **global step**: image and mask resized so that the long side is ``L`` (``area`` when
  shrinking; image bicubic / mask bilinear when enlarging), one three-pass forward.
* **local step** (unless ``fast``): at full resolution, ``L x L`` crops on the grid of
  :mod:`.tiling`; crops whose binarised global mask is > 90 % or < 10 % foreground are
  skipped; the others run passes 2 and 3 fed with the global result; chipped outputs are
  averaged, uncovered pixels take the binarised global map.
* **fast**: global step only, resized back (``area`` after enlarging, bilinear with
  ``align_corners=True`` after shrinking).

Deliberate quirks kept for parity:

* resizing to long side ``L`` uses the *scale factor* ``s = L / max(H, W)`` (output
  ``floor(H*s) x floor(W*s)``, coordinates mapped with ``s`` itself), as the published code's
  ``F.interpolate(scale_factor=s)`` does;
* padding to a multiple of 8 pads *both* sides to ``(n // 8 + 1) * 8`` as soon as one of
  them is not a multiple of 8 (image with 0, masks with -1);
* the local step feeds ``2 * p - 1`` of the global stride-4 probability as ``inter_s8``
  (training feeds ``tanh(z)``, this is ``tanh(z / 2)``).

Exact speed-ups (same numbers up to float rounding): crops are run in batches of
``crop_batch_size``, everything under ``torch.inference_mode``, the image is normalised once
and each batch is copied once into its padded input.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..models.cascadepsp import CascadePSPNet
from ..models.checkpoint import load_checkpoint
from ..options import check_int, to_bool
from ..registry import REFINERS
from .base import Refiner
from .tiling import Crop, TileAccumulator, crop_grid, grid_step

Checkpoint = Union[str, os.PathLike, Mapping[str, Any]]

#: Largest working resolution accepted. The global step holds an ``L``-long-side image and
#: every local-step crop is ``L x L``: activations ~2.5 GB per crop in fp32 at L=900, growing
#: with ``L ** 2`` (~50 GB at 4096), so larger values are refused before anything is allocated.
MAX_L = 4096

#: Crops whose binarised-mask foreground fraction is outside [LOW, HIGH] are skipped.
SKIP_LOW, SKIP_HIGH = 0.1, 0.9
#: Smallest working size (the crop grid step ``L // 2 - 32`` must be positive).
MIN_L = 66


def padded_size(height: int, width: int) -> Tuple[int, int]:
    """Model input size for an ``height x width`` input (quirk: both sides get +8 rounding
    as soon as one side is not a multiple of 8)."""
    if height % 8 == 0 and width % 8 == 0:
        return height, width
    return (height // 8 + 1) * 8, (width // 8 + 1) * 8


def resize_long_side(x: torch.Tensor, L: int, mode: str) -> torch.Tensor:
    """Resize (N, C, H, W) by the scale factor ``L / max(H, W)`` (published behaviour).

    ``mode``: 'area', 'bilinear' or 'bicubic' (``align_corners=False``). Raises ValueError
    when a side would shrink to 0 px (an image far more elongated than ``L`` allows).
    """
    h, w = x.shape[-2:]
    s = L / max(h, w)
    if int(h * s) < 1 or int(w * s) < 1:
        raise ValueError(f'a {h}x{w} input resized to long side L={L} would have a side of '
                         f'0 px; use a larger L')
    if mode == 'area':
        return F.interpolate(x, scale_factor=s, mode='area')
    return F.interpolate(x, scale_factor=s, mode=mode, align_corners=False)


@REFINERS.register(name='CascadePSP')
class CascadePSPRefiner(Refiner):
    """CascadePSP refiner (published inference pipeline).

    Args:
        checkpoint: path of the published ``model`` file (or any checkpoint with the same
            layout: with / without ``module.``, plain or mmengine ``state_dict``), or an
            in-memory state dict. Required: no default weights are shipped.
        L: long side of the global step and crop size of the local step (published 900);
            an int in [66, :data:`MAX_L` = 4096] (the crop grid step ``L // 2 - 32`` must be
            positive; memory grows with ``L ** 2``). An image whose short side would shrink
            below 1 px at this ``L`` (long side / short side > ``L``) is refused.
        fast: global step only (faster, coarser boundaries).
        crop_batch_size: local-step crops run per forward; ``None`` (default): 4 on a GPU, 1
            on a CPU. Exact (outputs equal to one-by-one up to float rounding); each extra
            crop costs its activations, about 2.5 GB in fp32 at ``L=900`` (memory scales with
            ``L ** 2``). On a CPU batching does not pay: measured on the 2-core CPU of the
            README's benchmarks, batches of 4 were 0.90x the speed of crop by crop, with
            +0.35 GB at L=200 (and a 10.8 GB peak at L=900; one crop at a time there was
            not measured, an estimated 3.3 GB).
        device, precision, bgr, channels_last, compile, backend: see
            :class:`~segrefine_plugins.inference.base.Refiner`. ``precision='bf16' | 'fp16'``
            autocasts the model (changes numbers; off by default); ``compile`` compiles the
            whole network; ``backend='onnxruntime'`` exports its two graphs (global: three
            passes; local: passes 2 and 3) with dynamic sizes at construction (about a
            minute on a 2-core CPU).
    """

    def __init__(self, checkpoint: Optional[Checkpoint] = None, L: int = 900, fast: bool = False,
                 crop_batch_size: Optional[int] = None, device: Union[str, torch.device] = 'cpu',
                 precision: str = 'fp32', bgr: bool = False, channels_last: Optional[bool] = None,
                 compile: bool = False, backend: str = 'torch', soft_input: bool = False) -> None:
        super().__init__(device=device, precision=precision, bgr=bgr,
                         channels_last=channels_last, compile=compile, backend=backend,
                         soft_input=soft_input)
        if checkpoint is None:
            raise ValueError('CascadePSP needs checkpoint=<path of the published "model" file '
                             'or a state dict>; no default weights are shipped')
        L = check_int('L', L)
        grid_step(L)  # the smallest L (66)
        if L > MAX_L:
            raise ValueError(f'L={L} is above the maximum {MAX_L}: the global step and every '
                             f'crop are L x L px (~2.5 GB of activations per crop at L=900, '
                             f'growing with L ** 2)')
        if crop_batch_size is None:
            crop_batch_size = 4 if self.device.type == 'cuda' else 1
        self.L = L
        self.fast = to_bool(fast, 'fast')
        crop_batch_size = check_int('crop_batch_size', crop_batch_size, 1)
        self.crop_batch_size = crop_batch_size
        model = load_checkpoint(CascadePSPNet(), checkpoint)
        self.model = model.eval().requires_grad_(False).to(self.device)
        #: what runs: the model itself in parity mode, else its channels-last / compiled /
        #: onnxruntime form
        if backend == 'onnxruntime':
            from ..export import onnxruntime_network
            self.net = onnxruntime_network(self.model, 'CascadePSP')
        else:
            self.net = self._runnable(self.model)
        #: facts about the last ``refine`` call: global-step input size, crops on the grid and
        #: crops kept by the skip rule (for benchmarks and curious users)
        self.last_stats: Dict[str, Any] = {}

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse images that the global step would squeeze to a side of 0 px (long side /
        short side too large for ``L``)."""
        super().check_input_size(height, width)
        if min(height, width) < self.min_short_side(max(height, width)):
            raise ValueError(f'a {height}x{width} image resized to long side L={self.L} would '
                             f'have a side of 0 px; use a larger L')

    # ------------------------------------------------------------------ pipeline
    def work_size(self, long_side: int) -> int:
        """Long side of the global step for an input of long side ``long_side``: ``L``, or,
        under :meth:`~segrefine_plugins.inference.base.Refiner.limit_upscale` with factor
        ``f``, ``max(min(L, ceil(f * long_side)), long_side, 66)`` (never more than ``L``)."""
        factor = self.max_upscale
        if factor is None or long_side >= self.L:
            return self.L
        return min(self.L, max(int(math.ceil(factor * long_side)), long_side, MIN_L))

    def min_short_side(self, long_side: int) -> int:
        """Smallest short side an input of long side ``long_side`` may have: resizing to long
        side ``L`` must leave at least one pixel (the multi-object core grows thinner ROIs)."""
        scale = self.work_size(long_side) / long_side
        short = max(1, int(math.ceil(long_side / self.work_size(long_side))))
        while int(short * scale) < 1:
            short += 1
        return short

    def _global_inputs(self, image: torch.Tensor, mask_u8: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """The global step's (1, 3, h, w) image and (1, 1, h, w) mask in -1..1, and its L."""
        h, w = mask_u8.shape
        seg = self.mask_input(mask_u8).view(1, 1, h, w)
        long_side = max(h, w)
        L = self.work_size(long_side)
        if long_side > L:
            return resize_long_side(image, L, 'area'), resize_long_side(seg, L, 'area'), L
        if long_side < L:
            return (resize_long_side(image, L, 'bicubic'), resize_long_side(seg, L, 'bilinear'),
                    L)
        return image, seg, L

    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) normalised image, (H, W) uint8 mask -> (H, W) probability."""
        im_g, seg_g, L = self._global_inputs(image, mask_u8)
        self.last_stats = {'global_size': tuple(im_g.shape[-2:]), 'crops': 0, 'crops_kept': 0}
        out = self.forward_padded(im_g, seg_g)
        return self._after_global(image, out['pred_224'], out['pred_56_2'], L)

    def _after_global(self, image: torch.Tensor, pred_224: torch.Tensor,
                      pred_56: torch.Tensor, L: int) -> torch.Tensor:
        """Fast-mode resize or local step from the global outputs (1, 1, h, w)."""
        h, w = image.shape[-2:]
        long_side = max(h, w)
        pred_224, pred_56 = pred_224.float(), pred_56.float()
        if self.fast:
            if long_side < L:
                pred_224 = F.interpolate(pred_224, size=(h, w), mode='area')
            elif long_side > L:
                pred_224 = F.interpolate(pred_224, size=(h, w), mode='bilinear',
                                         align_corners=True)
            return pred_224[0, 0]
        return self._local_step(image, pred_224, pred_56, L)

    def _refine_many(self, images: List[torch.Tensor], masks: List[torch.Tensor]
                     ) -> List[torch.Tensor]:
        """Batched :meth:`_refine`: global steps whose inputs have the same shape run as one
        forward (exact: no extra padding), the local steps one object at a time."""
        inputs = [self._global_inputs(img, m) for img, m in zip(images, masks)]
        groups: Dict[Tuple[int, ...], List[int]] = {}
        for i, (im_g, _, _) in enumerate(inputs):
            groups.setdefault(tuple(im_g.shape), []).append(i)
        outs: List[Any] = [None] * len(images)
        for members in groups.values():
            out = self.forward_padded(torch.cat([inputs[i][0] for i in members]),
                                      torch.cat([inputs[i][1] for i in members]))
            for j, i in enumerate(members):
                outs[i] = (out['pred_224'][j:j + 1], out['pred_56_2'][j:j + 1])
        self.last_stats = {'global_batches': len(groups), 'objects': len(images)}
        return [self._after_global(images[i], outs[i][0], outs[i][1], inputs[i][2])
                for i in range(len(images))]

    def _local_step(self, image: torch.Tensor, pred_224: torch.Tensor,
                    pred_56: torch.Tensor, L: Optional[int] = None) -> torch.Tensor:
        """Refine ``L x L`` crops (default ``self.L``) at full resolution, guided by the global
        probabilities ``pred_224`` / ``pred_56`` (1, 1, h, w) at the global step's size."""
        L = self.L if L is None else L
        h, w = image.shape[-2:]
        r1 = (F.interpolate(pred_224, size=(h, w), mode='bilinear', align_corners=False)
              > 0.5).float() * 2 - 1
        r4 = F.interpolate(pred_56, size=(h, w), mode='bilinear', align_corners=False) * 2 - 1
        crops = crop_grid(h, w, L)
        kept = [c for c in crops if self._interesting(r1, c)]
        self.last_stats.update(crops=len(crops), crops_kept=len(kept))
        acc = TileAccumulator(h, w, device=self.device)
        for i in range(0, len(kept), self.crop_batch_size):
            batch = kept[i:i + self.crop_batch_size]
            preds = self.forward_crops(image, r1, r4, batch)
            for crop, pred in zip(batch, preds):
                acc.add(crop, pred[0])
        return acc.result(fallback=r1[0, 0] / 2 + 0.5)

    @staticmethod
    def _interesting(r1: torch.Tensor, crop: Crop) -> bool:
        """Published skip rule: keep a crop whose foreground fraction is in [0.1, 0.9]."""
        frac = (r1[..., crop.y0:crop.y1, crop.x0:crop.x1] > 0).float().mean()
        return not bool(frac > SKIP_HIGH) and not bool(frac < SKIP_LOW)

    # ------------------------------------------------------------------ forwards
    def forward_crops(self, image: torch.Tensor, seg: torch.Tensor, inter_s8: torch.Tensor,
                      crops: Sequence[Crop]) -> torch.Tensor:
        """Run equally sized crops of (1, C, H, W) maps as one batch (local-step forward:
        pass 1 replaced by ``inter_s8``); returns (len(crops), 1, h, w) ``pred_224``."""
        ch, cw = crops[0].shape
        if any(c.shape != (ch, cw) for c in crops):
            raise ValueError('crops of one batch must have the same size')
        ph, pw = padded_size(ch, cw)
        inputs: List[torch.Tensor] = []
        for src, fill in ((image, 0.0), (seg, -1.0), (inter_s8, -1.0)):
            x = src.new_full((len(crops), src.shape[1], ph, pw), fill)
            for j, c in enumerate(crops):
                x[j, :, :ch, :cw] = src[0, :, c.y0:c.y1, c.x0:c.x1]
            inputs.append(x)
        rgb, seg, inter = (self.memory_format(x) for x in inputs)
        with self.autocast((ph, pw)):
            out = self.net(rgb, seg, inter_s8=inter)
        return out['pred_224'][:, :, :ch, :cw].float()

    def forward_padded(self, rgb: torch.Tensor, seg: torch.Tensor,
                       inter_s8: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Published "safe forward": pad (N, C, H, W) inputs to the model's size (image 0,
        masks -1), run the cascade, crop ``pred_224``, ``pred_28_3``, ``pred_56_2`` back."""
        h, w = rgb.shape[-2:]
        ph, pw = padded_size(h, w)
        if (ph, pw) != (h, w):
            pad = (0, pw - w, 0, ph - h)
            rgb = F.pad(rgb, pad, value=0.0)
            seg = F.pad(seg, pad, value=-1.0)
            if inter_s8 is not None:
                inter_s8 = F.pad(inter_s8, pad, value=-1.0)
        rgb, seg = self.memory_format(rgb), self.memory_format(seg)
        if inter_s8 is not None:
            inter_s8 = self.memory_format(inter_s8)
        with self.autocast((ph, pw)):
            out = self.net(rgb, seg, inter_s8=inter_s8)
        return {k: out[k][:, :, :h, :w] for k in ('pred_224', 'pred_28_3', 'pred_56_2')}

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(L={self.L}, fast={self.fast}, '
                f'crop_batch_size={self.crop_batch_size}, device={str(self.device)!r}, '
                f'precision={self.precision!r}, bgr={self.bgr}{self.fast_modes()})')
