"""Shared fixtures and the rules for missing data / frameworks.

Locations:

* ``SEGREFINE_DATA`` (default ``../shared/data``): the data sets (ECSSD, DUTS-TE) of the data
  tests; not in the repository (academic-use licences).
* ``SEGREFINE_SPEC`` (default ``tests/spec``, vendored in the repository): the published
  checkpoint manifests and the golden parity files (``golden/``).

Missing pieces: a test that needs data or an optional framework calls :func:`require_data` /
:func:`require_module` (or uses the ``data_root`` / ``spec_root`` fixtures). Normally the test
is skipped with a message that says what to install or set; with ``SEGREFINE_REQUIRE_DATA=1``
(CI: ``.ci/run``) it FAILS instead, so a run cannot go green by skipping. The end of every run
prints one line naming the skipped groups.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get('SEGREFINE_DATA', REPO.parent / 'shared' / 'data'))
SPEC_ROOT = Path(os.environ.get('SEGREFINE_SPEC', REPO / 'tests' / 'spec'))
#: Set (to anything but '' or '0') to turn missing data / frameworks into failures.
REQUIRE = os.environ.get('SEGREFINE_REQUIRE_DATA', '') not in ('', '0')

#: What to do to get each group (used in the skip / failure messages).
HINTS = {
    'data': f'set SEGREFINE_DATA to the data folder (ecssd/, duts-te-2k/; now {DATA_ROOT})',
    'spec': f'set SEGREFINE_SPEC to a folder with golden/ and the manifests (now {SPEC_ROOT})',
    'mmengine': 'make setup, or pip install mmengine==0.10.7 (tools/env/15_mmengine.sh)',
    'mmseg': 'make setup (tools/env/20_mmseg.sh builds mmcv 2.1.0, installs mmsegmentation 1.2.2)',
    'detectron2': 'make setup (tools/env/30_detectron2.sh builds detectron2 0.5, panopticapi)',
    'torchvision': 'make setup-core (tools/env/10_core.sh installs torchvision)',
    'onnxruntime': 'pip install onnxruntime (optional: the ONNX export checks)',
}
_GROUP = re.compile(r'^\[needs (\w+)\]')

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


def load_tool(file_name: str):
    """Import ``tools/<file_name>`` (not a package) as a module, under a unique name."""
    name = 'segrefine_tool_' + file_name.replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, REPO / 'tools' / file_name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing(group: str, what: str) -> NoReturn:
    """Skip the current test (or module) because ``what`` of ``group`` is missing.

    Under ``SEGREFINE_REQUIRE_DATA=1`` the test fails instead.
    """
    message = f'[needs {group}] {what}: {HINTS.get(group, "install it")}'
    if REQUIRE:
        pytest.fail(f'{message} (SEGREFINE_REQUIRE_DATA is set: missing pieces are failures)',
                    pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_module(name: str, group: str = '') -> ModuleType:
    """Import and return module ``name``; skip (or fail under CI) where it is not installed.

    ``group`` names the install step in the messages (default: the top-level package name).
    Only an ImportError counts as missing: an installed package that is broken fails.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing(group or name.split('.')[0], f'{name} is not importable ({err})')


def require_data(*parts: str) -> Path:
    """``DATA_ROOT / parts...``; skip (or fail under CI) where that folder or file is missing."""
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        missing('data', f'{path} not found')
    return path


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line: the skipped groups and how many tests each skipped."""
    groups: Counter = Counter()
    for report in terminalreporter.stats.get('skipped', []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        match = _GROUP.match(reason.removeprefix('Skipped: '))
        groups[match.group(1) if match else 'other'] += 1
    if groups:
        listed = ', '.join(f'{g} ({n})' for g, n in sorted(groups.items()))
        line = (f'skipped groups: {listed}; SEGREFINE_REQUIRE_DATA=1 makes missing data or '
                f'frameworks fail')
    else:
        line = 'skipped groups: none'
    terminalreporter.write_line(line)


@pytest.fixture(scope='session')
def data_root() -> Path:
    """The data folder, with the two data sets the tests read (``ecssd/``, ``duts-te-2k/``)."""
    for name in ('ecssd', 'duts-te-2k'):
        require_data(name)
    return DATA_ROOT


@pytest.fixture(scope='session')
def spec_root() -> Path:
    """Manifests and golden files (vendored in ``tests/spec``)."""
    if not (SPEC_ROOT / 'golden' / 'index.json').is_file():
        missing('spec', f'{SPEC_ROOT}/golden/index.json not found')
    return SPEC_ROOT


@pytest.fixture(scope='session')
def golden_dir(spec_root: Path) -> Path:
    return spec_root / 'golden'


def _make_weights(spec_root: Path, model: str, seed: int = 0) -> dict:
    spec = importlib.util.spec_from_file_location('make_weights', spec_root / 'golden' / 'make_weights.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest = json.loads((spec_root / f'{model}_official_state_dict.json').read_text())
    return module.make_state_dict(manifest, seed)


@pytest.fixture(scope='session')
def cascadepsp_weights(spec_root: Path, tmp_path_factory) -> Path:
    """The golden files' synthetic CascadePSP checkpoint, published layout ('module.' keys)."""
    path = tmp_path_factory.mktemp('weights') / 'cascadepsp_seed0.pth'
    torch.save(_make_weights(spec_root, 'cascadepsp'), path)
    return path


@pytest.fixture(scope='session')
def crm_weights(spec_root: Path, tmp_path_factory) -> Path:
    """The golden files' synthetic CRM checkpoint, published layout ('module.' keys)."""
    path = tmp_path_factory.mktemp('weights') / 'crm_seed0.pth'
    torch.save(_make_weights(spec_root, 'crm'), path)
    return path
