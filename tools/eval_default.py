#!/usr/bin/env python
"""Evaluate a CRM refiner on ECSSD with two kinds of coarse input and print the table.

    python tools/eval_default.py                          # the shipped default weights
    python tools/eval_default.py --checkpoint work_dirs/x/iter_1100.pth --limit 200
    python tools/eval_default.py --scales 0.5 1.0 --kinds perturb

Coarse inputs (made from the ground truth, deterministic):
  perturb  the published training perturbation at IoU target 0.8, seeded by the image index
           (``numpy.random.default_rng([seed, index])``; the same rule as the validation
           set of ``MaskPairDataset``);
  lowres   the ground truth down-sampled 8x ('area') and up again (bilinear), binarised at
           0.5: the output of a low-resolution segmenter.
For each kind it reports IoU (accumulated) and mBA of the coarse input and of the refined
output (probability > 0.5), their difference, and the mean refinement time per image.
Data: ``--data`` or ``$SEGREFINE_DATA`` (default ../shared/data).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segrefine_plugins import build_refiner  # noqa: E402
from segrefine_plugins.metrics import MetricSummary  # noqa: E402
from segrefine_plugins.training.datasets import find_pairs, read_pair  # noqa: E402
from segrefine_plugins.training.perturbation import lowres_mask, perturb_mask  # noqa: E402

KINDS = ('perturb', 'lowres')


def coarse_mask(kind: str, gt: np.ndarray, index: int, seed: int = 0,
                iou_target: float = 0.8, factor: int = 8) -> np.ndarray:
    """The (H, W) uint8 0 / 255 coarse input of ``kind`` for ground truth ``gt`` (uint8)."""
    if kind == 'perturb':
        return perturb_mask(gt, np.random.default_rng([seed, index]), iou_target=iou_target)
    if kind == 'lowres':
        return lowres_mask(gt, factor)
    raise ValueError(f'unknown coarse kind {kind!r}; use one of {KINDS}')


def evaluate(refiner, root: str, kinds=KINDS, limit: Optional[int] = None, start: int = 0,
             seed: int = 0, progress: bool = True) -> Dict[str, Dict[str, float]]:
    """IoU / mBA (percent) of coarse and refined masks per kind, and seconds per image."""
    pairs = find_pairs(root)[start:None if limit is None else start + limit]
    if not pairs:
        raise ValueError(f'no pairs selected in {root!r}')
    out: Dict[str, Dict[str, float]] = {}
    for kind in kinds:
        coarse, refined, seconds = MetricSummary(), MetricSummary(), []
        for i, pair in enumerate(pairs, start):
            image, gt = read_pair(*pair)
            gt_bin = gt > 127
            cm = coarse_mask(kind, gt, i, seed)
            t = time.perf_counter()
            prob = refiner.refine(image, cm)
            seconds.append(time.perf_counter() - t)
            coarse.update(gt_bin, cm > 127)
            refined.update(gt_bin, prob > 0.5)
            if progress and (i - start + 1) % 50 == 0:
                print(f'  {kind}: {i - start + 1}/{len(pairs)}', file=sys.stderr, flush=True)
        c, r = coarse.result(), refined.result()
        out[kind] = {'images': len(pairs), 'coarse_iou': 100 * c['iou'],
                     'coarse_mba': 100 * c['mba'], 'refined_iou': 100 * r['iou'],
                     'refined_mba': 100 * r['mba'], 'seconds_per_image': float(np.mean(seconds))}
    return out


def format_results(results: Dict[str, Dict[str, float]]) -> str:
    """A markdown table of :func:`evaluate`'s results."""
    lines = ['| coarse input | images | IoU coarse | IoU refined | gain | mBA coarse | '
             'mBA refined | gain | s / image |', '|' + ' --- |' * 9]
    for kind, r in results.items():
        lines.append(
            f"| {kind} | {r['images']} | {r['coarse_iou']:.2f} | {r['refined_iou']:.2f} | "
            f"{r['refined_iou'] - r['coarse_iou']:+.2f} | {r['coarse_mba']:.2f} | "
            f"{r['refined_mba']:.2f} | {r['refined_mba'] - r['coarse_mba']:+.2f} | "
            f"{r['seconds_per_image']:.2f} |")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--checkpoint', help='CRM checkpoint (default: the shipped default weights)')
    p.add_argument('--data', default=os.environ.get('SEGREFINE_DATA', '../shared/data'))
    p.add_argument('--dataset', default='ecssd', help='folder under --data (default ecssd)')
    p.add_argument('--scales', type=float, nargs='+', help='CRM scales (default: the '
                   "refiner's)")
    p.add_argument('--kinds', nargs='+', choices=KINDS, default=list(KINDS))
    p.add_argument('--limit', type=int, help='evaluate only this many images')
    p.add_argument('--start', type=int, default=0, help='first image index')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--device', default='cpu')
    p.add_argument('--work-scale', type=float,
                   help='CRM work_scale (default: 1 for --checkpoint, the sidecar\'s for the '
                        'shipped weights; stage-10 checkpoints were trained for 2)')
    p.add_argument('--json', help='also write the results to this JSON file')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dict(type='CRM', checkpoint=args.checkpoint, device=args.device)
    if args.scales:
        cfg['scales'] = tuple(args.scales)
    if args.work_scale is not None:
        cfg['work_scale'] = args.work_scale
    refiner = build_refiner(cfg)
    results = evaluate(refiner, osp.join(args.data, args.dataset), args.kinds, args.limit,
                       args.start, args.seed)
    print(f'{refiner!r}\n{args.dataset} ({args.data}), images from {args.start}, '
          f'torch threads {torch.get_num_threads()}')
    print(format_results(results))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
