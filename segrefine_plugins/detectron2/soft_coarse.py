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


def sem_seg_probs(scores: torch.Tensor,
                  channels: Optional[Sequence[int]] = None) -> np.ndarray:
    """(C, H, W) ``sem_seg`` scores -> (C, H, W) float32 probabilities in [0, 1] (with
    ``channels``: only those, ``(len(channels), H, W)``; the result then holds ``4
    len(channels) H W`` bytes instead of ``4 C H W``, though the softmax's normaliser still
    passes over all C channels while it is computed).

    Scores with a negative value are logits (detectron2's SemanticSegmentor, PanopticFPN):
    softmax over all C. Scores all >= 0 are probabilities (MaskFormer-style class x mask
    products, whose sums may exceed 1 where queries overlap: clipped to 1).

    Raises:
        ValueError: not a 3-d tensor, NaN / inf scores, a channel outside 0..C-1.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3:
        raise ValueError(f'sem_seg must be a (C, H, W) tensor, got '
                         f'{getattr(scores, "shape", type(scores).__name__)}')
    x = scores.detach()
    if not torch.isfinite(x).all():
        raise ValueError('sem_seg holds NaN / inf scores')
    picked = None
    if channels is not None:
        picked = [int(c) for c in channels]
        bad = [c for c in picked if not 0 <= c < x.shape[0]]
        if bad:
            raise ValueError(f'sem_seg has {x.shape[0]} channels, asked for {bad}')
    logits = float(x.min()) < 0.0
    if picked is None:
        out = torch.softmax(x.float(), dim=0) if logits else x.float().clamp(max=1.0)
    elif logits:
        out = torch.exp(x[picked].float() - torch.logsumexp(x.float(), dim=0)[None])
    else:
        out = x[picked].float().clamp(max=1.0)
    return out.cpu().numpy()


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
