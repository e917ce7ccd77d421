"""Shipped configs, samples and weights: in the clone and in a NON-editable install
(``pip install --target``, run from another folder), and the published ADE20K stuff list."""
from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from conftest import require_module
from segrefine_plugins import SAMPLES_DIR, config_dir, config_path

REPO = Path(__file__).resolve().parents[1]
#: CascadePSP's published scene-parsing `background_classes` (ADE20K ids, 1-based).
PUBLISHED_ADE20K_STUFF = [1, 2, 3, 4, 6, 7, 10, 12, 14, 17, 22, 26, 27, 29, 30, 47, 49, 52, 53,
                          55, 60, 61, 62, 69, 80, 85, 92, 95, 97, 102, 106, 110, 114, 129, 141]
SAMPLE_FILES = ('aeroplane.jpg', 'aeroplane_coarse.png', 'motorbike.jpg', 'motorbike_coarse.png',
                'LICENSE', 'README.md')


def test_ade20k_stuff_is_the_published_list():
    ids = runpy.run_path(config_path('_base_/stuff/ade20k.py'))['refine_cfg']['stuff_classes']
    assert len(PUBLISHED_ADE20K_STUFF) == 35
    assert ids == [i - 1 for i in PUBLISHED_ADE20K_STUFF]   # mmseg labels: reduce_zero_label


def test_config_path_in_the_clone():
    assert Path(config_dir()) == REPO / 'configs'
    assert config_path('_base_/segrefine_runtime.py') == str(REPO / 'configs' / '_base_' /
                                                             'segrefine_runtime.py')
    with pytest.raises(FileNotFoundError, match='no config'):
        config_path('mmseg/no_such_config.py')
    for bad in ('../setup.py', '/etc/passwd'):
        with pytest.raises(ValueError, match='relative'):
            config_path(bad)


def test_samples_ship_with_their_licence():
    for name in SAMPLE_FILES:
        assert (SAMPLES_DIR / name).is_file(), name
    assert 'MIT License' in (SAMPLES_DIR / 'LICENSE').read_text()
    assert cv2.imread(str(SAMPLES_DIR / 'aeroplane.jpg')).shape == (2328, 3492, 3)


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> Path:
    """The package installed non-editable (``pip install --no-deps --target``) from a copy of
    the source tree (so the build does not write into the checkout)."""
    tmp = tmp_path_factory.mktemp('install')
    src = tmp / 'src'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        '.git', 'build', 'dist', '*.egg-info', 'outputs', 'work_dirs', '__pycache__',
        '.pytest_cache', 'tests'))
    target = tmp / 'site'
    run = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                          '--no-build-isolation', '--no-index', '--target', str(target), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return target


def _run_installed(target: Path, code: str, cwd: Path) -> str:
    """Run ``code`` with the installed copy first on the path (not the checkout; extra
    PYTHONPATH folders of the caller, e.g. framework installs, stay after it)."""
    extra = os.environ.get('PYTHONPATH')
    path = str(target) + (os.pathsep + extra if extra else '')
    env = {**os.environ, 'PYTHONPATH': path, 'OMP_NUM_THREADS': '1'}
    run = subprocess.run([sys.executable, '-c', code], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_installed_package_carries_configs_samples_weights(installed, tmp_path):
    out = _run_installed(installed, (
        'import segrefine_plugins as s, os\n'
        'print(s.__file__); print(s.config_dir())\n'
        f'print(all((s.SAMPLES_DIR / n).is_file() for n in {SAMPLE_FILES!r}))\n'
        "print(sorted(os.listdir(os.path.join(os.path.dirname(s.__file__), 'weights'))))\n"),
        cwd=tmp_path)
    module, configs, samples, weights = out.splitlines()
    assert module.startswith(str(installed))                 # not the checkout
    assert configs == str(installed / 'segrefine_plugins' / '.mim' / 'configs')
    shipped = {p.relative_to(REPO / 'configs') for p in (REPO / 'configs').rglob('*')
               if p.is_file() and '__pycache__' not in p.parts}
    assert {p.relative_to(configs) for p in Path(configs).rglob('*')
            if p.is_file() and '__pycache__' not in p.parts} == shipped
    assert samples == 'True'
    assert weights == ("['crm_default.json', 'crm_default.pth', 'crm_default_scale1.json', "
                       "'crm_default_scale1.pth', 'crm_default_soft.json', "
                       "'crm_default_soft.pth']")


def test_installed_configs_load_in_mmengine(installed, tmp_path):
    require_module('mmengine')
    out = _run_installed(installed, (
        'from mmengine.config import Config\n'
        'from segrefine_plugins import config_path\n'
        "rt = Config.fromfile(config_path('_base_/segrefine_runtime.py'),\n"
        "                     import_custom_modules=False)\n"
        "print('custom_imports' in rt, [h['type'] for h in rt.custom_hooks])\n"
        "train = Config.fromfile(config_path('train/crm_cpu_small.py'))\n"   # relative _base_
        "print(train.model.type, train.train_dataloader.dataset.type)\n"),
        cwd=tmp_path)
    lines = [line for line in out.splitlines() if ' - mmengine - ' not in line]  # its INFO lines
    assert lines == ["False ['segrefine_plugins.mmseg.SegRefineHook']",
                                'CRMTrainModel MaskPairDataset']


def test_installed_mmseg_config_loads(installed, tmp_path):
    require_module('mmseg')
    out = _run_installed(installed, (
        'from mmengine.config import Config\n'
        'from segrefine_plugins import config_path\n'
        "name = 'mmseg/pspnet_r50-d8_4xb4-160k_ade20k-512x512_crm.py'\n"
        'cfg = Config.fromfile(config_path(name))\n'
        'print(cfg.refiner.type, cfg.test_evaluator.type, len(cfg.refine_cfg.stuff_classes))\n'),
        cwd=tmp_path)
    assert out.split() == ['CRMRefiner', 'BoundaryMetric', '35']


def test_every_mmseg_config_supports_show_dir():
    """mmseg's tools/test.py --show-dir edits default_hooks.visualization: every shipped mmseg
    config (the salient one has no schedule base) must define it."""
    require_module('mmseg')
    from mmengine.config import Config
    files = sorted((REPO / 'configs' / 'mmseg').glob('*.py'))
    assert len(files) >= 13
    for path in files:
        cfg = Config.fromfile(str(path))
        assert cfg.default_hooks.visualization.type == 'SegVisualizationHook', path.name


@pytest.mark.slow
def test_installed_demo_writes_pictures(installed, tmp_path):
    env = {**os.environ, 'PYTHONPATH': str(installed), 'OMP_NUM_THREADS': '1'}
    run = subprocess.run([sys.executable, '-m', 'segrefine_plugins', 'demo', '--sample',
                          'motorbike', '--out', 'pictures', '--device', 'cpu'],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    mask = cv2.imread(str(tmp_path / 'pictures' / 'motorbike.png'), cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(str(tmp_path / 'pictures' / 'motorbike_overlay.png'))
    assert mask.shape == (480, 640) and overlay.shape[0] == 480 and overlay.shape[1] >= 1280
    coarse = cv2.imread(str(SAMPLES_DIR / 'motorbike_coarse.png'), cv2.IMREAD_GRAYSCALE)
    # a real refinement: a soft coarse mask becomes a different, mostly binary one
    assert (mask != coarse).mean() > 0.01
    assert ((mask < 10) | (mask > 245)).mean() > 0.9
    assert not (tmp_path / 'pictures' / 'aeroplane.png').exists()
