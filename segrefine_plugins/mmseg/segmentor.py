"""``RefinedSegmentor``: any mmseg segmentor whose predictions are refined before they leave it.

``test_step`` / ``val_step`` run the wrapped model's own step (an ``EncoderDecoder``, a
``SegTTAModel``, a distributed wrapper, ...), then refine every ``pred_sem_seg`` with the
multi-object core (:func:`segrefine_plugins.multiobject.refine_label_map`, CascadePSP's
scene-parsing protocol) on the original, un-normalised image at its original size (see
:mod:`.images`). The refined labels replace ``pred_sem_seg`` (same shape, dtype and device), so
mmseg's evaluators, visualisers and ``format_only`` output see them; the coarse labels stay in
``coarse_sem_seg``. ``seg_logits`` are left as the segmentor made them (coarse).

Built by :class:`~segrefine_plugins.mmseg.hook.SegRefineHook` around ``runner.model``, or from
a config (``model = dict(type='RefinedSegmentor', segmentor=dict(...), refiner=dict(...))``),
e.g. for ``mmseg.apis.init_model`` / ``inference_model``. Its state dict is the segmentor's
own (no extra prefix), so segmentor checkpoints load into it and checkpoints saved from it load
into the plain segmentor. With test-time augmentation use the hook (it wraps the TTA model, so
the merged prediction is refined); a ``SegTTAModel`` around a ``RefinedSegmentor`` would merge
the coarse logits and drop the refinement.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from torch import nn

from ..inference.base import Refiner, tensor_from_numpy
from ..multiobject import RoiOptions, refine_label_map
from ..options import to_bool
from ..threads import configure_threads
from .images import CHANNEL_ORDERS, IMAGE_SOURCES, original_image
from .refiners import build_mmseg_refiner

ClassSpec = Union[int, str]
_PREFIX = 'segmentor.'
_KEEP: Any = object()


def resolve_classes(values: Optional[Sequence[ClassSpec]], names: Optional[Sequence[str]],
                    what: str) -> Optional[Tuple[int, ...]]:
    """Class ids of ``values`` (ints, or names looked up in ``names``); None stays None.

    Raises:
        ValueError: a name that is not a class, an id out of range, a non int / str entry, or
            names given while the class names are unknown.
    """
    if values is None:
        return None
    ids = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, str)):
            raise ValueError(f'{what} entries must be class ids (int) or class names (str), '
                             f'got {v!r}')
        if isinstance(v, str):
            if names is None:
                raise ValueError(f'{what} names the class {v!r} but the class names are not '
                                 f'known yet (set dataset_meta, or give class ids)')
            stripped = [n.strip() for n in names]
            if v in names:
                ids.append(list(names).index(v))
            elif v.strip() in stripped:
                ids.append(stripped.index(v.strip()))
            else:
                raise ValueError(f'{what}: {v!r} is not a class of this dataset; classes: '
                                 f'{", ".join(map(repr, names))}')
        else:
            idx = int(v)
            if idx < 0 or (names is not None and idx >= len(names)):
                raise ValueError(f'{what}: class id {idx} is out of range'
                                 + (f' (the dataset has {len(names)} classes)' if names else ''))
            ids.append(idx)
    return tuple(ids)


def _mmseg_default_scope() -> Any:
    """Context: mmseg as the default registry scope unless one is set (mmseg models build
    their data preprocessors through it, as a Runner or ``init_model`` would have set)."""
    if DefaultScope.get_current_instance() is not None:
        return contextlib.nullcontext()
    return DefaultScope.overwrite_default_scope('mmseg')


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device('cpu')


@MODELS.register_module()
class RefinedSegmentor(BaseModel):
    """Wrap a segmentor so its ``pred_sem_seg`` come out refined.

    Args:
        segmentor: the wrapped model (any module with ``test_step``) or its config dict.
        refiner: a refiner config (``dict(type='CRMRefiner', checkpoint=...)``), a built
            :class:`~segrefine_plugins.inference.base.Refiner`, or None (predictions pass
            through untouched, bit for bit). Without a ``device`` entry it runs on the
            segmentor's device (and follows it on ``.to()``).
        roi_options: the multi-object protocol's options, a
            :class:`~segrefine_plugins.multiobject.options.RoiOptions` or a dict of its fields
            (``roi_padding``, ``min_area``, ``ignore_index``, ``stuff_classes``,
            ``stuff_scale``, ``refine_classes``, ``max_upscale``, ``roi_batch_size``,
            ``gate_min_iou``, ...; the published protocol by default).
            ``stuff_classes`` / ``refine_classes`` may be class names, resolved against
            ``dataset_meta['classes']``.
        **roi_kwargs: the same options as keyword arguments (they override ``roi_options``),
            e.g. ``RefinedSegmentor(seg, refiner, min_area=512, stuff_classes=['wall'])``.
        image_source: where the original image comes from: ``'auto'``, ``'file'``,
            ``'inputs'`` (see :mod:`segrefine_plugins.mmseg.images`).
        inputs_channel_order: channel order of the packed input tensors (``'bgr'`` in mmcv
            pipelines), used with ``image_source='inputs'``.
        soft_coarse: give the refiner each ROI's class *probability* (softmax of the sample's
            ``seg_logits``; sigmoid for one-channel binary heads) instead of the 0 / 255 class
            mask (opt-in; see :class:`~segrefine_plugins.multiobject.SoftCoarse`). Needs a
            refiner built with ``soft_input=True`` (the published refiners binarise their
            input, so the soft values would be thrown away): refused otherwise.
        keep_coarse: store the coarse labels as ``coarse_sem_seg`` in each sample.
        keep_confidence: store the fused confidence (float32, (1, H, W)) as
            ``refine_confidence``.
        threads: torch intra-op threads for this process (OpenCV gets 1), set once through
            :func:`segrefine_plugins.threads.configure_threads`; None leaves them as they are.
        pretrained, train_cfg: set on the segmentor's config when given (so that
            ``mmseg.apis.init_model``, which sets both to None, works with this model type).
        data_preprocessor: what an mmengine Runner adds to the model config from the
            config's top-level ``data_preprocessor`` (every mmseg base config has one): the
            segmentor's config gets it when it names none; the wrapper itself uses the
            segmentor's.
        init_cfg: mmengine init config.
    """

    def __init__(self, segmentor: Union[nn.Module, Mapping[str, Any]],
                 refiner: Optional[Union[Mapping[str, Any], Refiner]] = None, *,
                 roi_options: Union[RoiOptions, Mapping[str, Any], None] = None,
                 image_source: str = 'auto', inputs_channel_order: str = 'bgr',
                 keep_coarse: bool = True, keep_confidence: bool = False,
                 soft_coarse: bool = False, pretrained: Any = _KEEP, train_cfg: Any = _KEEP,
                 init_cfg: Optional[dict] = None, threads: Optional[int] = None,
                 data_preprocessor: Any = _KEEP, **roi_kwargs: Any) -> None:
        roi = RoiOptions.from_any(roi_options, **roi_kwargs)
        if threads is not None:   # torch / OpenCV pools sized once (no oversubscription)
            configure_threads(threads)
        if isinstance(segmentor, Mapping):
            segmentor = dict(segmentor)
            for key, value in (('pretrained', pretrained), ('train_cfg', train_cfg)):
                if value is not _KEEP:
                    segmentor[key] = value
            if data_preprocessor is not _KEEP and data_preprocessor is not None:
                segmentor.setdefault('data_preprocessor', data_preprocessor)
            with _mmseg_default_scope():
                segmentor = MODELS.build(segmentor)
        if not isinstance(segmentor, nn.Module) or not callable(getattr(segmentor, 'test_step',
                                                                        None)):
            raise ValueError(f'segmentor must be an mmseg model (an nn.Module with test_step) '
                             f'or its config dict, got {type(segmentor).__name__}')
        if image_source not in IMAGE_SOURCES:
            raise ValueError(f'image_source must be one of {IMAGE_SOURCES}, got {image_source!r}')
        if inputs_channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'inputs_channel_order must be one of {CHANNEL_ORDERS}, got '
                             f'{inputs_channel_order!r}')
        super().__init__(data_preprocessor=getattr(segmentor, 'data_preprocessor', None),
                         init_cfg=init_cfg)
        self.segmentor = segmentor
        #: the protocol's options, class names not yet resolved
        self.roi_options = roi
        self.image_source = image_source
        self.inputs_channel_order = inputs_channel_order
        self.keep_coarse = to_bool(keep_coarse, 'keep_coarse')
        self.keep_confidence = to_bool(keep_confidence, 'keep_confidence')
        self.soft_coarse = to_bool(soft_coarse, 'soft_coarse')
        self._stuff_spec = list(roi.stuff_classes)
        self._classes_spec = None if roi.refine_classes is None else list(roi.refine_classes)
        self._dataset_meta: Optional[dict] = None
        #: ROIs refined / kept coarse by the do-no-harm gate since construction
        self.rois_refined = 0
        self.rois_gated = 0
        self._refiner_cfg = refiner
        self._follow_device = not isinstance(refiner, Refiner) and (
            refiner is None or 'device' not in refiner)
        self.refiner: Optional[Refiner] = None
        if refiner is not None:
            self.refiner = build_mmseg_refiner(refiner, _module_device(segmentor))
            if self.soft_coarse and not getattr(self.refiner, 'soft_input', False):
                raise ValueError('soft_coarse=True needs a refiner built with soft_input=True '
                                 '(e.g. refiner=dict(type=\'CRM\', soft_input=True)): the '
                                 'refiner binarises its input otherwise')
        self._resolve(self.dataset_meta, strict=False)
        self._register_state_dict_hook(_strip_prefix)
        self._register_load_state_dict_pre_hook(_add_prefix)

    # ------------------------------------------------------------------ configuration
    @property
    def dataset_meta(self) -> Optional[dict]:
        """Dataset meta (``classes``, ...): set here, else the segmentor's."""
        if self._dataset_meta is not None:
            return self._dataset_meta
        return getattr(self.segmentor, 'dataset_meta', None)

    @dataset_meta.setter
    def dataset_meta(self, meta: Optional[dict]) -> None:
        self._resolve(meta, strict=False)
        self._dataset_meta = meta

    def _resolve(self, meta: Optional[dict], strict: bool) -> None:
        """Turn class names into ids (``strict``: names must be resolvable now)."""
        names = None if not meta or meta.get('classes') is None else list(meta['classes'])
        has_names = any(isinstance(v, str) for v in self._stuff_spec + (self._classes_spec or []))
        if names is None and has_names and not strict:
            self._stuff_ids, self._class_ids = None, None
            return
        self._stuff_ids = resolve_classes(self._stuff_spec, names, 'stuff_classes')
        self._class_ids = resolve_classes(self._classes_spec, names, 'refine_classes')

    def _set_device(self, device: torch.device) -> None:
        super()._set_device(device)
        if self.refiner is not None and self._follow_device and self.refiner.device != device:
            self.refiner = build_mmseg_refiner(self._refiner_cfg, device)

    # ------------------------------------------------------------------ steps
    def forward(self, inputs: torch.Tensor, data_samples: Optional[list] = None,
                mode: str = 'tensor') -> Any:
        """The segmentor's forward; ``mode='predict'`` results are refined (from ``img_path``:
        the normalised ``inputs`` cannot give the original image)."""
        out = self.segmentor(inputs, data_samples, mode=mode)
        if mode == 'predict':
            out = self.refine_samples(out, None)
        return out

    def train_step(self, data: Union[dict, tuple, list], optim_wrapper: Any) -> Dict[str, Any]:
        """Training is the segmentor's (the refiner is inference-only)."""
        return self.segmentor.train_step(data, optim_wrapper)

    def val_step(self, data: Union[dict, tuple, list]) -> list:
        """The segmentor's ``val_step``, then refinement."""
        return self.refine_samples(self.segmentor.val_step(data), data)

    def test_step(self, data: Union[dict, tuple, list]) -> list:
        """The segmentor's ``test_step``, then refinement."""
        return self.refine_samples(self.segmentor.test_step(data), data)

    # ------------------------------------------------------------------ refinement
    def refine_samples(self, samples: list, data: Optional[Union[dict, tuple, list]]) -> list:
        """Refine ``pred_sem_seg`` of every sample in place; returns ``samples``.

        Args:
            samples: the segmentor's output data samples (``pred_sem_seg``, metainfo).
            data: the batch the segmentor got (its un-normalised ``inputs`` are the image
                source when a sample has no ``img_path``), or None.
        """
        if self.refiner is None:
            return samples
        if self._stuff_ids is None:
            self._resolve(self.dataset_meta, strict=True)
        inputs = _plain_inputs(data)
        for i, sample in enumerate(samples):
            self._refine_one(sample, inputs[i] if inputs is not None and i < len(inputs)
                             else None, _input_meta(data, i, sample))
        return samples

    def _refine_one(self, sample: Any, inputs: Optional[torch.Tensor], meta: dict) -> None:
        coarse = sample.pred_sem_seg.data
        labels = coarse.detach().cpu().numpy()
        labels2d = labels.reshape(labels.shape[-2:]) if labels.ndim == 3 else labels
        if labels2d.ndim != 2 or (labels.ndim == 3 and labels.shape[0] != 1):
            raise ValueError(f'pred_sem_seg must be (1, H, W) or (H, W), got {tuple(coarse.shape)}')
        ori_shape = tuple(sample.metainfo.get('ori_shape', labels2d.shape))[:2]
        if labels2d.shape != ori_shape:
            raise ValueError(f'pred_sem_seg is {labels2d.shape[0]}x{labels2d.shape[1]} but the '
                             f'original image is {ori_shape[0]}x{ori_shape[1]}')
        image = original_image(meta, inputs, self.image_source, self.inputs_channel_order)
        if self.refiner.bgr:
            image = np.ascontiguousarray(image[:, :, ::-1])
        options = self.roi_options.replace(stuff_classes=self._stuff_ids,
                                           refine_classes=self._class_ids)
        res = refine_label_map(image, labels2d, self.refiner, options,
                               return_confidence=self.keep_confidence,
                               probs=self._class_probs(sample, labels2d.shape)
                               if self.soft_coarse else None)
        self.rois_gated += res.gated
        self.rois_refined += len(res.rois)
        refined = tensor_from_numpy(res.labels).to(device=coarse.device, dtype=coarse.dtype)
        if self.keep_coarse:
            sample.coarse_sem_seg = PixelData(data=coarse)
        sample.pred_sem_seg = PixelData(data=refined.reshape(coarse.shape))
        if self.keep_confidence:
            sample.refine_confidence = PixelData(
                data=tensor_from_numpy(res.confidence)[None].to(coarse.device))


    @staticmethod
    def _class_probs(sample: Any, shape: Tuple[int, int]) -> np.ndarray:
        """(C, H, W) float32 class probabilities of ``sample.seg_logits`` (softmax over
        classes; a one-channel binary head: sigmoid, as [1 - p, p])."""
        logits = getattr(sample, 'seg_logits', None)
        if logits is None:
            raise ValueError('soft_coarse=True needs seg_logits in the segmentor\'s output '
                             'samples (mmseg segmentors store them in predict())')
        x = logits.data.detach().float()
        if x.dim() != 3 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f'seg_logits {tuple(x.shape)} do not match the prediction '
                             f'{shape[0]}x{shape[1]}')
        if x.shape[0] == 1:
            p = torch.sigmoid(x)
            x = torch.cat([1 - p, p])
        else:
            x = torch.softmax(x, dim=0)
        return x.cpu().numpy()


