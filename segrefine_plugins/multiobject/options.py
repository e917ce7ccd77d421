"""One typed, validated options object for the multi-object ROI protocol.

:class:`RoiOptions` holds every knob of the protocol (how objects become ROIs, how the ROIs
are run through the refiner, how the results are fused and gated). The core
(:func:`~segrefine_plugins.multiobject.refine_label_map`,
:func:`~segrefine_plugins.multiobject.refine_segments`), the mmseg ``RefinedSegmentor``, the
Detectron2 ``SegRefineWrapper`` and the ``segrefine`` command line all take this one object
(or a dict of its fields) and validate it here, once::

    from segrefine_plugins.multiobject import RoiOptions
    opts = RoiOptions(max_upscale=2.0, roi_batch_size=4, gate_min_iou=0.8)
    opts = RoiOptions.from_any(dict(min_area=512))        # dicts, None and RoiOptions accepted
    opts.replace(stuff_scale=0.6)                           # a validated copy

The defaults are the published protocol (REFERENCE.md section 4); every field that changes
numbers is off by default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from ..options import OptionTypeError, check_float, check_int

#: Published ``min_area`` of label maps (classes and components of <= 1024 px are skipped).
LABEL_MAP_MIN_AREA = 1024
#: Published multiplier of 'stuff' probabilities in the fusion.
STUFF_SCALE = 0.51
#: Largest ``roi_batch_size`` accepted (each batched ROI costs its activations).
MAX_ROI_BATCH = 256

ClassSpec = Union[int, str]
#: kept for callers that imported it from here; the shared rule's error type
RoiOptionTypeError = OptionTypeError


def _int(value: Any, name: str, minimum: int, maximum: Optional[int] = None,
         optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    return check_int(f'RoiOptions.{name}', value, minimum, maximum)


def _float(value: Any, name: str, lo: float, hi: Optional[float] = None,
           optional: bool = False, lo_open: bool = False) -> Optional[float]:
    if value is None and optional:
        return None
    return check_float(f'RoiOptions.{name}', value, lo, hi, open_min=lo_open)


def _classes(value: Any, name: str, optional: bool) -> Optional[Tuple[ClassSpec, ...]]:
    if value is None and optional:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
        raise OptionTypeError(f'RoiOptions.{name} must be a list of class ids or names, got {value!r}')
    out = []
    for item in value:
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            out.append(int(item))
        elif isinstance(item, str) and item:
            out.append(item)
        else:
            raise OptionTypeError(f'RoiOptions.{name} entries must be class ids (int) or names '
                            f'(str), got {item!r}')
    return tuple(out)


@dataclass(frozen=True)
class RoiOptions:
    """The ROI protocol's options (all validated on construction).

    ROIs:
        roi_padding: a ROI is its object's bounding box grown by this fraction (published
            0.25: ``0.25 * h / 2`` rows above and below, likewise columns), >= 0.
        min_area: objects (classes, components, segments) of <= this many pixels are not
            refined; None: the path's published default (1024 for label maps, 0 for segments).
        kernel_size: disk kernel that joins a class's pieces into components (published 10).
        min_roi_size: ROIs with a side shorter than this are grown to it (centred, inside the
            image); None: the refiner's ``min_input_size`` (CRM 33), else 1. A side of the
            image shorter than that is taken whole; an ROI the refiner still cannot take
            (e.g. an image side below CRM's minimum) is passed through unrefined.
        ignore_index: label-map class never refined (None: none).

    Fusion (the published modified argmax):
        stuff_classes: label-map classes (ids, or names that the mmseg adapter resolves
            against ``dataset_meta['classes']``) whose probabilities are scaled by
            ``stuff_scale``.
        stuff_scale: that multiplier (published 0.51), > 0.
        refine_classes: only these label-map classes are refined (None: all).

    Speed (opt-in):
        max_upscale: size-aware ROI scale. None (published): CascadePSP upsamples every ROI
            to its long side ``L`` (900), so a 100-px object is enlarged 9x. A number ``f``
            caps that factor: an ROI of long side ``n < L`` is worked at long side
            ``max(min(L, ceil(f * n)), 66)`` (never below the input itself; no effect on
            ROIs of long side >= ``L``). Work per ROI falls with the square of the factor.
            CRM ignores it: it works at its input's size times its own ``work_scale`` (2 for
            the default weights, every ROI alike). Changes numbers.
        roi_batch_size: ROIs run through the refiner per call, >= 1 (1: one at a time,
            published). Exact: ROIs whose model inputs have the same shape are batched, the
            others run alone, outputs equal the one-at-a-time outputs (up to float rounding).
            Memory: each ROI of a batch holds its activations at once (CascadePSP at
            L=900: about 2.5 GB per ROI in fp32); speed pays on GPUs, hardly on CPUs.

    Do-no-harm gate (opt-in; both None: off, the published protocol):
        gate_min_iou: a refined object whose mask (probability > 0.5) has an IoU below this
            with its coarse mask inside the ROI is *not* pasted: its coarse labels stay
            (neighbours may still claim pixels). In [0, 1].
        gate_min_confidence: a refined object whose changed pixels (where refined and coarse
            disagree) have a mean confidence ``|2p - 1|`` below this is not pasted. In [0, 1].
        gate_pixel_confidence: per pixel instead of per object: a changed pixel whose
            confidence ``|2p - 1|`` is below this reverts to its coarse label (``p`` becomes
            ``1 - p``: the coarse side with the same weak confidence); an object whose changes
            all revert counts as gated (one the refiner did not change does not). In [0, 1].
            Measured with the stage-7 default CRM on 40 ECSSD images through Detectron2
            (tools/sweep_gate_detectron2.py): the per-object rules gate perfect and perturbed
            masks alike (both get edits of low mean confidence, and large corrections have
            low IoU); this rule trades better, e.g. 0.8: perfect input -0.27 PQ / 0.00 AP
            (ungated -1.38 / -5.77) while perturbed input keeps 51 % / 58 % of the ungated
            gain (0.3: -0.93 / -2.02, 89 % / 97 % kept).
        gate_min_change_depth: per region of changes: the changed pixels (refined vs coarse)
            are split into 8-connected regions, and a region whose deepest pixel lies less
            than this many px (Euclidean) from the nearest unchanged pixel reverts to the
            coarse labels (``p`` becomes ``1 - p``): thin slivers along the coarse boundary
            (a refiner's 1-2 px jitter on a mask that was right) go, thick corrections stay
            whole. A 1-2 px wide sliver has depth 1, a 3-4 px one depth 2. Applied after
            ``gate_pixel_confidence``; an object whose changes all revert counts as gated.
            In (1, 1000] (every changed pixel has depth >= 1). Measured
            (docs/multiobject.md): 2 is the best trade-off found; with the default CRM
            through Detectron2, perfect input loses 0.06-0.30 PQ and 0.00 AP on three
            40-image sets (ungated up to 2.28 / 10.05) while perturbed input keeps 88-95 % of
            the PQ gain and 83-93 % of the AP gain.
        gate_trust_change_depth: with ``gate_min_change_depth``: an ROI (an object, or one
            component where objects are split into components) whose changes include a region
            at least this many px deep is trusted and keeps all its changes, thin ones
            included (the refiner is correcting a real error there, and the thin boundary
            changes around such a correction are usually right too); others lose their thin
            regions as above. Only a deep region the refiner is sure of counts: its mean
            confidence ``|2p - 1|`` must reach ``gate_trust_min_confidence``. Needs
            ``gate_min_change_depth``; in [gate_min_change_depth, 1000]. Measured
            (docs/multiobject.md, depth 2 + trust 4, the default CRM through Detectron2 on
            the three 40-image sets): perfect input loses 0.07-0.30 PQ and 0.00 AP, as with
            depth 2 alone, while perturbed input keeps 94-98 % of the PQ gain and 92-100 %
            of the AP gain (depth 2 alone: 88-95 % / 83-93 %).
        gate_trust_min_confidence: the mean confidence ``|2p - 1|`` a region of at least
            ``gate_trust_change_depth`` px must have to make its ROI trusted (default 0.3;
            0 = any deep region: more harm on perfect input, docs/multiobject.md). In
            [0, 1]; used only with ``gate_trust_change_depth``.
    """

    roi_padding: float = 0.25
    min_area: Optional[int] = None
    kernel_size: int = 10
    min_roi_size: Optional[int] = None
    ignore_index: Optional[int] = 255
    stuff_classes: Tuple[ClassSpec, ...] = ()
    stuff_scale: float = STUFF_SCALE
    refine_classes: Optional[Tuple[ClassSpec, ...]] = None
    max_upscale: Optional[float] = None
    roi_batch_size: int = 1
    gate_min_iou: Optional[float] = None
    gate_min_confidence: Optional[float] = None
    gate_pixel_confidence: Optional[float] = None
    gate_min_change_depth: Optional[float] = None
    gate_trust_change_depth: Optional[float] = None
    gate_trust_min_confidence: float = 0.3

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, 'roi_padding', _float(self.roi_padding, 'roi_padding', 0.0, 10.0))
        set_(self, 'min_area', _int(self.min_area, 'min_area', 0, optional=True))
        set_(self, 'kernel_size', _int(self.kernel_size, 'kernel_size', 1, 255))
        set_(self, 'min_roi_size', _int(self.min_roi_size, 'min_roi_size', 1, optional=True))
        if self.ignore_index is not None:
            set_(self, 'ignore_index', _int(self.ignore_index, 'ignore_index', -(1 << 63), (1 << 63) - 1))
        set_(self, 'stuff_classes', _classes(self.stuff_classes, 'stuff_classes', False))
        set_(self, 'stuff_scale', _float(self.stuff_scale, 'stuff_scale', 0.0, 1e6,
                                         lo_open=True))
        set_(self, 'refine_classes', _classes(self.refine_classes, 'refine_classes', True))
        set_(self, 'max_upscale', _float(self.max_upscale, 'max_upscale', 1.0, 1e4,
                                         optional=True))
        set_(self, 'roi_batch_size', _int(self.roi_batch_size, 'roi_batch_size', 1,
                                          MAX_ROI_BATCH))
        set_(self, 'gate_min_iou', _float(self.gate_min_iou, 'gate_min_iou', 0.0, 1.0,
                                          optional=True))
        set_(self, 'gate_min_confidence', _float(self.gate_min_confidence,
                                                 'gate_min_confidence', 0.0, 1.0,
                                                 optional=True))
        set_(self, 'gate_pixel_confidence', _float(self.gate_pixel_confidence,
                                                   'gate_pixel_confidence', 0.0, 1.0,
                                                   optional=True))
        set_(self, 'gate_min_change_depth', _float(self.gate_min_change_depth,
                                                   'gate_min_change_depth', 1.0, 1000.0,
                                                   optional=True, lo_open=True))
        set_(self, 'gate_trust_change_depth', _float(self.gate_trust_change_depth,
                                                     'gate_trust_change_depth', 1.0, 1000.0,
                                                     optional=True))
        set_(self, 'gate_trust_min_confidence', _float(self.gate_trust_min_confidence,
                                                       'gate_trust_min_confidence', 0.0, 1.0))
        trust, depth = self.gate_trust_change_depth, self.gate_min_change_depth
        if trust is not None and depth is None:
            raise ValueError('gate_trust_change_depth only qualifies gate_min_change_depth '
                             '(which thin changes revert): set gate_min_change_depth too, '
                             'e.g. gate_min_change_depth=2, gate_trust_change_depth=4')
        if trust is not None and trust < depth:
            raise ValueError(f'gate_trust_change_depth ({trust:g}) must be >= '
                             f'gate_min_change_depth ({depth:g}): a shallower trust depth '
                             f'would trust every ROI whose thin changes the gate reverts')

    # ------------------------------------------------------------------ construction
    @classmethod
    def fields(cls) -> Tuple[str, ...]:
        """The option names (the keyword arguments of the constructor)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_any(cls, options: Union['RoiOptions', Mapping[str, Any], None] = None,
                 **overrides: Any) -> 'RoiOptions':
        """``RoiOptions`` from an instance, a dict of its fields or None (defaults), with
        ``overrides`` applied; unknown keys raise ``TypeError`` naming them and the known ones."""
        if options is None:
            base: dict = {}
        elif isinstance(options, RoiOptions):
            base = options.as_dict()
        elif isinstance(options, Mapping):
            base = dict(options)
        else:
            raise OptionTypeError(f'ROI options must be a RoiOptions, a dict or None, got '
                            f'{type(options).__name__}')
        base.update(overrides)
        unknown = sorted(set(base) - set(cls.fields()))
        if unknown:
            raise OptionTypeError(f'unknown ROI option(s) {unknown}; known: {list(cls.fields())}')
        return cls(**base)

    def replace(self, **changes: Any) -> 'RoiOptions':
        """A validated copy with ``changes``."""
        return RoiOptions.from_any(self, **changes)

    def as_dict(self) -> dict:
        """The options as a plain dict (tuples kept)."""
        return {name: getattr(self, name) for name in self.fields()}

    # ------------------------------------------------------------------ derived values
    def min_area_for(self, label_map: bool) -> int:
        """``min_area``, or the path's published default when None."""
        if self.min_area is not None:
            return self.min_area
        return LABEL_MAP_MIN_AREA if label_map else 0

    @property
    def gated(self) -> bool:
        """Whether the do-no-harm gate is on."""
        return (self.gate_min_iou is not None or self.gate_min_confidence is not None
                or self.gate_pixel_confidence is not None
                or self.gate_min_change_depth is not None)

    @property
    def gated_per_pixel(self) -> bool:
        """Whether a rule that reverts single changes (pixels, regions) is on."""
        return self.gate_pixel_confidence is not None or self.gate_min_change_depth is not None


__all__ = ['RoiOptions', 'RoiOptionTypeError', 'LABEL_MAP_MIN_AREA', 'STUFF_SCALE']
