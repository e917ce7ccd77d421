#!/usr/bin/env python3
"""Time and score the multi-object ROI protocol (``refine_label_map``) under several modes.

The set: ``--images`` mosaics of 2 x 2 ECSSD objects (image tiles of ``--tile`` px, class
k + 1 for tile k's object, 0 for the backgrounds; so every mosaic has 5 classes and several
components), with a coarse label map made from the truth (``--coarse``): ``lowresN`` = the
truth N x down-sampled and up-sampled with nearest neighbours (a low-resolution segmenter),
``truth`` = the truth itself (perfect input: what a do-no-harm gate must not spoil).

Each mode runs in a fresh process (so peak RSS is its own) with fixed torch / OpenCV
threads; it refines every mosaic ``--repeat`` times and keeps the median seconds per image.
A mode is ``NAME:key=value,...``: keys that are :class:`RoiOptions` fields go to the
protocol (``max_upscale``, ``roi_batch_size``, ``gate_min_iou``, ...), the others to the
refiner (``fast``, ``L``, ``precision``, ...). The first mode is the reference: the table
gives each mode's time ratio to it and its quality deltas (mIoU and multi-class mBA against
the truth; and the share of pixels whose label differs from the reference's output).

    python tools/benchmark_rois.py --refiner type=CascadePSP,checkpoint=synthetic,L=900 \\
        --mode exact --mode cap2:max_upscale=2 --mode cap1_fast:max_upscale=1,fast=true

``checkpoint=synthetic`` builds the golden recipe's synthetic weights (timing only: their
outputs are not meaningful); give the published file for quality figures.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tools'))

from benchmark import parse_pairs, synthetic_checkpoint  # noqa: E402  (same value syntax)


def mosaics(data: Path, count: int, tile: int, coarse: str):
    """``count`` (image, truth, coarse) triples, deterministic (ECSSD pairs in name order)."""
    import cv2
    import numpy as np

    from segrefine_plugins.io import pair_files, read_image, read_mask
    pairs = pair_files(data / 'ecssd' / 'images', data / 'ecssd' / 'masks').pairs
    if len(pairs) < 4 * count:
        raise SystemExit(f'error: {data}/ecssd has only {len(pairs)} pairs')
    out = []
    for m in range(count):
        image = np.zeros((2 * tile, 2 * tile, 3), np.uint8)
        truth = np.zeros((2 * tile, 2 * tile), np.int64)
        for k in range(4):
            _, ip, mp_ = pairs[4 * m + k]
            img = cv2.resize(read_image(ip), (tile, tile), interpolation=cv2.INTER_AREA)
            msk = cv2.resize((read_mask(mp_) > 127).astype(np.uint8), (tile, tile),
                             interpolation=cv2.INTER_NEAREST).astype(bool)
            y, x = (k // 2) * tile, (k % 2) * tile
            image[y:y + tile, x:x + tile] = img
            truth[y:y + tile, x:x + tile][msk] = k + 1
        if coarse == 'truth':
            c = truth.copy()
        elif coarse.startswith('lowres'):
            f = int(coarse[len('lowres'):])
            small = cv2.resize(truth.astype(np.uint8), (2 * tile // f, 2 * tile // f),
                               interpolation=cv2.INTER_NEAREST)
            c = cv2.resize(small, (2 * tile, 2 * tile),
                           interpolation=cv2.INTER_NEAREST).astype(np.int64)
        else:
            raise SystemExit(f'error: --coarse must be truth or lowresN, got {coarse!r}')
        out.append((image, truth, c))
    return out


def run_mode(args: argparse.Namespace, refiner_cfg: Dict[str, Any], mode: Dict[str, Any],
             out_path: str) -> None:
    """Child process: refine every mosaic, save labels and timings."""
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    from segrefine_plugins import build_refiner
    from segrefine_plugins.multiobject import RoiOptions, refine_label_map
    roi = {k: v for k, v in mode.items() if k in RoiOptions.fields()}
    extra = {k: v for k, v in mode.items() if k not in RoiOptions.fields()}
    refiner = build_refiner({**refiner_cfg, **extra})
    options = RoiOptions.from_any(dict(min_area=args.min_area), **roi)
    sets = mosaics(Path(args.data), args.images, args.tile, args.coarse)
    times, labels, gated, rois = [], [], 0, 0
    for image, _, coarse in sets:
        per = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = refine_label_map(image, coarse, refiner, options)
            per.append(time.perf_counter() - t0)
        times.append(statistics.median(per))
        labels.append(res.labels)
        gated += res.gated
        rois += len(res.rois)
    np.savez(out_path, labels=np.stack(labels), times=np.array(times),
             rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
             gated=gated, rois=rois)


def scores(truth, pred) -> Tuple[float, float]:
    """(mIoU over the classes present in the truth, multi-class mBA), in percent."""
    import numpy as np

    from segrefine_plugins.metrics import multiclass_boundary_accuracy
    ious = []
    for c in np.unique(truth):
        inter = np.count_nonzero((truth == c) & (pred == c))
        union = np.count_nonzero((truth == c) | (pred == c))
        ious.append(inter / union)
    return 100 * float(np.mean(ious)), 100 * multiclass_boundary_accuracy(truth, pred)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--refiner', default='type=CRM', help='refiner entry, key=value,...')
    p.add_argument('--mode', action='append', default=[], help='NAME[:key=value,...]')
    p.add_argument('--data', default=os.environ.get('SEGREFINE_DATA',
                                                    str(REPO.parent / 'shared' / 'data')))
    p.add_argument('--images', type=int, default=3)
    p.add_argument('--tile', type=int, default=256, help='mosaic tile side (image = 2 tiles)')
    p.add_argument('--coarse', default='lowres8', help='truth | lowresN')
    p.add_argument('--min-area', type=int, default=1024)
    p.add_argument('--repeat', type=int, default=1, help='runs per image (median)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--json', help='write the table rows here')
    args = p.parse_args()
    import numpy as np

    refiner_cfg = parse_pairs(args.refiner.split(','), '--refiner')
    modes = [m.partition(':') for m in (args.mode or ['published'])]
    modes = [(name, parse_pairs(rest.split(',') if rest else [], '--mode'))
             for name, _, rest in modes]
    sets = mosaics(Path(args.data), args.images, args.tile, args.coarse)
    ctx = mp.get_context('spawn')
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if refiner_cfg.get('checkpoint') == 'synthetic':
            spec = Path(os.environ.get('SEGREFINE_SPEC', REPO.parent / 'shared' / 'spec'))
            refiner_cfg['checkpoint'] = str(synthetic_checkpoint(
                str(refiner_cfg['type']).replace('Refiner', ''), Path(tmp), spec))
        for name, mode in modes:
            out = os.path.join(tmp, f'{len(rows)}.npz')
            proc = ctx.Process(target=run_mode, args=(args, refiner_cfg, mode, out))
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f'error: mode {name!r} failed (exit code {proc.exitcode})')
            res = np.load(out)
            q = [scores(truth, lab) for (_, truth, _), lab in zip(sets, res['labels'])]
            coarse_q = [scores(truth, c) for _, truth, c in sets]
            rows.append(dict(mode=name, options=mode, s_per_image=float(np.median(res['times'])),
                             rss_gb=float(res['rss']), miou=float(np.mean([a for a, _ in q])),
                             mba=float(np.mean([b for _, b in q])),
                             coarse_miou=float(np.mean([a for a, _ in coarse_q])),
                             coarse_mba=float(np.mean([b for _, b in coarse_q])),
                             gated=int(res['gated']), rois=int(res['rois']),
                             labels=res['labels']))
    ref = rows[0]
    from segrefine_plugins.inference.accel import describe_cpu
    print(f'# {describe_cpu()}; torch threads {args.threads}, OpenCV threads 1')
    print(f'# {args.images} mosaics of {2 * args.tile}x{2 * args.tile} px (ECSSD objects), '
          f'coarse = {args.coarse} (mIoU {ref["coarse_miou"]:.2f}, mBA {ref["coarse_mba"]:.2f}); '
          f'refiner {refiner_cfg.get("type")}')
    print('| mode | s / image (median) | ratio to first | peak RSS GB | mIoU | d mIoU | mBA | '
          'd mBA | labels differing from first | ROIs gated |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for r in rows:
        diff = float(np.mean(r['labels'] != ref['labels'])) * 100
        print(f'| {r["mode"]} | {r["s_per_image"]:.2f} | '
              f'{ref["s_per_image"] / r["s_per_image"]:.2f}x | {r["rss_gb"]:.2f} | '
              f'{r["miou"]:.2f} | {r["miou"] - ref["miou"]:+.2f} | {r["mba"]:.2f} | '
              f'{r["mba"] - ref["mba"]:+.2f} | {diff:.2f} % | {r["gated"]} / {r["rois"]} |')
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{k: v for k, v in r.items() if k != 'labels'} for r in rows], indent=1) + '\n')


if __name__ == '__main__':
    main()
