#!/usr/bin/env python3
"""Time a refiner and measure its peak memory, for one or several configurations.

Examples (from the repository root; no real weights exist here, so ``--synthetic-weights``
builds the golden-recipe checkpoint from the spec's manifest)::

    python tools/benchmark.py --synthetic-weights --L 900 \\
        --variant fast:fast=true --variant full --variant full-crop1:crop_batch_size=1
    python tools/benchmark.py --type CRM --synthetic-weights --size 0.25x --runs 1 \\
        --variant all --variant roi:roi_only=true

Method:

* every variant runs in its own fresh Python process (one after the other), so allocator
  caches and peaks of one variant do not leak into the next;
* the refiner is built and the input read and resized first; then ``--warmup`` untimed runs;
  then ``--runs`` timed runs of ``refiner.refine(image, mask)`` (numpy in, numpy out, the
  whole pipeline), timed with ``time.perf_counter`` (CUDA synchronised); the table gives the
  median and the minimum;
* CPU memory: the kernel's peak resident set size (``VmHWM``), reset after the warm-up by
  writing ``5`` to ``/proc/self/clear_refs`` so that it covers the timed runs only (where that
  reset is not allowed, the process-lifetime peak ``ru_maxrss`` is used and the table says
  so). ``peak RSS`` is the whole process (weights, input, Python, torch); ``+work`` is that
  peak minus the RSS measured after building the refiner (weights loaded) and before the
  first run: the pipeline's working memory, allocator caches included;
* GPU memory: ``torch.cuda.max_memory_allocated`` over the timed runs (reset after the
  warm-up), ``+work`` the same minus the memory allocated before the first run;
* ``max|diff|``: the largest absolute difference between the variant's output probability
  map and the reference variant's (the first, or ``--reference``) on the same input.
* ``refiner stats``: the refiner's ``last_stats`` after the last run, where it has them
  (CascadePSP: global-step size, crops on the grid, crops kept by the skip rule).

Variant syntax: ``--variant NAME[:key=value,key=value...]``; values are read by the package's
one option parser (:mod:`segrefine_plugins.options`): ``true``/``false``/``yes``/``no``/``none``,
ints, floats and Python literals are converted, numbers separated by ``/`` make a list
(``scales=0.5/1.0``), anything else is a string. The options shared by all variants
come from ``--L``, ``--fast``, ``--precision``, ``--device`` and ``--set key=value``; a
variant's own keys override them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
SPEC = Path(os.environ.get('SEGREFINE_SPEC', REPO / 'tests' / 'spec'))
GB = 1024 ** 3

sys.path.insert(0, str(REPO))
from segrefine_plugins.options import OptionError, parse_key_values, parse_value  # noqa: E402,F401


# ---------------------------------------------------------------------------- parsing
def parse_pairs(items: List[str], what: str) -> Dict[str, Any]:
    """['a=1', 'b=true'] -> {'a': 1, 'b': True} (the package's one ``key=value`` parser,
    :func:`segrefine_plugins.options.parse_key_values`); SystemExit naming a bad item."""
    try:
        return parse_key_values(items, what)
    except OptionError as e:
        raise SystemExit(f'error: {e}') from None


def parse_variant(text: str) -> Tuple[str, Dict[str, Any]]:
    """'name:key=value,key=value' -> (name, {key: value})."""
    name, _, rest = text.partition(':')
    if not name:
        raise SystemExit(f'error: variant {text!r} has no name')
    return name, parse_pairs([p for p in rest.split(',') if p], f'variant {name!r} option')


def parse_size(text: str, width: int, height: int) -> Tuple[int, int]:
    """'WxH' (exact) or 'Sx' (scale both sides by S, e.g. '2x', '0.5x') -> (W, H)."""
    if text.endswith('x'):
        scale = float(text[:-1])
        return max(1, round(width * scale)), max(1, round(height * scale))
    w, sep, h = text.partition('x')
    if not sep:
        raise SystemExit(f'error: --size {text!r} must be WxH or Sx (e.g. 1920x1080, 2x)')
    return int(w), int(h)


# ---------------------------------------------------------------------------- memory
def _status_kb(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size (falls back to the lifetime peak off Linux)."""
    kb = _status_kb('VmRSS')
    return kb * 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _status_kb('VmHWM') is not None
    except OSError:
        return False


