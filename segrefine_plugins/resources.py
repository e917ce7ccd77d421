"""Files shipped with the package: the demo samples and the configs.

Both resolve in a clone (editable install or ``PYTHONPATH``) and in an installed package
(``pip install .`` / a wheel), the way OpenMMLab packages ship their configs:

* configs: the repository's top-level ``configs/`` folder; a built package carries a copy in
  ``segrefine_plugins/.mim/configs`` (copied by ``setup.py`` at build time);
* samples: ``segrefine_plugins/samples`` (package data; MIT, see its ``LICENSE``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Union

PACKAGE_DIR = Path(__file__).resolve().parent
#: The demo images and their coarse masks (``NAME.jpg`` + ``NAME_coarse.png``).
SAMPLES_DIR = PACKAGE_DIR / 'samples'
SAMPLE_MASK_SUFFIX = '_coarse'


def _config_roots() -> List[Path]:
    """Where configs can be: the installed copy first, then the clone's ``configs/``."""
    return [PACKAGE_DIR / '.mim' / 'configs', PACKAGE_DIR.parent / 'configs']


def config_dir() -> Path:
    """The folder of the shipped configs (``_base_/``, ``mmseg/``, ``detectron2/``, ``train/``).

    Raises:
        FileNotFoundError: neither an installed copy nor a clone's ``configs/`` exists.
    """
    for root in _config_roots():
        if (root / '_base_' / 'segrefine_runtime.py').is_file():
            return root
    raise FileNotFoundError('segrefine_plugins configs not found in '
                            + ' or '.join(str(r) for r in _config_roots())
                            + ': reinstall the package (pip install .) or use a clone')


def config_path(name: Union[str, os.PathLike] = '') -> str:
    """Absolute path of a shipped config, e.g. ``config_path('_base_/segrefine_runtime.py')``.

    Args:
        name: path relative to the configs folder (``'mmseg/pspnet_r50-d8_...py'``); empty for
            the folder itself.

    Raises:
        ValueError: ``name`` is absolute or leaves the configs folder.
        FileNotFoundError: no such config (the message names the folder searched).
    """
    rel = Path(os.fspath(name))
    if rel.is_absolute() or '..' in rel.parts:
        raise ValueError(f'config name must be relative to the configs folder, got {str(name)!r}')
    root = config_dir()
    path = root / rel
    if not path.exists():
        raise FileNotFoundError(f'no config {str(name)!r} in {root}')
    return str(path)
