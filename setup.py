"""segrefine_plugins: CascadePSP and CRM refiners for MMSegmentation 1.x and Detectron2.

The reproducible environment (torch + torchvision, the compiled mmcv, detectron2) is built by
``tools/setup_env.sh`` (``make setup``); these extras list the same pins for users who manage
their own environment.
"""
from setuptools import find_packages, setup

setup(
    name='segrefine_plugins',
    version='0.1.0',
    description='CascadePSP and CRM segmentation refinement for MMSegmentation and Detectron2',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['segrefine_plugins', 'segrefine_plugins.*']),
    include_package_data=True,
    package_data={'segrefine_plugins': ['weights/*', 'configs/**/*.py', 'configs/*.py']},
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
        # detectron2 has no PyPI wheels: use your own install (README) or tools/setup_env.sh.
        'detectron2': ['pycocotools', 'panopticapi-lite'],
        'dev': ['pytest', 'pytest-timeout'],
    },
    entry_points={'console_scripts': ['segrefine=segrefine_plugins.cli:main']},
)
