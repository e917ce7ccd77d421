#!/usr/bin/env python3
"""Time mmseg's own test loop per image, without and with a refiner (``RefinedSegmentor``).

Builds the shipped plain config ``configs/mmseg/pspnet_r50-d8_salient-512x512.py`` (a real
PSPNet-R50 from mmseg's model zoo definition, random weights with the classifier spread so
that both classes show up), turns it into a refined one exactly as a user does (the shipped
runtime fragment + a ``refiner`` entry), writes ``--images`` ECSSD pairs resized to
``--size`` x ``--size`` in mmseg's layout into a temporary folder, and runs
``Runner.test()`` once per variant (mmengine's real TestLoop, IoUMetric + BoundaryMetric).

    python tools/benchmark_mmseg.py --images 3 \\
        --variant none \\
        --variant cascadepsp:type=CascadePSPRefiner,checkpoint=synthetic \\
        --variant crm:type=CRMRefiner

``checkpoint=synthetic`` makes the golden-recipe synthetic CascadePSP / CRM weights (seed 0)
from the spec manifest (timing does not depend on the weights' values, except through
CascadePSP's crop skip rule); ``CRMRefiner`` without a checkpoint loads the shipped default.
Variant keys other than ``type`` / ``checkpoint`` go to the refiner (``fast=true``, ``L=900``,
``scales=...`` is not supported here); ``refine_cfg`` options with ``--refine-cfg k=v``.

Method: each variant builds its own Runner (the segmentor weights are loaded from the same
file); a small hook records ``time.perf_counter`` around every test iteration (one image per
iteration: data loading, the segmentor, the refinement, the evaluator's ``process``). The
first iteration is a warm-up and is left out when there are at least two images; the table
gives the median and the mean seconds per image of the others, the extra time over the first
variant, and the metrics the evaluator reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))

from benchmark import parse_pairs, synthetic_checkpoint  # noqa: E402  (same value syntax)

BASE_CONFIG = REPO / 'configs' / 'mmseg' / 'pspnet_r50-d8_salient-512x512.py'
RUNTIME_FRAGMENT = REPO / 'configs' / '_base_' / 'segrefine_runtime.py'


def parse_variant(text: str) -> Tuple[str, Optional[Dict[str, Any]]]:
    """``NAME[:k=v,...]`` -> (name, refiner entry or None for ``none``)."""
    name, _, rest = text.partition(':')
    if not name:
        raise SystemExit(f'error: bad --variant {text!r}')
    if name == 'none' and not rest:
        return name, None
    entry = parse_pairs(rest.split(',') if rest else [], '--variant')
    if 'type' not in entry:
        raise SystemExit(f'error: --variant {text!r} needs type=CascadePSPRefiner|CRMRefiner')
    return name, entry


def write_square_set(src: Path, out: Path, count: int, size: int) -> List[str]:
    """The first ``count`` pairs of ``src`` (images/ + masks/) resized to size x size, as an
    mmseg two-class set (labels 0 / 1) under ``out``; returns the stems."""
    import cv2
    import numpy as np

    from segrefine_plugins.io import pair_files
    pairs = pair_files(src / 'images', src / 'masks').pairs[:count]
    if len(pairs) < count:
        raise SystemExit(f'error: {src} has only {len(pairs)} pairs')
    (out / 'img_dir' / 'val').mkdir(parents=True)
    (out / 'ann_dir' / 'val').mkdir(parents=True)
    stems = []
    for stem, image_path, mask_path in pairs:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise SystemExit(f'error: cannot read {image_path} / {mask_path}')
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        label = (cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) > 128)
        cv2.imwrite(str(out / 'img_dir' / 'val' / f'{stem}.png'), image)
        cv2.imwrite(str(out / 'ann_dir' / 'val' / f'{stem}.png'), label.astype(np.uint8))
        stems.append(stem)
    return stems


def make_segmentor_checkpoint(path: Path) -> None:
    """PSPNet-R50 of the base config, random weights (seed 0, classifier std 1)."""
    import torch
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(BASE_CONFIG)).model)
    torch.nn.init.normal_(model.decode_head.conv_seg.weight, std=1.0)
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('background', 'object')}}}, path)


def run_variant(name: str, refiner: Optional[Dict[str, Any]], set_root: Path,
                checkpoint: Path, work: Path, refine_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """One Runner.test() with per-iteration timing; returns times and metrics."""
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    cfg_file = work / f'{name}.py'
    cfg_file.write_text(f'_base_ = [{str(BASE_CONFIG)!r}, {str(RUNTIME_FRAGMENT)!r}]\n')
    cfg = Config.fromfile(str(cfg_file))
    cfg.merge_from_dict(dict(
        work_dir=str(work / name), load_from=str(checkpoint), log_level='WARNING',
        test_evaluator=[dict(type='IoUMetric', iou_metrics=['mIoU']),
                        dict(type='BoundaryMetric', prefix='boundary')],
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))))
    cfg.test_dataloader.dataset.data_root = str(set_root)
    cfg.refiner = refiner
    if refine_cfg:
        cfg.refine_cfg = refine_cfg
    times: List[float] = []

    class IterTimer(Hook):
        def before_test_iter(self, runner, batch_idx, data_batch=None):
            self._t = time.perf_counter()

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            times.append(time.perf_counter() - self._t)

    runner = Runner.from_cfg(cfg)
    runner.register_hook(IterTimer(), priority='VERY_HIGH')
    metrics = runner.test()
    timed = times[1:] if len(times) > 1 else times
    return {'name': name, 'refiner': refiner, 'images': len(times),
            'median_s': statistics.median(timed), 'mean_s': statistics.fmean(timed),
            'first_s': times[0], 'metrics': {k: float(v) for k, v in metrics.items()}}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', default=os.environ.get('SEGREFINE_DATA',
                                                    str(REPO.parent / 'shared' / 'data')),
                   help='data root with ecssd/ (default $SEGREFINE_DATA or ../shared/data)')
    p.add_argument('--spec', default=os.environ.get('SEGREFINE_SPEC',
                                                    str(REPO / 'tests' / 'spec')))
    p.add_argument('--images', type=int, default=3, help='images in the set (first = warm-up)')
    p.add_argument('--size', type=int, default=512, help='images are resized to SIZE x SIZE')
    p.add_argument('--variant', action='append', default=[],
                   help='NAME[:type=...,checkpoint=...|synthetic,k=v]; "none" = no refiner')
    p.add_argument('--refine-cfg', action='append', default=[], metavar='K=V',
                   help='RefinedSegmentor option (min_area, roi_padding, ...)')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    p.add_argument('--json', default=None, help='also write the results to this file')
    a = p.parse_args(argv)
    if a.images < 1 or a.size < 32:
        raise SystemExit('error: --images must be >= 1 and --size >= 32')
    variants = [parse_variant(v) for v in (a.variant or ['none'])]

    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    refine_cfg = parse_pairs(a.refine_cfg, '--refine-cfg')
    import segrefine_plugins.mmseg  # noqa: F401  (registers the refiners, hook, metric)

    results = []
    with tempfile.TemporaryDirectory(prefix='segrefine_mmseg_bench_') as tmp:
        tmp = Path(tmp)
        set_root = tmp / 'set'
        write_square_set(Path(a.data) / 'ecssd', set_root, a.images, a.size)
        checkpoint = tmp / 'pspnet.pth'
        make_segmentor_checkpoint(checkpoint)
        for name, entry in variants:
            if entry is not None and entry.get('checkpoint') == 'synthetic':
                kind = 'crm' if entry['type'].startswith('CRM') else 'cascadepsp'
                weights = synthetic_checkpoint(kind, tmp, Path(a.spec))
                entry = dict(entry, checkpoint=str(weights))
            print(f'[{name}] {json.dumps(entry)}', file=sys.stderr, flush=True)
            results.append(run_variant(name, entry, set_root, checkpoint, tmp, refine_cfg))

    base = results[0]['median_s']
    print(f'\nmmseg test loop, PSPNet-R50 on {a.images} ECSSD images at {a.size}x{a.size}, '
          f'torch threads {torch.get_num_threads()} (first image = warm-up)\n')
    print('| variant | s / image (median) | mean | + over first | mIoU | mBA | boundary IoU |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for r in results:
        m = r['metrics']
        print(f"| {r['name']} | {r['median_s']:.2f} | {r['mean_s']:.2f} | "
              f"{r['median_s'] - base:+.2f} | {m.get('mIoU', float('nan')):.2f} | "
              f"{m.get('boundary/mBA', float('nan')):.2f} | "
              f"{m.get('boundary/mBIoU', float('nan')):.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
