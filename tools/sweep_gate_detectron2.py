#!/usr/bin/env python
"""Measure the do-no-harm gate: refined PQ / mask AP of perfect and degraded input over gate
thresholds, in one process.

The ground truth of a COCO-panoptic dataset is fed as the model output as it is (``gt``:
perfect input, refinement can only harm) and degraded (``lowres8``, ``perturb``: a coarse
segmenter, refinement should gain); each is refined with the gate off and at every setting.
The refiner's output of an ROI does not depend on the gate, so it is computed once per ROI and
reused across settings (exact; a cache keyed by the crop and mask bytes): the sweep costs one
refinement pass per input kind plus the evaluations.

    python tools/eval_detectron2.py --make-ecssd-dataset /tmp/ecssd40 --num 40 --size 320
    python tools/sweep_gate_detectron2.py --dataset-dir /tmp/ecssd40 --inputs gt,lowres8 \\
        --settings off iou=0.9 iou=0.95 conf=0.5 iou=0.95,conf=0.7 \\
        --output outputs/gate_sweep MODEL.DEVICE cpu MODEL.SEGREFINE.REFINER.TYPE CRM

Prints, per setting: the change of PQ / AP on perfect input, the gain on degraded input, the
share of the ungated gain kept and the segments the gate kept coarse; saves ``sweep.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from segrefine_plugins.detectron2.evaluation import (GroundTruthModel, evaluate,  # noqa: E402
                                                     parse_degrade, setup_cfg)

SETTING_KEYS = {'iou': 'GATE_MIN_IOU', 'conf': 'GATE_MIN_CONFIDENCE',
                'pix': 'GATE_PIXEL_CONFIDENCE', 'depth': 'GATE_MIN_CHANGE_DEPTH',
                'trust': 'GATE_TRUST_CHANGE_DEPTH', 'tconf': 'GATE_TRUST_MIN_CONFIDENCE'}


class CachedRefiner:
    """A refiner whose ``refine(image, mask)`` results are memoised (exact for deterministic
    refiners); other attributes are the wrapped refiner's. No ``refine_batch``: ROIs run one
    at a time, as the published protocol does."""

    def __init__(self, refiner: Any) -> None:
        self._refiner = refiner
        self._cache: Dict[bytes, np.ndarray] = {}
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        if name in ('refine_batch', '_refiner', '_cache'):
            raise AttributeError(name)
        return getattr(self._refiner, name)

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        h = hashlib.sha1()
        for a in (image, mask):
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        key = h.digest()
        if key not in self._cache:
            self.calls += 1
            self._cache[key] = self._refiner.refine(image, mask)
        return self._cache[key].copy()


def parse_setting(text: str) -> Dict[str, float]:
    """'off' -> {}; 'iou=0.95,conf=0.7' -> {'GATE_MIN_IOU': 0.95, 'GATE_MIN_CONFIDENCE': 0.7}."""
    if text == 'off':
        return {}
    out = {}
    for part in text.split(','):
        key, _, value = part.partition('=')
        try:
            if key not in SETTING_KEYS:
                raise ValueError(key)
            out[SETTING_KEYS[key]] = float(value)
        except ValueError:
            raise SystemExit(f'bad setting {text!r}: use off or '
                             f'iou=X[,conf=Y][,pix=Z][,depth=D[,trust=T[,tconf=C]]]') from None
    return out


def share(gain: float, base: float) -> float:
    """``gain / base`` in percent (NaN when the ungated gain is not positive)."""
    return 100.0 * gain / base if base > 0 else float('nan')


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from segrefine_plugins.detectron2.config import build_refiner_from_cfg
    from segrefine_plugins.detectron2.datasets import register_coco_dataset
    from segrefine_plugins.detectron2.wrapper import wrap_model, wrapper_options

    settings = [s.strip() for s in args.settings]
    if 'off' not in settings:
        settings.insert(0, 'off')
    # every setting checked before any runs (a bad one fails now, not after an hour)
    options = {}
    for setting in settings:
        extra = [x for k, v in parse_setting(setting).items()
                 for x in (f'MODEL.SEGREFINE.{k}', str(v))]
        cfg = setup_cfg([], list(args.opts) + extra)
        try:
            options[setting] = (cfg, wrapper_options(cfg))
        except ValueError as err:
            raise SystemExit(f'bad setting {setting!r}: {err}') from None
    d = args.dataset_dir
    dataset = register_coco_dataset('segrefine_gate_sweep', os.path.join(d, 'images'),
                                    os.path.join(d, 'panoptic.json'),
                                    os.path.join(d, 'panoptic'),
                                    os.path.join(d, 'instances.json'))
    inputs = [s.strip() for s in args.inputs.split(',') if s.strip()]
    for kind in inputs:
        if kind != 'gt':
            parse_degrade(kind)
    refiner = CachedRefiner(build_refiner_from_cfg(options['off'][0]))   # the gate-free cfg
    results: Dict[str, Dict[str, Any]] = {}
    for kind in inputs:
        results[kind] = {}
        for setting in settings:
            cfg, kwargs = options[setting]
            model = wrap_model(GroundTruthModel(None if kind == 'gt' else kind), refiner,
                               **kwargs).eval()
            res = evaluate(model, dataset, cfg, os.path.join(args.output, kind, setting),
                           progress=False)
            results[kind][setting] = res
            print(f'[{kind} {setting}] raw PQ {res["raw"]["PQ"]:.2f} AP {res["raw"]["AP"]:.2f}'
                  f' -> refined PQ {res["refined"]["PQ"]:.2f} AP {res["refined"]["AP"]:.2f}, '
                  f'gated {res["segments_gated"]}/{res["segments_refined"]}, refiner calls so '
                  f'far {refiner.calls}', flush=True)
    table = format_sweep(results, settings, inputs)
    print(table)
    out = {'settings': settings, 'inputs': inputs, 'opts': list(args.opts), 'table': table,
           'results': results}
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, 'sweep.json'), 'w') as f:
        json.dump(out, f, indent=1)
    return out


def _delta(res: Dict[str, Any], key: str) -> float:
    return res['refined'][key] - res['raw'][key]


def format_sweep(results: Dict[str, Dict[str, Any]], settings: Sequence[str],
                 inputs: Sequence[str]) -> str:
    """Markdown: setting | per input kind: PQ / AP change (share of the ungated gain for
    degraded kinds) | segments gated."""
    head = ['setting']
    for kind in inputs:
        head.append(f'{kind}: dPQ / dAP' + ('' if kind == 'gt' else ' (kept % of ungated)'))
        head.append(f'{kind}: gated')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for setting in settings:
        row = [setting]
        for kind in inputs:
            res, off = results[kind][setting], results[kind]['off']
            dpq, dap = _delta(res, 'PQ'), _delta(res, 'AP')
            cell = f'{dpq:+.2f} / {dap:+.2f}'
            if kind != 'gt':
                cell += (f' ({share(dpq, _delta(off, "PQ")):.0f} % / '
                         f'{share(dap, _delta(off, "AP")):.0f} %)')
            row += [cell, f'{res["segments_gated"]}/{res["segments_refined"]}']
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset-dir', required=True,
                   help='a COCO-panoptic set as --make-ecssd-dataset writes it (images/, '
                        'panoptic/, panoptic.json, instances.json)')
    p.add_argument('--inputs', default='gt,lowres8',
                   help='comma list: gt (perfect), lowresN, perturb')
    p.add_argument('--settings', nargs='+', default=['off'],
                   help='gate settings: off, iou=X, conf=Y, pix=Z, depth=D, '
                        'depth=D,trust=T[,tconf=C], iou=X,conf=Y (comma = both)')
    p.add_argument('--output', default='outputs/gate_sweep')
    p.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    args = p.parse_args(argv)
    args.settings, args.opts = split_settings(args.settings, list(args.opts))
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return run(parse_args(argv))


#: A detectron2 config key (``MODEL.DEVICE``, ``MODEL.SEGREFINE.GATE_MIN_IOU``): where the
#: KEY VALUE overrides start when they follow ``--settings`` directly.
_CONFIG_KEY = re.compile(r'^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$')


def split_settings(settings: List[str], opts: List[str]) -> Tuple[List[str], List[str]]:
    """``--settings off depth=2 MODEL.DEVICE cpu``: argparse gives all four to --settings;
    the first config key and what follows are the overrides (put before ``opts``)."""
    for i, item in enumerate(settings):
        if _CONFIG_KEY.match(item):
            return settings[:i] or ['off'], settings[i:] + opts
    return settings, opts


if __name__ == '__main__':
    main()
