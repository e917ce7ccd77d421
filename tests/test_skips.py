"""The rules for missing frameworks / data (tests/conftest.py), checked in a subprocess where
the optional frameworks really cannot be imported (an import hook refuses them, as if they
were not installed): collection works and skips with hints, and under
SEGREFINE_REQUIRE_DATA=1 the same run fails."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPTIONAL = ('mmengine', 'mmseg', 'mmcv', 'detectron2', 'panopticapi')
WITHOUT_FRAMEWORKS = f'''
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
sys.meta_path.insert(0, Absent())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
'''


def _pytest_without_frameworks(*args: str, require: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'SEGREFINE_REQUIRE_DATA': '1' if require else '0'}
    return subprocess.run([sys.executable, '-c', WITHOUT_FRAMEWORKS, '-p', 'no:cacheprovider',
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_whole_suite_collects_without_frameworks_and_names_what_to_install():
    run = _pytest_without_frameworks('--collect-only', '-q', 'tests')
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = next(line for line in run.stdout.splitlines() if line.startswith('skipped groups:'))
    for group in ('mmengine', 'mmseg', 'detectron2'):
        assert f'{group} (' in summary, summary
    assert 'tools/env/15_mmengine.sh' in run.stdout         # the hint says what to install
    # the torch-only training modules still collect their tests
    assert 'tests/test_training_perturbation.py::' in run.stdout
    assert 'tests/test_training_losses.py::' in run.stdout


def test_required_frameworks_fail_instead_of_skipping():
    run = _pytest_without_frameworks('-q', 'tests/test_training_train.py', require=True)
    assert run.returncode != 0
    assert '[needs mmengine]' in run.stdout and 'SEGREFINE_REQUIRE_DATA' in run.stdout
    assert 'skipped groups: none' in run.stdout
