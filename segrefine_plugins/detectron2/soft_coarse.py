"""Soft coarse input from detectron2 outputs: the model's probabilities, not its argmax.

Used by :class:`~segrefine_plugins.detectron2.wrapper.SegRefineWrapper` with
``soft_coarse=True`` (opt-in; the refiner must be built with ``soft_input=True``):

* ``sem_seg`` (C, H, W) scores -> per-class probabilities (:func:`sem_seg_probs`);
* a panoptic output's segments -> one probability map per segment
  (:func:`panoptic_soft_masks`): a thing segment reads its instance's float mask
  (``instances.pred_masks[segment['instance_id']]``), a stuff segment its class's ``sem_seg``
  probability (``category_id`` indexes the ``sem_seg`` channels, as in PanopticFPN's and
  MaskFormer's outputs); segments without such a source stay hard.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .instances import soft_mask_probs


def sem_seg_probs(scores: torch.Tensor) -> np.ndarray:
    """(C, H, W) ``sem_seg`` scores -> (C, H, W) float32 probabilities in [0, 1].

    Scores outside [0, 1] are logits (detectron2's SemanticSegmentor, PanopticFPN): softmax
    over C. Scores all in [0, 1] are read as probabilities as they are (MaskFormer-style).

    Raises:
        ValueError: not a 3-d tensor, or NaN / inf scores.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3:
        raise ValueError(f'sem_seg must be a (C, H, W) tensor, got '
                         f'{getattr(scores, "shape", type(scores).__name__)}')
    x = scores.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError('sem_seg holds NaN / inf scores')
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:    # logits
        x = torch.softmax(x, dim=0)
    return x.cpu().numpy()


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
        sem_seg: the same output's (C, H, W) ``sem_seg`` scores (or None).

    Returns:
        None when no segment has soft values; else a list aligned with ``segments_info``:
        an (H, W) float32 map in [0, 1] (a view: ``instances``' probabilities or ``sem_seg``'s
        softmax, computed once) or None (the segment stays hard).

    Raises:
        ValueError: a thing's ``instance_id`` outside the instances, maps of another size than
            ``shape``, probabilities outside [0, 1], NaN / inf scores.
    """
    things: Optional[np.ndarray] = None
    if instances is not None and hasattr(instances, 'has') and instances.has('pred_masks'):
        things = soft_mask_probs(instances.pred_masks)
        if things is not None and things.shape[1:] != tuple(shape):
            raise ValueError(f'instances.pred_masks are {things.shape[1]}x{things.shape[2]} '
                             f'but the panoptic map is {shape[0]}x{shape[1]}')
    stuff: Optional[np.ndarray] = None
    if sem_seg is not None:
        if not isinstance(sem_seg, torch.Tensor) or sem_seg.dim() != 3 or \
                tuple(sem_seg.shape[1:]) != tuple(shape):
            raise ValueError(f'sem_seg must be a (C, H, W) tensor of the panoptic map\'s size '
                             f'{tuple(shape)}, got {getattr(sem_seg, "shape", None)}')
        if any(not s['isthing'] and 'category_id' in s for s in segments_info):
            stuff = sem_seg_probs(sem_seg)
    out: List[Optional[np.ndarray]] = []
    for info in segments_info:
        source = None
        if info['isthing'] and things is not None and 'instance_id' in info:
            k = int(info['instance_id'])
            if not 0 <= k < things.shape[0]:
                raise ValueError(f'segment {info["id"]} has instance_id {k} but the output has '
                                 f'{things.shape[0]} instances')
            source = things[k]
        elif not info['isthing'] and stuff is not None and 'category_id' in info:
            c = int(info['category_id'])
            if 0 <= c < stuff.shape[0]:
                source = stuff[c]
        out.append(source)
    return out if any(s is not None for s in out) else None


__all__ = ['sem_seg_probs', 'panoptic_soft_masks']
