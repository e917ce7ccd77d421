"""Shared pieces of the mmseg test modules (not a test module itself).

A tiny but real mmseg model (``EncoderDecoder``: ResNetV1c-18 with 8 base channels + PSPHead,
randomly initialised with a fixed seed), a small two-class set in mmseg's folder layout made
at test time from ``$SEGREFINE_DATA/ecssd`` (default ``../shared/data``), and a Runner config built through the shipped
fragment ``configs/_base_/segrefine_runtime.py``.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from conftest import require_module

mmseg = require_module('mmseg')
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

import segrefine_plugins.mmseg  # noqa: E402,F401  (registers into mmseg)
from segrefine_plugins.mmseg.datasets import convert_salient_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNTIME_FRAGMENT = REPO / 'configs' / '_base_' / 'segrefine_runtime.py'
CLASSES = ('background', 'object')

#: ECSSD pairs used by the tests, resized to this long side (original size of the samples);
#: the test pipeline resizes them again to TEST_SCALE, so original size != input size.
NUM_IMAGES, LONG_SIDE, TEST_SCALE = 3, 64, (48, 48)
#: multi-object options for the tiny images (published min_area 1024 would skip everything)
REFINE_CFG = dict(min_area=64, kernel_size=3)


def tiny_model_cfg(num_classes: int = 2) -> Dict[str, Any]:
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255, size_divisor=8),
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=16, base_channels=8,
                      num_stages=4, out_indices=(3,), dilations=(1, 1, 2, 4),
                      strides=(1, 2, 1, 1), norm_cfg=norm_cfg, contract_dilation=True),
        decode_head=dict(type='PSPHead', in_channels=64, in_index=0, channels=16,
                         pool_scales=(1, 2, 3, 6), dropout_ratio=0.1, num_classes=num_classes,
                         norm_cfg=norm_cfg, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def mmseg_scope():
    """Context: mmseg's registries as the default scope (as a Runner with mmseg configs has)."""
    from mmengine.registry import DefaultScope
    return DefaultScope.overwrite_default_scope('mmseg')


def build_tiny_model(seed: int = 0) -> torch.nn.Module:
    from mmseg.registry import MODELS
    torch.manual_seed(seed)
    with mmseg_scope():
        model = MODELS.build(Config(dict(model=tiny_model_cfg())).model)
    # a little spread in the classifier so that both classes show up in the predictions
    torch.nn.init.normal_(model.decode_head.conv_seg.weight, std=1.0)
    return model.eval()


#: a two-scale, two-flip test-time augmentation pipeline (a config's ``tta_pipeline``)
TTA_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(64, 64), keep_ratio=False),
         dict(type='Resize', scale=(80, 80), keep_ratio=False)],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])]


def pipeline_cfg(scale=TEST_SCALE) -> List[dict]:
    return [dict(type='LoadImageFromFile'), dict(type='Resize', scale=scale, keep_ratio=False),
            dict(type='LoadAnnotations'), dict(type='PackSegInputs')]


def dataset_cfg(root: Path, pipeline: Optional[List[dict]] = None) -> Dict[str, Any]:
    return dict(type='BaseSegDataset', data_root=str(root),
                data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                img_suffix='.png', seg_map_suffix='.png', metainfo=dict(classes=CLASSES),
                pipeline=pipeline or pipeline_cfg())


def build_dataset(cfg: Dict[str, Any]) -> Any:
    """mmseg's DATASETS.build under the mmseg scope (its transforms live in mmseg's registry)."""
    from mmseg.registry import DATASETS
    with mmseg_scope():
        return DATASETS.build(cfg)


def make_salient_set(data_root: Path, out: Path) -> Path:
    """The first NUM_IMAGES ECSSD pairs at LONG_SIDE px, in mmseg's layout under ``out``."""
    convert_salient_pairs(data_root / 'ecssd', out, limit=NUM_IMAGES, long_side=LONG_SIDE)
    return out


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    """The tiny models here run faster on one thread (no parallel-region overhead; a big help
    when the 2 cores are shared); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def set_root(data_root, tmp_path_factory) -> Path:
    """Fixture: the small two-class set of :func:`make_salient_set`."""
    return make_salient_set(data_root, tmp_path_factory.mktemp('salient'))


@pytest.fixture(scope='module')
def cascadepsp_cfg(cascadepsp_weights) -> Dict[str, Any]:
    """Fixture: an mmseg refiner entry for the synthetic CascadePSP weights, sized for tests."""
    return dict(type='CascadePSPRefiner', checkpoint=str(cascadepsp_weights), L=96, fast=True)


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': CLASSES}}},
               path)
    return path


def runner_cfg(tmp: Path, set_root: Path, checkpoint: Path, **entries: Any) -> Config:
    """A full mmseg test config: mmseg's default runtime + the shipped segrefine fragment,
    the tiny model, the small set; ``entries`` (e.g. ``refiner=...``) are merged on top."""
    cfg_file = tmp / f'cfg_{uuid.uuid4().hex[:8]}.py'
    cfg_file.write_text(
        f"_base_ = ['mmseg::_base_/default_runtime.py', {str(RUNTIME_FRAGMENT)!r}]\n")
    cfg = Config.fromfile(str(cfg_file))
    cfg.merge_from_dict(dict(
        model=tiny_model_cfg(),
        # every mmseg base config has it at the top level too; the Runner adds it to the model
        # config (a RefinedSegmentor model must take it)
        data_preprocessor=tiny_model_cfg()['data_preprocessor'],
        work_dir=str(tmp / 'work'),
        experiment_name=f'exp_{uuid.uuid4().hex[:8]}',
        log_level='WARNING',
        load_from=str(checkpoint),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        test_dataloader=dict(batch_size=2, num_workers=0, persistent_workers=False,
                             sampler=dict(type='DefaultSampler', shuffle=False),
                             dataset=dataset_cfg(set_root)),
        test_evaluator=[dict(type='IoUMetric', iou_metrics=['mIoU']),
                        dict(type='BoundaryMetric', prefix='boundary')],
        test_cfg=dict(type='TestLoop')))
    for key, value in entries.items():
        cfg[key] = value
    return cfg


class RecordPredictions(Hook):
    """Keeps the data samples the test / val loop hands to the evaluator (and the runner)."""

    def __init__(self) -> None:
        self.samples: List[Any] = []
        self.runner: Any = None

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.samples.extend(outputs)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.samples.extend(outputs)


def run_test(cfg: Config) -> tuple[dict, RecordPredictions]:
    """``Runner.from_cfg(cfg).test()`` with a recorder; returns (metrics, recorder)."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    recorder = RecordPredictions()
    recorder.runner = runner
    runner.register_hook(recorder, priority='LOWEST')
    metrics = runner.test()
    return metrics, recorder
