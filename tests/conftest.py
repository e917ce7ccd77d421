"""Shared fixtures: data and spec locations, synthetic parity weights.

``SEGREFINE_DATA`` (default ``../shared/data``) and ``SEGREFINE_SPEC`` (default
``../shared/spec``) point at the read-only data and specification folders; tests that need
them skip with a clear message where they are missing.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get('SEGREFINE_DATA', REPO.parent / 'shared' / 'data'))
SPEC_ROOT = Path(os.environ.get('SEGREFINE_SPEC', REPO.parent / 'shared' / 'spec'))

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(scope='session')
def data_root() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.skip(f'data folder {DATA_ROOT} not found (set SEGREFINE_DATA)')
    return DATA_ROOT


@pytest.fixture(scope='session')
def spec_root() -> Path:
    if not SPEC_ROOT.is_dir():
        pytest.skip(f'spec folder {SPEC_ROOT} not found (set SEGREFINE_SPEC)')
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
