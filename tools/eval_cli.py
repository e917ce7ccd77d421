#!/usr/bin/env python
"""Evaluate CRM refiners through the ``segrefine`` CLI, as a user runs it, and print one table.

    python tools/eval_cli.py --dataset ecssd --limit 300 \
        --model old=default --model new=work_dirs/ft5/iter_1800.pth --work /tmp/eval_cli
    python tools/eval_cli.py --dataset duts-te-2k --start 1900 --limit 100 \
        --model ft5_900=work_dirs/ft5/iter_900.pth          # checkpoint selection (held out)

For the selected image / ground-truth pairs it writes the coarse masks of each kind as PNG
files (made from the ground truth, deterministic), then for each model and kind runs

    python -m segrefine_plugins refine --image IMAGES --mask COARSE/KIND --out OUT [...]
    python -m segrefine_plugins eval --pred OUT --gt GT --coarse COARSE/KIND --json FILE

and reads the JSON (s / image: wall time of the refine command, start-up included, over the
images). Coarse kinds:
  perturb        the published perturbation at IoU target 0.8, seeded by the image's index in
                 the sorted folder (the rule of tools/eval_default.py and the validation set);
                 it sits down-right of the ground truth (+0.027 / +0.026 px averaged over
                 whole outlines: a published quirk, segrefine_plugins/training/perturbation.py);
  perturbsym     the same without that bias (``perturb_mask(..., symmetric=True)``);
  lowresF        the ground truth down-sampled F x ('area') and up again (bilinear),
                 binarised at 0.5 (F = 4, 8, 16, ...);
  lowresFsoft    the same bilinear probability without the threshold (uint8 0..255), as an
                 adapter passing the segmenter's upsampled probability gives it.
Models: ``NAME=default`` is the shipped default weights (their sidecar's scales), any other
``NAME=PATH`` a CRM checkpoint run as ``--type CRM --checkpoint PATH --set scales=SCALES``;
``--args NAME='...'`` adds ``segrefine refine`` arguments to one model (the same weights can
run as several models: ``--model hard=default --model soft=default --args soft='--set
soft_input=true'``).
Subprocesses inherit the environment (set OMP_NUM_THREADS; PYTHONPATH picks the checkout).
Data: ``--data`` or ``$SEGREFINE_DATA`` (default ../shared/data).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from eval_default import format_results  # noqa: E402
from segrefine_plugins.io import read_mask  # noqa: E402
from segrefine_plugins.training.datasets import find_pairs  # noqa: E402
from segrefine_plugins.training.perturbation import lowres_mask, perturb_mask  # noqa: E402

_LOWRES = re.compile(r'^lowres(\d+)(soft)?$')


def check_kind(kind: str) -> Optional[re.Match]:
    """Raise ValueError for an unknown coarse kind; the ``lowresF[soft]`` match, if any."""
    m = _LOWRES.match(kind)
    if m is None and kind not in ('perturb', 'perturbsym'):
        raise ValueError(f"unknown coarse kind {kind!r}: use 'perturb', 'perturbsym', "
                         f"'lowresF' or 'lowresFsoft' (F an integer >= 1)")
    return m


def make_coarse(kind: str, gt: np.ndarray, index: int, seed: int = 0) -> np.ndarray:
    """The (H, W) uint8 coarse mask of ``kind`` (see the module docstring) for ``gt``."""
    m = check_kind(kind)
    if m is None:
        return perturb_mask(gt, np.random.default_rng([seed, index]), iou_target=0.8,
                            symmetric=kind == 'perturbsym')
    return lowres_mask(gt, int(m.group(1)), soft=bool(m.group(2)))


def prepare(root: str, work: str, kinds: Sequence[str], start: int, limit: Optional[int],
            seed: int = 0) -> int:
    """Link the selected images / ground truths into WORK/images, WORK/gt and write
    WORK/coarse/KIND/NAME.png; returns the number of pairs."""
    pairs = find_pairs(root)[start:None if limit is None else start + limit]
    if not pairs:
        raise ValueError(f'no pairs selected in {root!r} from {start}')
    for sub in ['images', 'gt'] + [osp.join('coarse', k) for k in kinds]:
        os.makedirs(osp.join(work, sub), exist_ok=True)
    for i, (img, mask) in enumerate(pairs, start):
        stem = osp.splitext(osp.basename(img))[0]
        for src, sub in ((img, 'images'), (mask, 'gt')):
            dst = osp.join(work, sub, osp.basename(src))
            if not osp.lexists(dst):
                os.symlink(osp.abspath(src), dst)
        gt = None
        for kind in kinds:
            out = osp.join(work, 'coarse', kind, stem + '.png')
            if osp.exists(out):
                continue
            if gt is None:
                gt = read_mask(mask)
            cv2.imwrite(out, make_coarse(kind, gt, i, seed))
    return len(pairs)


def cli(args: List[str]) -> None:
    """Run ``python -m segrefine_plugins ARGS``; raise with its output when it fails."""
    proc = subprocess.run([sys.executable, '-m', 'segrefine_plugins'] + args,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'segrefine {" ".join(args)} exited {proc.returncode}:\n'
                           f'{proc.stdout}\n{proc.stderr}')


def run_model(work: str, name: str, checkpoint: str, kinds: Sequence[str],
              scales: Tuple[float, ...], cli_args: Sequence[str] = ()) -> Dict[str, dict]:
    """Refine and evaluate every kind with one model through the CLI (``cli_args``: extra
    ``segrefine refine`` arguments); the eval JSONs."""
    extra = [] if checkpoint == 'default' else [
        '--type', 'CRM', '--checkpoint', checkpoint, '--set', f'scales={tuple(scales)!r}']
    extra += list(cli_args)
    results = {}
    for kind in kinds:
        out = osp.join(work, 'refined', name, kind)
        report = osp.join(work, 'refined', name, f'{kind}.json')
        t = time.perf_counter()
        # --overwrite: a --work folder reused with other weights must not serve old outputs,
        # and the time must be the refinement's
        cli(['refine', '--image', osp.join(work, 'images'), '--overwrite',
             '--mask', osp.join(work, 'coarse', kind), '--out', out] + extra)
        seconds = time.perf_counter() - t
        cli(['eval', '--pred', out, '--gt', osp.join(work, 'gt'),
             '--coarse', osp.join(work, 'coarse', kind), '--json', report])
        with open(report, encoding='utf-8') as f:
            r = json.load(f)
        results[kind] = {'images': len(r['per_image']),
                         'coarse_iou': 100 * r['coarse']['iou'],
                         'coarse_mba': 100 * r['coarse']['mba'],
                         'refined_iou': 100 * r['refined']['iou'],
                         'refined_mba': 100 * r['refined']['mba'],
                         'seconds_per_image': seconds / max(1, len(r['per_image']))}
        print(f'  {name} {kind}: IoU {results[kind]["refined_iou"] - results[kind]["coarse_iou"]:+.2f}'
              f' mBA {results[kind]["refined_mba"] - results[kind]["coarse_mba"]:+.2f}',
              file=sys.stderr, flush=True)
    return results


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', default=os.environ.get('SEGREFINE_DATA', '../shared/data'))
    p.add_argument('--dataset', default='ecssd', help='folder under --data (default ecssd)')
    p.add_argument('--start', type=int, default=0, help='first pair (sorted by name)')
    p.add_argument('--limit', type=int, help='number of pairs (default: all from --start)')
    p.add_argument('--kinds', nargs='+', default=['perturb', 'lowres4', 'lowres8'])
    p.add_argument('--model', action='append', required=True, metavar='NAME=CHECKPOINT',
                   help="'NAME=default' (shipped weights) or 'NAME=PATH'; repeatable")
    p.add_argument('--args', action='append', default=[], metavar="NAME='ARGS'",
                   help="extra 'segrefine refine' arguments of model NAME, e.g. "
                        "soft='--set soft_input=true' or gate='--roi gate_pixel_confidence=0.9'"
                        "; repeatable")
    p.add_argument('--scales', type=float, nargs='+', default=[1.0],
                   help='CRM scales for checkpoints given by path (default 1.0, as shipped)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--work', required=True, help='scratch folder (inputs, outputs, JSONs)')
    p.add_argument('--json', help='also write the results to this JSON file')
    args = p.parse_args(argv)
    models = []
    for item in args.model:
        name, sep, ckpt = item.partition('=')
        if not sep or not name or not ckpt:
            p.error(f'--model expects NAME=CHECKPOINT, got {item!r}')
        if ckpt != 'default' and not osp.isfile(ckpt):
            p.error(f'checkpoint {ckpt!r} does not exist')
        models.append((name, ckpt))
    cli_args: Dict[str, List[str]] = {}
    for item in args.args:
        name, sep, rest = item.partition('=')
        if not sep or name not in dict(models):
            p.error(f"--args expects NAME='ARGS' for a NAME given by --model, got {item!r}")
        cli_args.setdefault(name, []).extend(shlex.split(rest))
    for kind in args.kinds:
        try:
            check_kind(kind)
        except ValueError as e:
            p.error(str(e))
    n = prepare(osp.join(args.data, args.dataset), args.work, args.kinds, args.start,
                args.limit, args.seed)
    results = {name: run_model(args.work, name, ckpt, args.kinds, tuple(args.scales),
                               cli_args.get(name, ()))
               for name, ckpt in models}
    print(f'{args.dataset} ({args.data}), pairs {args.start}..{args.start + n - 1}, through '
          f'the segrefine CLI (refine, then eval; foreground > 128 of floor(p * 255))')
    print(format_results({f'{name} {kind}': r for name, per_kind in results.items()
                          for kind, r in per_kind.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n', encoding='utf-8')


if __name__ == '__main__':
    main()
