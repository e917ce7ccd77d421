"""segrefine_plugins: CascadePSP and CRM refiners for MMSegmentation 1.x and Detectron2.

The reproducible environment (torch + torchvision, the compiled mmcv, detectron2) is built by
``tools/setup_env.sh`` (``make setup``); these extras list the same pins for users who manage
their own environment.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    """Copy the top-level ``configs/`` into the built package as ``segrefine_plugins/.mim/configs``.

    The OpenMMLab layout (mmseg ships its configs the same way): an installed package carries
    the configs, and ``segrefine_plugins.config_path('...')`` finds them there or, in a clone
    (editable install), in ``configs/``. Editable builds copy nothing.
    """

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = Path(self.build_lib) / 'segrefine_plugins' / '.mim' / 'configs'
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(HERE / 'configs', target,
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


setup(
    name='segrefine_plugins',
    version='0.1.0',
    description='CascadePSP and CRM segmentation refinement for MMSegmentation and Detectron2',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['segrefine_plugins', 'segrefine_plugins.*']),
    include_package_data=True,
    # weights: the default CRM refiner; samples: the demo images (MIT, LICENSE beside them)
    package_data={'segrefine_plugins': ['weights/*', 'samples/*']},
    cmdclass={'build_py': BuildPyWithConfigs},
    install_requires=[
        'torch>=2.1',
        'numpy',
        'opencv-python-headless',
        'tqdm',
    ],
    extras_require={
        # mmcv 2.1.0 has no wheels for recent torch: tools/setup_env.sh builds it once
        # from source (C++20 flags for torch >= 2.14) and caches the wheel.
        'mmseg': ['mmengine==0.10.7', 'mmcv==2.1.0', 'mmsegmentation==1.2.2', 'ftfy', 'regex'],
        # detectron2 has no PyPI wheels: use your own install (docs/detectron2.md) or tools/setup_env.sh.
        'detectron2': ['pycocotools', 'panopticapi-lite'],
        'dev': ['pytest', 'pytest-timeout'],
    },
    entry_points={'console_scripts': ['segrefine=segrefine_plugins.cli:main']},
)