def peak_rss_bytes() -> int:
    kb = _status_kb('VmHWM')
    return kb * 1024 if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------- worker
def run_worker(job_path: str) -> None:
    """Run one variant (in a fresh process) and write its result JSON and output array."""
    job = json.loads(Path(job_path).read_text())
    sys.path.insert(0, str(REPO))
    import numpy as np
    import torch
    import cv2

    from segrefine_plugins import build_refiner
    from segrefine_plugins.io import read_image, read_mask

    if job['threads']:
        torch.set_num_threads(job['threads'])
    image, mask = read_image(job['image']), read_mask(job['mask'])
    if job['size']:
        w, h = parse_size(job['size'], image.shape[1], image.shape[0])
        shrink = w * h < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink
                           else cv2.INTER_CUBIC)
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    refiner = build_refiner(job['cfg'])
    cuda = refiner.device.type == 'cuda'

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(refiner.device)

    idle = torch.cuda.memory_allocated(refiner.device) if cuda else rss_bytes()
    for _ in range(job['warmup']):
        refiner.refine(image, mask)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(refiner.device)
        method = 'cuda max_memory_allocated'
    else:
        method = 'VmHWM reset after warm-up' if reset_peak_rss() else 'ru_maxrss (lifetime)'
    times = []
    prob = None
    for _ in range(job['runs']):
        t0 = time.perf_counter()
        prob = refiner.refine(image, mask)
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(refiner.device) if cuda else peak_rss_bytes()
    np.save(job['output'], prob)
    Path(job['result']).write_text(json.dumps({
        'times': times, 'peak': peak, 'idle': idle, 'memory_method': method,
        'input': f'{image.shape[1]}x{image.shape[0]}', 'threads': torch.get_num_threads(),
        'device': torch.cuda.get_device_name(refiner.device) if cuda else platform.processor()
        or platform.machine(), 'refiner': repr(refiner),
        'stats': getattr(refiner, 'last_stats', None) or {}}, default=str))


# ---------------------------------------------------------------------------- driver
def synthetic_checkpoint(kind: str, folder: Path, spec: Path) -> Path:
    """Write the golden-recipe synthetic checkpoint (seed 0, published layout) for ``kind``."""
    import torch

    manifest_path = spec / f'{kind.lower()}_official_state_dict.json'
    recipe = spec / 'golden' / 'make_weights.py'
    if not manifest_path.is_file() or not recipe.is_file():
        raise SystemExit(f'error: --synthetic-weights needs {manifest_path} and {recipe} '
                         f'(set SEGREFINE_SPEC)')
    module_spec = importlib.util.spec_from_file_location('make_weights', recipe)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    path = folder / f'{kind.lower()}_seed0.pth'
    torch.save(module.make_state_dict(json.loads(manifest_path.read_text()), 0), path)
    return path


