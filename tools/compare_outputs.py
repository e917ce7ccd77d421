#!/usr/bin/env python3
"""How much two configurations of one refiner differ, over a folder of image / mask pairs.

    python tools/compare_outputs.py --type CRM --synthetic-weights \\
        --root ../shared/data/ecssd --limit 50 --coarse perturb --b roi_only=true

For each pair (``ROOT/images`` + ``ROOT/masks``, sorted by name) a coarse input is made from
the ground truth (``--coarse perturb``: the published perturbation at IoU 0.8, seeded by the
index, as ``tools/eval_default.py``; ``lowres``: 8x down-up-sampled; ``gt``: the ground truth
itself), refined once with configuration A and once with B (``--a`` / ``--b``: ``key=value``
lists over the shared ``--set`` options), and compared:

* ``max|diff|`` (largest over all images) and ``mean|diff|`` (over all pixels) of the two
  probability maps;
* ``labels differ``: the fraction of pixels whose binarised label (p > 0.5) differs;
* IoU and mBA against the ground truth of A's and B's binarised outputs (accumulated IoU,
  mean mBA, in percent), and the seconds per image of each.

``--synthetic-weights`` uses the golden-recipe synthetic weights (seed 0, the parity weights of
the golden files); otherwise ``--checkpoint`` or the refiner's default weights.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))
DATA = Path(os.environ.get('SEGREFINE_DATA', REPO.parent / 'shared' / 'data'))
SPEC = Path(os.environ.get('SEGREFINE_SPEC', REPO / 'tests' / 'spec'))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--type', default='CRM', help='refiner type')
    w = p.add_mutually_exclusive_group()
    w.add_argument('--checkpoint', help='weights file (default: the refiner\'s default)')
    w.add_argument('--synthetic-weights', action='store_true',
                   help='golden-recipe synthetic weights (seed 0) from the spec manifest')
    p.add_argument('--root', default=str(DATA / 'ecssd'), help='folder with images/ + masks/')
    p.add_argument('--start', type=int, default=0)
    p.add_argument('--limit', type=int, default=20)
    p.add_argument('--coarse', choices=['perturb', 'lowres', 'gt'], default='perturb')
    p.add_argument('--set', action='append', default=[], metavar='K=V',
                   help='refiner option shared by A and B')
    p.add_argument('--a', action='append', default=[], metavar='K=V', help='options of A')
    p.add_argument('--b', action='append', default=[], metavar='K=V', help='options of B')
    p.add_argument('--threads', type=int, help='torch.set_num_threads')
    p.add_argument('--spec', default=str(SPEC))
    a = p.parse_args(argv)
    if a.limit < 1 or a.start < 0:
        raise SystemExit('error: --limit must be >= 1 and --start >= 0')

    import numpy as np
    import torch

    from benchmark import parse_pairs, synthetic_checkpoint
    from eval_default import coarse_mask
    from segrefine_plugins import build_refiner
    from segrefine_plugins.metrics import MetricSummary
    from segrefine_plugins.training.datasets import find_pairs, read_pair

    if a.threads:
        torch.set_num_threads(a.threads)
    shared = dict(type=a.type, **parse_pairs(a.set, '--set'))
    cfg_a = dict(shared, **parse_pairs(a.a, '--a'))
    cfg_b = dict(shared, **parse_pairs(a.b, '--b'))
    pairs = find_pairs(a.root)[a.start:a.start + a.limit]
    if not pairs:
        raise SystemExit(f'error: no pairs selected in {a.root}')
    with tempfile.TemporaryDirectory(prefix='segrefine_compare_') as tmp:
        if a.synthetic_weights:
            ck = str(synthetic_checkpoint(a.type, Path(tmp), Path(a.spec)))
            cfg_a['checkpoint'] = cfg_b['checkpoint'] = ck
        elif a.checkpoint:
            cfg_a['checkpoint'] = cfg_b['checkpoint'] = a.checkpoint
        ref_a, ref_b = build_refiner(cfg_a), build_refiner(cfg_b)

    sums = {'A': MetricSummary(), 'B': MetricSummary()}
    secs = {'A': [], 'B': []}
    max_diff, abs_sum, flips, pixels = 0.0, 0.0, 0, 0
    decoded: List[float] = []
    for i, pair in enumerate(pairs, a.start):
        image, gt = read_pair(*pair)
        cm = gt if a.coarse == 'gt' else coarse_mask(a.coarse, gt, i)
        out = {}
        for key, ref in (('A', ref_a), ('B', ref_b)):
            t = time.perf_counter()
            out[key] = ref.refine(image, cm)
            secs[key].append(time.perf_counter() - t)
            sums[key].update(gt > 127, out[key] > 0.5)
        frac = getattr(ref_b, 'last_stats', {}).get('decoded')
        if frac is not None:
            decoded.append(float(frac))
        d = np.abs(out['A'] - out['B'])
        max_diff = max(max_diff, float(d.max()))
        abs_sum += float(d.sum())
        flips += int(((out['A'] > 0.5) != (out['B'] > 0.5)).sum())
        pixels += d.size

    ra, rb = sums['A'].result(), sums['B'].result()
    print(f'\n{a.type}: A = {options_str(cfg_a)}; B = {options_str(cfg_b)}')
    print(f'{len(pairs)} pairs of {a.root} from {a.start}, coarse input: {a.coarse}, '
          f'torch threads {torch.get_num_threads()}\n')
    print('| max|diff| | mean|diff| | labels differ | IoU A | IoU B | mBA A | mBA B | '
          's / image A | s / image B |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    print(f'| {max_diff:.3e} | {abs_sum / pixels:.3e} | {100 * flips / pixels:.4f} % | '
          f'{100 * ra["iou"]:.2f} | {100 * rb["iou"]:.2f} | {100 * ra["mba"]:.2f} | '
          f'{100 * rb["mba"]:.2f} | {np.mean(secs["A"]):.2f} | {np.mean(secs["B"]):.2f} |')
    if decoded:
        print(f'\nB decoded on average {100 * np.mean(decoded):.1f} % of the queries '
              f'(last_stats "decoded": share of scales x pixels)')
    return 0


def options_str(cfg: dict) -> str:
    return ', '.join(f'{k}={v}' for k, v in cfg.items() if k not in ('type', 'checkpoint')) \
        or 'defaults'


if __name__ == '__main__':
    sys.exit(main())
