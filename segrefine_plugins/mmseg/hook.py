"""``SegRefineHook``: refine the predictions of mmseg's test (and, optionally, validation) loop.

Added by the shipped fragment ``configs/_base_/segrefine_runtime.py``; it reads the config's
top-level entries::

    refiner = dict(type='CRMRefiner', checkpoint='crm.pth')   # None / absent: no refinement
    refine_cfg = dict(min_area=1024, stuff_classes=[...])     # RefinedSegmentor's options

When ``runner.test()`` (or ``runner.train()``) starts (``before_run``, before any checkpoint or
data is loaded) the refiner is built, so a bad entry (unknown type, missing checkpoint file,
bad option) fails at once with a ValueError. Just before the test loop runs (``before_test``,
after the checkpoint is loaded), ``runner.model`` is replaced by a
:class:`~segrefine_plugins.mmseg.segmentor.RefinedSegmentor` around it; ``after_test`` puts the
original model back. With ``val=True`` the same happens around every validation loop, so
validation metrics (and best-checkpoint selection) during training see refined predictions,
while training itself always uses the plain model. A test-time-augmentation model
(``tools/test.py --tta``) is wrapped as a whole: its merged prediction is refined; where the
config's model is itself a ``RefinedSegmentor`` (so ``--tta`` put it inside the TTA model,
which would merge coarse logits and drop the refinement), the two are swapped for the loop
(the TTA model around the plain segmentor, the ``RefinedSegmentor`` around it). Under
``--launcher pytorch`` the distributed wrapper (``MMDistributedDataParallel``) is wrapped as it
is: each rank refines its own share of the images (the refiner on that rank's device) and the
evaluator gathers the results.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmseg.registry import HOOKS

from ..inference.base import Refiner
from ..options import to_bool
from .refiners import build_mmseg_refiner
from .segmentor import RefinedSegmentor, _module_device

_FROM_CONFIG = object()


def _refining_model(model: Any) -> bool:
    """Whether ``model`` (possibly in a DDP wrapper or a TTA model) is a RefinedSegmentor."""
    inner = model.module if is_model_wrapper(model) else model
    if isinstance(inner, BaseTTAModel):
        inner = inner.module
    return isinstance(inner, RefinedSegmentor)


@HOOKS.register_module()
class SegRefineHook(Hook):
    """Wrap ``runner.model`` in a :class:`RefinedSegmentor` for the test / val loops.

    Args:
        refiner: the refiner config dict (or a built refiner, or None for no refinement).
            Default: the config's top-level ``refiner`` entry.
        refine_cfg: :class:`RefinedSegmentor` options (``min_area``, ``stuff_classes``, ...),
            merged over the config's top-level ``refine_cfg`` entry.
        test: refine in the test loop.
        val: refine in the validation loop too.
    """

    priority = 'NORMAL'

    def __init__(self, refiner: Any = _FROM_CONFIG, refine_cfg: Optional[Mapping] = None,
                 test: bool = True, val: bool = False) -> None:
        if refine_cfg is not None and not isinstance(refine_cfg, Mapping):
            raise ValueError(f'SegRefineHook: refine_cfg must be a dict, got {refine_cfg!r}')
        self._refiner_arg = refiner
        self._refine_cfg_arg = dict(refine_cfg or {})
        self.test = to_bool(test, 'test')
        self.val = to_bool(val, 'val')
        self.refiner: Optional[Refiner] = None
        self.refine_cfg: Dict[str, Any] = {}
        self._wrapped: Optional[RefinedSegmentor] = None
        self._swapped: Optional[tuple] = None

    # ------------------------------------------------------------------ set-up
    def before_run(self, runner: Any) -> None:
        """Build the refiner (config errors surface here, before anything is loaded)."""
        cfg = getattr(runner, 'cfg', None) or {}
        refiner_cfg = cfg.get('refiner') if self._refiner_arg is _FROM_CONFIG else \
            self._refiner_arg
        base = cfg.get('refine_cfg') or {}
        if not isinstance(base, Mapping):
            raise ValueError(f'the config entry refine_cfg must be a dict, got {base!r}')
        self.refine_cfg = {**dict(base), **self._refine_cfg_arg}
        self.refine_cfg.pop('_scope_', None)
        if refiner_cfg is None:
            self.refiner = None
            if _refining_model(runner.model):
                runner.logger.info('SegRefineHook: the model is a RefinedSegmentor (it refines '
                                   'its own predictions; under TTA this hook refines after '
                                   'merging)')
            else:
                runner.logger.info('SegRefineHook: no refiner configured; predictions are '
                                   'left as the model makes them')
            return
        self.refiner = build_mmseg_refiner(refiner_cfg, _module_device(runner.model))
        # validates refine_cfg (unknown keys, bad values; class names against the built
        # loops' datasets) on a throw-away wrapper, before the checkpoint is loaded
        self._make_wrapper(runner.model, self._loop_meta(runner))
        runner.logger.info(f'SegRefineHook: refining with {type(self.refiner).__name__} '
                           f'({"test" if self.test else ""}{" + val" if self.val else ""})')

    def _loop_meta(self, runner: Any) -> Optional[dict]:
        """The metainfo of the dataset of a loop this hook refines that the runner has
        already built (mmengine builds it before ``before_run``), else None."""
        for wanted, attr in ((self.test, '_test_loop'), (self.val, '_val_loop')):
            loop = getattr(runner, attr, None) if wanted else None
            dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
            meta = getattr(dataset, 'metainfo', None)
            if isinstance(meta, Mapping):
                return dict(meta)
        return None

    def _make_wrapper(self, model: Any, dataset_meta: Optional[dict] = None) -> RefinedSegmentor:
        try:
            wrapper = RefinedSegmentor(model, self.refiner, **self.refine_cfg)
        except TypeError as err:
            raise ValueError(f'SegRefineHook: bad refine_cfg {self.refine_cfg!r}: {err}') from None
        if dataset_meta is not None:
            wrapper.dataset_meta = dataset_meta
        return wrapper

    # ------------------------------------------------------------------ wrapping
    def _wrap(self, runner: Any, loop: Any) -> None:
        model = runner.model
        inner = model.module if is_model_wrapper(model) else model
        if isinstance(inner, BaseTTAModel) and isinstance(inner.module, RefinedSegmentor):
            self._refine_after_merging(runner, inner)
            return
        if self.refiner is None or isinstance(inner, RefinedSegmentor):
            return
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        meta = getattr(dataset, 'metainfo', None)
        self._wrapped = self._make_wrapper(runner.model, meta)
        runner.model = self._wrapped

    def _refine_after_merging(self, runner: Any, tta: BaseTTAModel) -> None:
        """TTA(RefinedSegmentor(seg)) -> RefinedSegmentor(TTA(seg)) until :meth:`_unwrap`."""
        refined: RefinedSegmentor = tta.module
        self._swapped = (runner.model, tta, refined, refined.segmentor)
        tta.module = refined.segmentor
        refined.segmentor = runner.model
        runner.model = refined

    def _unwrap(self, runner: Any) -> None:
        if self._wrapped is not None and self._wrapped.roi_options.gated:
            runner.logger.info(f'SegRefineHook: the do-no-harm gate kept '
                               f'{self._wrapped.rois_gated} of {self._wrapped.rois_refined} '
                               f'refined ROIs coarse')
        if self._swapped is not None:
            model, tta, refined, plain = self._swapped
            refined.segmentor = plain
            tta.module = refined
            runner.model = model
            self._swapped = None
        if self._wrapped is not None and runner.model is self._wrapped:
            runner.model = self._wrapped.segmentor
        self._wrapped = None

    def before_test(self, runner: Any) -> None:
        if self.test:
            self._wrap(runner, runner.test_loop)

    def after_test(self, runner: Any) -> None:
        self._unwrap(runner)

    def before_val(self, runner: Any) -> None:
        if self.val:
            self._wrap(runner, runner.val_loop)

    def after_val(self, runner: Any) -> None:
        self._unwrap(runner)