def fmt_gb(n: Optional[float]) -> str:
    return '-' if n is None else f'{n / GB:.2f}'


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--type', default='CascadePSP', help='refiner type (CascadePSP, CRM, ...)')
    w = p.add_mutually_exclusive_group()
    w.add_argument('--checkpoint', help="weights file (default: the refiner's default "
                                        "weights, where it has some)")
    w.add_argument('--synthetic-weights', action='store_true',
                   help='golden-recipe synthetic weights (seed 0) from the spec manifest')
    p.add_argument('--image', default=str(REPO / 'segrefine_plugins' / 'samples' / 'aeroplane.jpg'),
                   help='default: the shipped aeroplane sample (3492x2328)')
    p.add_argument('--mask', help='default: <image stem>_coarse.png beside the image')
    p.add_argument('--size', help='resize the input first: WxH, or Sx to scale both sides')
    p.add_argument('--L', type=int, help='CascadePSP long side / crop size')
    p.add_argument('--fast', action='store_true', help='CascadePSP fast mode (global only)')
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='extra refiner keyword argument (repeatable)')
    p.add_argument('--variant', action='append', default=[], metavar='NAME[:K=V,...]',
                   help='a configuration to run (repeatable); default one named "default"')
    p.add_argument('--reference', help='variant the max|diff| column compares with '
                                       '(default: the first)')
    p.add_argument('--runs', type=int, default=3, help='timed runs per variant')
    p.add_argument('--warmup', type=int, default=1, help='untimed runs first')
    p.add_argument('--threads', type=int, help='torch.set_num_threads (default: torch\'s)')
    p.add_argument('--spec', default=str(SPEC), help='spec folder (manifests, golden/)')
    p.add_argument('--json', help='also write the results to this JSON file')
    p.add_argument('--_worker', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._worker:
        run_worker(a._worker)
        return 0

    if a.runs < 1 or a.warmup < 0:
        raise SystemExit('error: --runs must be >= 1 and --warmup >= 0')
    image = Path(a.image)
    mask = Path(a.mask) if a.mask else image.with_name(f'{image.stem}_coarse.png')
    for path in (image, mask):
        if not path.is_file():
            raise SystemExit(f'error: {path} not found (pass --image / --mask)')
    variants = [parse_variant(v) for v in a.variant] or [('default', {})]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f'error: variant names must be unique, got {names}')
    reference = a.reference or names[0]
    if reference not in names:
        raise SystemExit(f'error: --reference {reference!r} is not a variant ({names})')

    shared: Dict[str, Any] = {'type': a.type, 'device': a.device}
    if a.L is not None:
        shared['L'] = a.L
    if a.fast:
        shared['fast'] = True
    if a.precision:
        shared['precision'] = a.precision
    shared.update(parse_pairs(a.set, '--set'))

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix='segrefine_bench_') as tmp:
        folder = Path(tmp)
        checkpoint = (str(synthetic_checkpoint(a.type, folder, Path(a.spec)))
                      if a.synthetic_weights else a.checkpoint)
        for name, options in variants:
            cfg = dict(shared, **options)
            if checkpoint:  # none: the refiner's default weights (CRM ships some)
                cfg['checkpoint'] = checkpoint
            job = {'cfg': cfg, 'image': str(image), 'mask': str(mask), 'size': a.size,
                   'runs': a.runs, 'warmup': a.warmup, 'threads': a.threads,
                   'output': str(folder / f'{name}.npy'),
                   'result': str(folder / f'{name}.json')}
            job_path = folder / f'{name}.job.json'
            job_path.write_text(json.dumps(job))
            print(f'[{name}] {json.dumps({k: v for k, v in cfg.items() if k != "checkpoint"})}',
                  file=sys.stderr, flush=True)
            proc = subprocess.run([sys.executable, __file__, '--_worker', str(job_path)])
            if proc.returncode != 0:
                raise SystemExit(f'error: variant {name!r} failed (exit {proc.returncode})')
            res = json.loads(Path(job['result']).read_text())
            res.update(name=name, options=options)
            rows.append(res)
        import numpy as np

        ref = np.load(folder / f'{reference}.npy')
        for r in rows:
            out = np.load(folder / f'{r["name"]}.npy')
            r['max_abs_diff'] = (float(np.abs(out - ref).max()) if out.shape == ref.shape
                                 else None)
    load_after = os.getloadavg()

    first = rows[0]
    print(f'\n{a.type} on {image.name} ({first["input"]}), device {a.device} '
          f'({first["device"]}), torch threads {first["threads"]}, '
          f'{a.warmup} warm-up + {a.runs} timed runs per variant')
    print(f'load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} '
          f'on {os.cpu_count()} CPUs; memory: {first["memory_method"]}')
    header = ['variant', 'options', 'median s', 'min s', 'peak GB', '+work GB',
              f'max|diff| vs {reference}', 'refiner stats']
    table = [header]
    for r in rows:
        opts = ','.join(f'{k}={v}' for k, v in r['options'].items()) or '-'
        diff = '-' if r['max_abs_diff'] is None else f'{r["max_abs_diff"]:.2e}'
        table.append([r['name'], opts, f'{statistics.median(r["times"]):.2f}',
                      f'{min(r["times"]):.2f}', fmt_gb(r['peak']),
                      fmt_gb(r['peak'] - r['idle']), diff,
                      ' '.join(f'{k}={v}' for k, v in r['stats'].items()) or '-'])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print('| ' + ' | '.join(c.ljust(wd) for c, wd in zip(row, widths)) + ' |')
        if i == 0:
            print('| ' + ' | '.join('-' * wd for wd in widths) + ' |')
    if a.json:
        Path(a.json).write_text(json.dumps({'type': a.type, 'image': str(image),
                                            'load_before': load_before,
                                            'load_after': load_after, 'shared': shared,
                                            'rows': rows}, indent=1, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