def _plain_inputs(data: Any) -> Optional[list]:
    """Per-image un-normalised inputs of a batch (the first view of a TTA batch)."""
    if not isinstance(data, dict) or 'inputs' not in data:
        return None
    inputs = data['inputs']
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], (list, tuple)):
        inputs = inputs[0]
    return list(inputs)


def _input_meta(data: Any, index: int, sample: Any) -> dict:
    """Metainfo of the input tensor ``index``: the sample's own, or for a TTA batch (lists of
    views) the first view's, which is the tensor :func:`_plain_inputs` gives."""
    samples = data.get('data_samples') if isinstance(data, dict) else None
    if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], (list, tuple)):
        return dict(samples[0][index].metainfo)
    return dict(sample.metainfo)


def _renamed(key: str, old: str, new: str) -> str:
    """``key`` (a state-dict key, or a metadata key: a module prefix without its final dot)
    moved from prefix ``old`` to prefix ``new``."""
    return new[:-1] if key == old[:-1] else new + key[len(old):]


def _strip_prefix(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> dict:
    """State-dict hook: the wrapper saves exactly the segmentor's state dict (no
    ``segmentor.`` prefix; the shared data preprocessor is not saved twice)."""
    inner = prefix + _PREFIX
    ours = [k for k in state if k.startswith(prefix)]
    moved = {_renamed(k, inner, prefix): state[k] for k in ours if k.startswith(inner)}
    for key in ours:
        del state[key]
    state.update(moved)
    meta = getattr(state, '_metadata', None)
    if meta is not None:
        keys = [k for k in meta if k.startswith(prefix) or k == prefix[:-1]]
        own = {_renamed(k, inner, prefix): meta[k] for k in keys
               if k == inner[:-1] or k.startswith(inner)}
        for key in keys:
            del meta[key]
        meta.update(own)
    return state


def _add_prefix(state: dict, prefix: str, local_metadata: dict, strict: bool,
                missing: List[str], unexpected: List[str], errors: List[str]) -> None:
    """Load pre-hook: a segmentor state dict (no ``segmentor.`` prefix) loads into the
    wrapper; entries already prefixed pass through. The shared data preprocessor's entries
    are given to both of its names."""
    inner = prefix + _PREFIX
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(inner)]:
        state[_renamed(key, prefix, inner)] = state[key]
        if not key[len(prefix):].startswith('data_preprocessor.'):
            del state[key]
    meta = getattr(state, '_metadata', None)
    if meta is not None:
        for key in [k for k in meta if (k.startswith(prefix) or k == prefix[:-1])
                    and k != inner[:-1] and not k.startswith(inner)]:
            meta.setdefault(_renamed(key, prefix, inner), meta[key])
