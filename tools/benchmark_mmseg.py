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

Modes are ``(name, refiner entry or None, refine_cfg options)``: ``--variant`` gives the
first two inline (``--refine-cfg`` options are shared by all), ``--modes-file FILE.py`` adds
those of its ``MODES`` list (``[(name, {refiner entry} | None, {refine_cfg}), ...]``: e.g. a
ROI batch size or an upscale rule), so new knobs are benchmarked without editing this tool.

``checkpoint=synthetic`` makes the golden-recipe synthetic CascadePSP / CRM weights (seed 0)
from the spec manifest (timing does not depend on the weights' values, except through
CascadePSP's crop skip rule); ``CRMRefiner`` without a checkpoint loads the shipped default.
Variant keys other than ``type`` / ``checkpoint`` go to the refiner (``fast=true``, ``L=900``,
``scales=...`` is not supported here); ``refine_cfg`` options with ``--refine-cfg k=v``.

Method: each variant builds its own Runner (the segmentor weights are loaded from the same
file); a small hook records ``time.perf_counter`` around every test iteration (one image per
iteration: data loading, the segmentor, the refinement, the evaluator's ``process``). The
first iteration is a warm-up and is left out when there are at least two images; the table
gives the median and the mean seconds per image of the others, the speed-up of each mode
over the reference (``--reference``, default the first refined mode: make it the exact
fp32 one), the extra time over the first mode, the process's peak RSS during that mode's
loop (``VmHWM`` reset before it), the metrics the evaluator reported (mIoU, multi-class mBA,
boundary IoU against the ground truth) with their difference to the reference's, and the
agreement of the predicted label maps with the reference mode's (mIoU and multi-class mBA
taking the reference's labels as the ground truth; 100 = identical). Threads are set
explicitly (torch ``--threads``, default min(CPUs, 4); OpenCV 1) and printed with the CPU's
features.
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

from benchmark import load_modes_file, parse_pairs, peak_rss_bytes, reset_peak_rss, \
    synthetic_checkpoint  # noqa: E402  (same value syntax, same memory method)

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

    from segrefine_plugins.io import pair_files, read_image, read_mask
    pairs = pair_files(src / 'images', src / 'masks').pairs[:count]
    if len(pairs) < count:
        raise SystemExit(f'error: {src} has only {len(pairs)} pairs')
    (out / 'img_dir' / 'val').mkdir(parents=True)
    (out / 'ann_dir' / 'val').mkdir(parents=True)
    stems = []
    for stem, image_path, mask_path in pairs:
        try:
            image = np.ascontiguousarray(read_image(image_path)[:, :, ::-1])   # BGR (imwrite)
            mask = read_mask(mask_path)
        except ValueError as e:
            raise SystemExit(f'error: {e}') from None
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
    labels: List[Any] = []

    class IterTimer(Hook):
        def before_test_iter(self, runner, batch_idx, data_batch=None):
            self._t = time.perf_counter()

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            times.append(time.perf_counter() - self._t)
            labels.extend(o.pred_sem_seg.data[0].cpu().numpy() for o in outputs or [])

    runner = Runner.from_cfg(cfg)
    runner.register_hook(IterTimer(), priority='VERY_HIGH')
    peak_method = reset_peak_rss()
    metrics = runner.test()
    peak = peak_rss_bytes() if peak_method else None
    timed = times[1:] if len(times) > 1 else times
    return {'name': name, 'refiner': refiner, 'refine_cfg': refine_cfg, 'images': len(times),
            'median_s': statistics.median(timed), 'mean_s': statistics.fmean(timed),
            'first_s': times[0], 'peak_rss': peak, 'labels': labels,
            'metrics': {k: float(v) for k, v in metrics.items()}}


def label_agreement(labels: List[Any], reference: List[Any]) -> Dict[str, float]:
    """mIoU (over the classes either map has) and multi-class mBA of ``labels`` taking
    ``reference`` as the ground truth, in percent, averaged over the images."""
    import numpy as np

    from segrefine_plugins.metrics.mba import multiclass_boundary_accuracy
    ious, mbas = [], []
    for pred, ref in zip(labels, reference):
        classes = np.union1d(np.unique(pred), np.unique(ref))
        ious.append(np.mean([np.logical_and(pred == c, ref == c).sum()
                             / np.logical_or(pred == c, ref == c).sum() for c in classes]))
        mba = multiclass_boundary_accuracy(ref, pred)
        if mba == mba:
            mbas.append(mba)
    return {'miou_vs_ref': 100 * float(np.mean(ious)),
            'mba_vs_ref': 100 * float(np.mean(mbas)) if mbas else float('nan')}


def format_table(results: List[Dict[str, Any]], reference: str) -> List[str]:
    """The markdown table of the modes (see the module docstring)."""
    ref = next(r for r in results if r['name'] == reference)
    first = next(r['median_s'] for r in results if 'error' not in r)
    lines = [f'| mode | s / image (median) | mean | speed-up vs {reference} | + over first | '
             f'peak RSS GB | mIoU | mBA | boundary IoU | dmIoU vs {reference} | '
             f'dmBA vs {reference} | mIoU vs ref output | mBA vs ref output |',
             '|' + ' --- |' * 13]
    nan = float('nan')
    for r in results:
        if 'error' in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:200]} |" + ' |' * 11)
            continue
        m, rm = r['metrics'], ref['metrics']
        peak = '-' if r['peak_rss'] is None else f"{r['peak_rss'] / 1024 ** 3:.2f}"
        lines.append(
            f"| {r['name']} | {r['median_s']:.2f} | {r['mean_s']:.2f} | "
            f"{ref['median_s'] / r['median_s']:.2f}x | {r['median_s'] - first:+.2f} | {peak} | "
            f"{m.get('mIoU', nan):.2f} | {m.get('boundary/mBA', nan):.2f} | "
            f"{m.get('boundary/mBIoU', nan):.2f} | "
            f"{m.get('mIoU', nan) - rm.get('mIoU', nan):+.2f} | "
            f"{m.get('boundary/mBA', nan) - rm.get('boundary/mBA', nan):+.2f} | "
            f"{r['miou_vs_ref']:.2f} | {r['mba_vs_ref']:.2f} |")
    return lines


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
    p.add_argument('--modes-file', help='a .py file with MODES = [(name, {refiner} | None, '
                                        '{refine_cfg}), ...]')
    p.add_argument('--reference', help='mode the ratios and deltas compare with (default: '
                                       'the first mode with a refiner, else the first)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads (default min(CPUs, 4)); OpenCV runs 1')
    p.add_argument('--json', default=None, help='also write the results to this file')
    a = p.parse_args(argv)
    if a.images < 1 or a.size < 32:
        raise SystemExit('error: --images must be >= 1 and --size >= 32')
    refine_cfg = parse_pairs(a.refine_cfg, '--refine-cfg')
    variants = [(n, e, {}) for n, e in (parse_variant(v) for v in a.variant)]
    if a.modes_file:
        variants += [(m.name, m.refiner, m.options)
                     for m in load_modes_file(a.modes_file, check=False)]
    variants = variants or [('none', None, {})]
    names = [v[0] for v in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f'error: mode names must be unique, got {names}')
    reference = a.reference or next((n for n, e, _ in variants if e is not None), names[0])
    if reference not in names:
        raise SystemExit(f'error: --reference {reference!r} is not a mode ({names})')

    import torch

    from segrefine_plugins.inference.accel import describe_cpu
    from segrefine_plugins.threads import configure_threads
    configure_threads(a.threads)
    import segrefine_plugins.mmseg  # noqa: F401  (registers the refiners, hook, metric)

    results = []
    with tempfile.TemporaryDirectory(prefix='segrefine_mmseg_bench_') as tmp:
        tmp = Path(tmp)
        set_root = tmp / 'set'
        write_square_set(Path(a.data) / 'ecssd', set_root, a.images, a.size)
        checkpoint = tmp / 'pspnet.pth'
        make_segmentor_checkpoint(checkpoint)
        for name, entry, options in variants:
            if entry is not None and entry.get('checkpoint') == 'synthetic':
                kind = 'crm' if entry['type'].startswith('CRM') else 'cascadepsp'
                weights = synthetic_checkpoint(kind, tmp, Path(a.spec))
                entry = dict(entry, checkpoint=str(weights))
            print(f'[{name}] {json.dumps(entry)} {json.dumps(options)}', file=sys.stderr,
                  flush=True)
            try:
                results.append(run_variant(name, entry, set_root, checkpoint, tmp,
                                           dict(refine_cfg, **options)))
            except Exception as err:  # one failing mode is a row of the table, not a lost run
                print(f'[{name}] failed: {type(err).__name__}: {err}', file=sys.stderr,
                      flush=True)
                results.append({'name': name, 'error': f'{type(err).__name__}: {err}'})

    ok = [r for r in results if 'error' not in r]
    if not any(r['name'] == reference for r in ok):
        print(f'error: the reference mode {reference!r} failed', file=sys.stderr)
        print('\n'.join(f"{r['name']}: {r['error']}" for r in results if 'error' in r),
              file=sys.stderr)
        return 1
    ref_labels = next(r for r in ok if r['name'] == reference)['labels']
    for r in ok:
        r.update(label_agreement(r.pop('labels'), ref_labels))
    print(f'\nmmseg test loop, PSPNet-R50 on {a.images} ECSSD images at {a.size}x{a.size}, '
          f'torch threads {torch.get_num_threads()}, OpenCV 1 (first image = warm-up)')
    print(f'CPU: {describe_cpu()}\n')
    print('\n'.join(format_table(results, reference)))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 1 if len(ok) < len(results) else 0


if __name__ == '__main__':
    sys.exit(main())
