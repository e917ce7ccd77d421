"""configure_threads: torch and OpenCV thread counts, validation, the CLI's --threads."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segrefine_plugins.cli import build_parser, main, refiner_config
from segrefine_plugins.threads import available_cpus, configure_threads, default_threads


@pytest.fixture
def restore_threads():
    torch_n, cv_n = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_n)
    cv2.setNumThreads(cv_n)


def test_configure_sets_torch_and_opencv(restore_threads):
    assert configure_threads(1) == 1 == torch.get_num_threads()
    assert cv2.getNumThreads() == 1
    assert configure_threads(2, opencv_threads=2) == 2 == torch.get_num_threads()
    assert cv2.getNumThreads() == 2


def test_default_is_bounded(restore_threads):
    assert 1 <= default_threads() == min(available_cpus(), 4)
    assert configure_threads() == default_threads()


@pytest.mark.parametrize('bad', [0, -1, 1.5, True, '2'])
def test_bad_counts_raise(bad, restore_threads):
    with pytest.raises(ValueError, match='threads must be an int >= 1'):
        configure_threads(bad)


def test_cli_fast_mode_flags():
    args = build_parser().parse_args(
        ['refine', '--image', 'a', '--mask', 'b', '--out', 'c', '--type', 'CRM', '--threads', '2',
         '--precision', 'bf16', '--channels-last', '--compile', '--backend', 'onnxruntime'])
    assert args.threads == 2
    cfg = refiner_config(args)
    assert cfg == {'type': 'CRM', 'precision': 'bf16', 'channels_last': True, 'compile': True,
                   'backend': 'onnxruntime'}
    plain = refiner_config(build_parser().parse_args(
        ['refine', '--image', 'a', '--mask', 'b', '--out', 'c']))
    assert plain == {'type': 'CRM'}                # nothing added in the default (parity) mode


def test_cli_bad_thread_count_is_a_usage_error(tmp_path, capsys, restore_threads):
    cv2.imwrite(str(tmp_path / 'x.png'), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / 'm').mkdir()
    cv2.imwrite(str(tmp_path / 'm' / 'x.png'), np.full((40, 40), 255, np.uint8))
    code = main(['refine', '--image', str(tmp_path / 'x.png'), '--mask',
                 str(tmp_path / 'm' / 'x.png'), '--out', str(tmp_path / 'out'), '--threads', '0'])
    assert code == 2 and '--threads' in capsys.readouterr().err


def test_adapters_take_a_thread_count():
    """RefinedSegmentor / SegRefineWrapper size the pools through configure_threads."""
    import torch
    from conftest import require_module
    require_module('mmseg')
    from segrefine_plugins.mmseg import RefinedSegmentor
    from _mmseg_support import build_tiny_model
    before = torch.get_num_threads()
    try:
        RefinedSegmentor(build_tiny_model(), None, threads=1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError):
            RefinedSegmentor(build_tiny_model(), None, threads=0)
    finally:
        torch.set_num_threads(before)
