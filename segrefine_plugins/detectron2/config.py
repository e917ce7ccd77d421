"""``MODEL.SEGREFINE.*``: the config keys of the detectron2 integration.

    from detectron2.config import get_cfg
    from segrefine_plugins.detectron2 import add_segrefine_config
    cfg = get_cfg()
    add_segrefine_config(cfg)
    cfg.merge_from_file('configs/detectron2/panoptic_fpn_R_50_1x_crm.yaml')

The refiner itself is built by :func:`build_refiner_from_cfg` with
:func:`segrefine_plugins.build_refiner`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from .. import build_refiner, load_config_file
from ..inference.base import Refiner

#: Values accepted by ``MODEL.SEGREFINE.IMAGE_SOURCE``.
IMAGE_SOURCES = ('auto', 'input', 'file')


def add_segrefine_config(cfg: Any) -> None:
    """Add ``MODEL.SEGREFINE`` (with defaults) to a detectron2 ``CfgNode``, in place.

    Every key is commented below; the defaults are the published multi-object protocol
    (REFERENCE.md section 4) with the refiners' own defaults.
    """
    from detectron2.config import CfgNode as CN

    if 'SEGREFINE' in cfg.MODEL:
        return
    _C = CN()
    # Master switch: False makes SegRefineWrapper return the inner model's outputs untouched.
    _C.ENABLED = True
    # Meta-architecture the wrapper builds and runs (its weights load as usual: the wrapper's
    # state dict has exactly the inner model's keys).
    _C.INNER_META_ARCHITECTURE = 'PanopticFPN'

    _C.REFINER = CN()
    # Refiner type in segrefine_plugins' registry: 'CascadePSP' or 'CRM'; '' = the CONFIG
    # file's type, or 'CRM' without a CONFIG file.
    _C.REFINER.TYPE = ''
    # Refiner checkpoint (the published file or a segrefine one); '' = the refiner's default.
    _C.REFINER.CHECKPOINT = ''
    # Optional Python config file defining `refiner = dict(type=..., ...)`; when set it is the
    # base and the keys below that differ from their defaults override it (a TYPE naming
    # another type than the file's is refused; tools/eval_detectron2.py --refiner resets them).
    _C.REFINER.CONFIG = ''
    # CascadePSP: long side L of the global step (published 900); 0 = the refiner's default.
    _C.REFINER.L = 0
    # CascadePSP: global step only (no local step).
    _C.REFINER.FAST = False
    # CRM: the scales of its multi-scale inference, e.g. [0.125, 0.25, 0.5, 1.0]; [] = default.
    _C.REFINER.SCALES = []
    # 'fp32' (parity), 'bf16' or 'fp16' autocast.
    _C.REFINER.PRECISION = 'fp32'
    # Device of the refiner; '' = MODEL.DEVICE.
    _C.REFINER.DEVICE = ''

    # ROI of a segment = its bounding box grown by this fraction (published 0.25).
    _C.ROI_PADDING = 0.25
    # Segments / instances of <= this many pixels are kept as they are (not refined).
    _C.MIN_AREA = 0
    # Multiplier of stuff segments' probabilities in the fusion (published 0.51).
    _C.STUFF_SCALE = 0.51
    # Size-aware ROI scale (changes numbers): CascadePSP enlarges an ROI to long side L by at
    # most this factor; 0 = no cap (published: every ROI is worked at long side L). CRM
    # ignores it. E.g. 2.0: a 100-px segment is worked at 200 px instead of 900.
    _C.MAX_UPSCALE = 0.0
    # ROIs run through the refiner per call (same-shape inputs batched; exact). Each batched
    # ROI holds its activations at once (CascadePSP L=900: ~2.5 GB fp32 per ROI).
    _C.ROI_BATCH_SIZE = 1
    # torch intra-op threads of the process (OpenCV gets 1), set when the wrapper is built, so
    # the two pools do not oversubscribe the cores; 0 = leave them as they are.
    _C.THREADS = 0
    # Do-no-harm gate (opt-in; < 0 = off): a refined segment whose mask has an IoU below
    # GATE_MIN_IOU with its coarse mask (inside the ROI) keeps its coarse mask.
    _C.GATE_MIN_IOU = -1.0
    # ... or whose changed pixels have a mean confidence |2p - 1| below this.
    _C.GATE_MIN_CONFIDENCE = -1.0
    # Per pixel: changed pixels of confidence below GATE_PIXEL_CONFIDENCE keep their coarse label.
    _C.GATE_PIXEL_CONFIDENCE = -1.0
    # Per region: 8-connected regions of changes reaching less than this many px from the
    # nearest unchanged pixel (thin slivers along the coarse boundary) keep their coarse labels.
    _C.GATE_MIN_CHANGE_DEPTH = -1.0
    # With GATE_MIN_CHANGE_DEPTH (and >= it): an ROI with a region of changes at least this
    # many px deep is trusted and keeps all its changes (thin ones included); < 0 = off.
    _C.GATE_TRUST_CHANGE_DEPTH = -1.0
    # ... and only if that deep region's mean confidence |2p - 1| is at least this (0..1).
    _C.GATE_TRUST_MIN_CONFIDENCE = 0.3
    # Which outputs to refine.
    _C.REFINE_PANOPTIC = True   # 'panoptic_seg': every segment, things and stuff, fused
    _C.REFINE_INSTANCES = True  # 'instances': every mask of pred_masks
    _C.REFINE_SEM_SEG = False   # 'sem_seg': the argmax map, CascadePSP's scene-parsing protocol
    # Instances are entities (non-overlapping, e.g. EntitySeg): fuse them with the modified
    # argmax instead of refining every mask on its own.
    _C.INSTANCES_FUSE = False
    # Recompute pred_boxes from the refined masks (otherwise the model's boxes are kept).
    _C.RECOMPUTE_BOXES = False
    # Threshold that binarises float pred_masks (probabilities) before refinement.
    _C.MASK_THRESHOLD = 0.5
    # Image the refiner sees, at the output size (height x width):
    # 'auto'  = the model input if it already has the output size, else the original file
    #           (`file_name`) if readable and of that size, else the model input resized back;
    # 'input' = always the model input, resized back (cv2 INTER_AREA when shrinking, LINEAR
    #           when enlarging); 'file' = always `file_name` (error when missing).
    _C.IMAGE_SOURCE = 'auto'
    # Soft coarse input (opt-in, changes numbers): the refiner gets the model's probabilities
    # instead of its argmax / threshold where the output has them: 'sem_seg' (softmax of
    # logits; scores without a negative value are probabilities, clipped to 1) and float
    # 'instances.pred_masks' (MASK_THRESHOLD must be 0.5), and panoptic segments with a
    # source in the same output (things: their instance's float mask via 'instance_id';
    # stuff: the 'sem_seg' probability of their 'category_id'); boolean masks stay hard.
    # Builds the refiner with soft_input=True (without a CHECKPOINT: the soft-input default
    # weights, also used then for the hard segments).
    _C.SOFT_COARSE = False
    cfg.MODEL.SEGREFINE = _C


def refiner_config(seg_cfg: Any, default_device: str = 'cpu') -> Dict[str, Any]:
    """``MODEL.SEGREFINE`` -> the keyword dict :func:`segrefine_plugins.build_refiner` takes."""
    rcfg = seg_cfg.REFINER
    out: Dict[str, Any] = load_config_file(rcfg.CONFIG) if rcfg.CONFIG else {}
    if rcfg.TYPE:
        if out.get('type') not in (None, rcfg.TYPE):
            raise ValueError(f'MODEL.SEGREFINE.REFINER.TYPE {rcfg.TYPE!r} contradicts the type '
                             f'{out["type"]!r} of REFINER.CONFIG {rcfg.CONFIG!r}: set TYPE to '
                             f'"" (the file decides) or drop one of them')
        out['type'] = rcfg.TYPE
    out.setdefault('type', 'CRM')
    if rcfg.CHECKPOINT:
        out['checkpoint'] = rcfg.CHECKPOINT
    if int(rcfg.L) > 0:
        out['L'] = int(rcfg.L)
    if rcfg.FAST:   # CascadePSP's; another type refuses it (as it refuses L)
        out['fast'] = True
    if len(rcfg.SCALES):
        out['scales'] = tuple(float(s) for s in rcfg.SCALES)
    if rcfg.PRECISION != 'fp32':
        out['precision'] = rcfg.PRECISION
    out['device'] = rcfg.DEVICE or out.get('device') or default_device
    if getattr(seg_cfg, 'SOFT_COARSE', False):
        out['soft_input'] = True
    return out


def build_refiner_from_cfg(cfg: Any) -> Optional[Refiner]:
    """Build the refiner named by ``cfg.MODEL.SEGREFINE`` (None when ``ENABLED`` is False).

    Raises:
        ValueError: the refiner rejects an option (the message names the config keys).
    """
    seg = cfg.MODEL.SEGREFINE
    if not seg.ENABLED:
        return None
    kwargs = refiner_config(seg, default_device=cfg.MODEL.DEVICE)
    try:
        return build_refiner(kwargs)
    except TypeError as err:
        raise ValueError(f'MODEL.SEGREFINE.REFINER gives the refiner options it does not take '
                         f'({kwargs}): {err}') from err
