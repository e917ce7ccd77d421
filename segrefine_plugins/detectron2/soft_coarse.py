"""Soft coarse input from detectron2 outputs: the model's probabilities, not its argmax.

Used by :class:`~segrefine_plugins.detectron2.wrapper.SegRefineWrapper` with
``soft_coarse=True`` (opt-in; the refiner must be built with ``soft_input=True``):

* ``sem_seg`` (C, H, W) scores -> per-class probabilities (:func:`sem_seg_probs`);
* a panoptic output's segments -> one probability map per segment
  (:func:`panoptic_soft_masks`): a thing segment reads its instance's float mask
  (``instances.pred_masks[segment['instance_id']]``), a stuff segment its class's ``sem_seg``
  probability (``category_id`` indexes the ``sem_seg`` channels, as in PanopticFPN's and
  MaskFormer's outputs); segments without such a source stay hard. A segment whose map has
  no value above 0.5 in its ROI gets its hard mask (:class:`..multiobject.refine.SoftCoarse`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .instances import soft_mask_probs


#: Scores processed per block of rows by :func:`sem_seg_probs` (about 64 MB of float32), so
#: the temporaries do not grow with the image.
BLOCK_ELEMENTS = 1 << 24


def sem_seg_probs(scores: torch.Tensor,
                  channels: Optional[Sequence[int]] = None) -> np.ndarray:
    """(C, H, W) ``sem_seg`` scores -> (C, H, W) float32 probabilities in [0, 1] (with
    ``channels``: only those, ``(len(channels), H, W)``).

    Scores with a negative value are logits (detectron2's SemanticSegmentor, PanopticFPN):
    softmax over all C. Scores all >= 0 are probabilities (MaskFormer-style class x mask
    products, whose sums may exceed 1 where queries overlap: clipped to 1).

    Memory: the result (``4 len(channels) H W`` bytes, or ``4 C H W`` without ``channels``);
    the work runs over blocks of rows of about :data:`BLOCK_ELEMENTS` scores, so the
    temporaries stay bounded at any image size (on the scores' device, then copied to host).

    Raises:
        ValueError: not a 3-d tensor, NaN / inf scores, a channel outside 0..C-1.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3:
        raise ValueError(f'sem_seg must be a (C, H, W) tensor, got '
                         f'{getattr(scores, "shape", type(scores).__name__)}')
    x = scores.detach()
    count, height, width = x.shape
    picked = list(range(count)) if channels is None else [int(c) for c in channels]
    bad = [c for c in picked if not 0 <= c < count]
    if bad:
        raise ValueError(f'sem_seg has {count} channels, asked for {bad}')
    rows = max(1, BLOCK_ELEMENTS // max(1, count * width))
    blocks = [(y, min(height, y + rows)) for y in range(0, height, rows)]
    for y0, y1 in blocks:
        if not bool(torch.isfinite(x[:, y0:y1]).all()):
            raise ValueError('sem_seg holds NaN / inf scores')
    logits = x.numel() > 0 and float(x.min()) < 0.0
    out = np.empty((len(picked), height, width), dtype=np.float32)
    index = None if channels is None else torch.as_tensor(picked, dtype=torch.long,
                                                          device=x.device)
    for y0, y1 in blocks:
        block = x[:, y0:y1].float()
        part = block if index is None else block[index]   # all channels: no gather copy
        if logits:
            part = torch.exp(part - torch.logsumexp(block, dim=0)[None])
        else:
            part = part.clamp(max=1.0)
        out[:, y0:y1] = part.cpu().numpy()
    return out


def panoptic_soft_masks(segments_info: Sequence[Dict[str, Any]], shape: Tuple[int, int],
                        instances: Any = None, sem_seg: Optional[torch.Tensor] = None
                        ) -> Optional[List[Optional[np.ndarray]]]:
    """One probability map per panoptic segment, where the output has one.

    Args:
        segments_info: the panoptic output's segment dicts (``id``, ``isthing``, and
            ``instance_id`` for things / ``category_id`` for stuff where present).
        shape: (H, W) of the panoptic id map.
        instances: the same output's ``instances`` (or None); only float ``pred_masks``
            (probabilities) carry soft values.
        sem_seg: the same output's (C, H, W) ``sem_seg`` scores (or None); channel
            ``category_id`` is a stuff segment's class (:func:`sem_seg_probs`).

    Returns:
        None when no segment has soft values; else a list aligned with ``segments_info``:
        an (H, W) float32 map in [0, 1] or None (the segment stays hard). Maps are computed
        once per referenced instance / stuff class (float32 copies; memory 4 H W bytes each)
        and shared by the segments that reference them.

    Raises:
        ValueError: a thing's ``instance_id`` outside the instances, a stuff ``category_id``
            outside ``sem_seg``'s channels (the model numbers its classes otherwise than its
            channels: soft input would read another class), maps of another size than
            ``shape``, probabilities outside [0, 1], NaN / inf scores.
    """
    things: Dict[int, np.ndarray] = {}
    wanted = sorted({int(s['instance_id']) for s in segments_info
                     if s['isthing'] and s.get('instance_id') is not None})
    if wanted and instances is not None and hasattr(instances, 'has') and \
            instances.has('pred_masks'):
        count = len(instances)
        bad = [k for k in wanted if not 0 <= k < count]
        if bad:
            raise ValueError(f'segments have instance_id {bad} but the output has {count} '
                             f'instances')
        probs = soft_mask_probs(instances.pred_masks, wanted)
        if probs is not None:
            if probs.shape[1:] != tuple(shape):
                raise ValueError(f'instances.pred_masks are {probs.shape[1]}x{probs.shape[2]} '
                                 f'but the panoptic map is {shape[0]}x{shape[1]}')
            things = dict(zip(wanted, probs))
    stuff: Dict[int, np.ndarray] = {}
    classes = sorted({int(s['category_id']) for s in segments_info
                      if not s['isthing'] and s.get('category_id') is not None})
    if sem_seg is not None and classes:
        if not isinstance(sem_seg, torch.Tensor) or sem_seg.dim() != 3 or \
                tuple(sem_seg.shape[1:]) != tuple(shape):
            raise ValueError(f'sem_seg must be a (C, H, W) tensor of the panoptic map\'s size '
                             f'{tuple(shape)}, got {getattr(sem_seg, "shape", None)}')
        bad = [c for c in classes if not 0 <= c < sem_seg.shape[0]]
        if bad:
            raise ValueError(f'stuff segments have category_id {bad} but sem_seg has '
                             f'{sem_seg.shape[0]} channels: soft input reads channel '
                             f'category_id (PanopticFPN / MaskFormer numbering)')
        stuff = dict(zip(classes, sem_seg_probs(sem_seg, classes)))
    out: List[Optional[np.ndarray]] = []
    for info in segments_info:
        if info['isthing']:
            k = info.get('instance_id')
            out.append(None if k is None else things.get(int(k)))
        else:
            c = info.get('category_id')
            out.append(None if c is None else stuff.get(int(c)))
    return out if any(m is not None for m in out) else None


__all__ = ['sem_seg_probs', 'panoptic_soft_masks']
