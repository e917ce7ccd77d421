"""Bad input, class by class, through the API: every case works or fails with a clear error.

Classes (issue 14, deliverable 4): numpy layouts torch cannot take as they are; configs that
are not dicts, unknown types / options, wrong types; devices this machine lacks; the boolean
rule (``'false'`` is never truthy); absurd sizes; images below a refiner's size limits (one
rule, empty masks included); checkpoints that are not checkpoints or are the other model's;
the one mask rule; the one ``key=value`` parser; image files that would be misread.
The shipped default CRM (small) runs the refines; the CascadePSP cases use the spec's synthetic
weights only where a CascadePSP model must be built.
"""
from __future__ import annotations

import math
import warnings
import zipfile

import cv2
import numpy as np
import pytest
import torch

from segrefine_plugins import build_refiner
from segrefine_plugins.inference.base import mask_to_uint8 as base_mask_to_uint8
from segrefine_plugins.inference.base import tensor_from_numpy
from segrefine_plugins.io import ImageReadError, read_mask, to_mask_uint8
from segrefine_plugins.masks import (EVAL_FOREGROUND_ABOVE, REFINE_FOREGROUND_ABOVE, foreground,
                                     mask_to_uint8)
from segrefine_plugins.metrics import as_binary_mask
from segrefine_plugins.models.checkpoint import CheckpointError, read_state_dict
from segrefine_plugins.options import (OptionError, check_device, parse_key_values, parse_value,
                                       to_bool)
from segrefine_plugins.registry import UnknownTypeError

H, W = 40, 48


@pytest.fixture(scope='module')
def crm():
    return build_refiner(dict(type='CRM'))


@pytest.fixture(scope='module')
def pair():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[8:30, 10:40] = 255
    mask[8:12, 10:14] = 0       # not symmetric: flips and transposes change the input
    return image, mask


# ------------------------------------------------------------------ numpy layouts
LAYOUTS = {
    'flipped columns': (lambda a: a[:, ::-1], lambda a: np.ascontiguousarray(a[:, ::-1])),
    'flipped rows': (lambda a: a[::-1], lambda a: np.ascontiguousarray(a[::-1])),
    'both flipped': (lambda a: a[::-1, ::-1], lambda a: np.ascontiguousarray(a[::-1, ::-1])),
    'transposed view': (lambda a: np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1),
                        lambda a: a.copy()),
    'fortran order': (np.asfortranarray, lambda a: a.copy()),
    'strided crop': (lambda a: np.ascontiguousarray(np.repeat(a, 2, axis=1))[:, ::2],
                     lambda a: a.copy()),
}


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize('kind', ['uint8', 'bool', 'float32'])
def test_any_numpy_layout_of_image_and_mask_works(crm, pair, kind):
    image, mask = pair
    m = {'uint8': mask, 'bool': mask > 127, 'float32': mask.astype(np.float32) / 255}[kind]
    plain = crm.refine(image, m)
    with warnings.catch_warnings():
        warnings.simplefilter('error')         # no "not writable" warning from torch either
        np.testing.assert_array_equal(crm.refine(_read_only(image), _read_only(m)), plain)
        names = sorted(LAYOUTS) if kind == 'uint8' else ['flipped columns', 'fortran order']
        for name in names:
            make, same = LAYOUTS[name]
            a, b = make(image), make(m)
            assert not (a.flags.c_contiguous and b.flags.c_contiguous), name
            expected = plain if same(m) is not None and np.array_equal(same(m), m) else \
                crm.refine(same(image), same(m))
            np.testing.assert_array_equal(crm.refine(a, b), expected, err_msg=name)


def test_tensor_from_numpy_shares_or_copies():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert tensor_from_numpy(a).data_ptr() == a.ctypes.data     # contiguous: no copy
    for view in (a[:, ::-1], a.T, _read_only(a)):
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            np.testing.assert_array_equal(tensor_from_numpy(view).numpy(), view)


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize('cfg, error, match', [
    (None, TypeError, 'config dict'),
    (5, TypeError, 'got int 5'),
    ([('type', 'CRM')], TypeError, 'got list'),
    (b'CRM', TypeError, 'got bytes'),
    ({}, ValueError, '"type" key'),
    (dict(type=5), TypeError, 'type must be a string'),
    (dict(type=None), TypeError, 'type must be a string'),
    (dict(type='crm'), UnknownTypeError, "did you mean 'CRM'"),
    (dict(type='Nope'), ValueError, "unknown refiner type 'Nope'; registered: CRM, CascadePSP"),
    (dict(type='CRM', foo=1), TypeError, "does not take 'foo'"),
    (dict(type='CRM', chunk_siz=1), TypeError, "did you mean 'chunk_size'"),
    (dict(type='CRM', L=900), TypeError, "does not take 'L'"),
    (dict(type='CRM', chunk_size='5'), TypeError, 'chunk_size must be an int'),
    (dict(type='CRM', scales='0.5'), ValueError, 'scales'),
    (dict(type='CRM', precision=['fp32']), TypeError, 'precision'),
    (dict(type='CRM', checkpoint=5), TypeError, 'checkpoint must be a file path'),
    (dict(type='CRM', blocks=5), ValueError, 'blocks'),
])
def test_bad_configs_name_the_problem(cfg, error, match):
    with pytest.raises(error, match=match):
        build_refiner(cfg)


def test_a_type_name_given_as_a_path_is_explained():
    with pytest.raises(FileNotFoundError, match=r"pass a dict: build_refiner\(dict\(type='CRM'\)\)"):
        build_refiner('CRM')


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize('device, match', [
    ('tpu', 'not a device name'),
    ('garbage!', 'not a device name'),
    ('', 'not a device name'),
    ('meta', "not 'meta'"),
    (5, 'device must be a string'),
    (None, 'device must be a string'),
])
def test_bad_devices_are_refused_at_construction(device, match):
    with pytest.raises(ValueError, match=match):
        build_refiner(dict(type='CRM', device=device))


def test_devices_this_machine_lacks_are_refused():
    if not torch.cuda.is_available():
        for device in ('cuda', 'cuda:0', torch.device('cuda')):
            with pytest.raises(ValueError, match='no CUDA device is available'):
                check_device(device)
    else:
        n = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f'has {n} CUDA device'):
            check_device(f'cuda:{n}')
        assert check_device('cuda').type == 'cuda'
    mps = getattr(torch.backends, 'mps', None)
    if mps is None or not mps.is_available():
        with pytest.raises(ValueError, match='MPS'):
            build_refiner(dict(type='CRM', device='mps'))
    assert check_device('cpu') == torch.device('cpu')


# ------------------------------------------------------------------ the boolean rule
@pytest.mark.parametrize('value, expected', [
    (True, True), (False, False), (np.bool_(True), True), (1, True), (0, False),
    (np.int64(0), False), ('true', True), ('True', True), (' yes ', True), ('on', True),
    ('1', True), ('false', False), ('FALSE', False), ('no', False), ('off', False), ('0', False),
])
def test_boolean_rule(value, expected):
    assert to_bool(value, 'x') is expected


@pytest.mark.parametrize('value, error', [
    ('maybe', ValueError), ('', ValueError), ('f', ValueError), (2, ValueError), (-1, ValueError),
    (None, TypeError), (0.0, TypeError), (1.0, TypeError), ([True], TypeError),
])
def test_boolean_rule_refuses(value, error):
    with pytest.raises(error, match='x must be a boolean'):
        to_bool(value, 'x')


@pytest.mark.parametrize('text, expected', [('false', False), ('0', False), ('no', False),
                                            ('true', True), ('1', True), ('yes', True)])
def test_boolean_options_given_as_strings(crm, pair, text, expected):
    refiner = build_refiner(dict(type='CRM', bgr=text, roi_only=text))
    assert refiner.bgr is expected and refiner.roi_only is expected
    image, mask = pair
    if not expected:   # 'false' is not truthy: the image is not flipped
        np.testing.assert_array_equal(refiner.refine(image, mask), crm.refine(image, mask))


def test_cascadepsp_boolean_and_size_options(cascadepsp_weights):
    r = build_refiner(dict(type='CascadePSP', checkpoint=cascadepsp_weights, L=72,
                           fast='false', bgr='no'))
    assert r.fast is False and r.bgr is False
    for kwargs, match in [(dict(fast='maybe'), 'fast must be a boolean'),
                          (dict(L=10 ** 9), 'above the maximum 4096'),
                          (dict(L=900.0), 'L must be an int'),
                          (dict(L=True), 'L must be an int'),
                          (dict(L=0), 'too small'),
                          (dict(L=-900), 'too small'),
                          (dict(crop_batch_size=0), 'crop_batch_size'),
                          (dict(crop_batch_size=2.0), 'crop_batch_size')]:
        with pytest.raises(ValueError, match=match):
            build_refiner(dict(type='CascadePSP', checkpoint=cascadepsp_weights, **kwargs))


# ------------------------------------------------------------------ numeric options
@pytest.mark.parametrize('kwargs, match', [
    (dict(chunk_size=0), 'chunk_size'),
    (dict(chunk_size=-5), 'chunk_size'),
    (dict(chunk_size=10 ** 9), r'chunk_size must be an int in \[1, 4194304\]'),
    (dict(chunk_size=float('nan')), 'chunk_size'),
    (dict(chunk_size=True), 'chunk_size'),
    (dict(chunk_size=1024.0), 'chunk_size'),
    (dict(tile_size=0), 'tile_size'),
    (dict(tile_size=512.5), 'tile_size'),
    (dict(tile_size='512'), 'tile_size'),
    (dict(scales=[]), 'scales'),
    (dict(scales=[0.0, 1.0]), 'scale'),
    (dict(scales=[-0.5]), 'scale'),
    (dict(scales=[1.0, 0.5]), 'scales must increase'),
    (dict(scales=[0.5, 0.5]), 'scales must increase'),
    (dict(scales=[math.inf]), 'scale'),
    (dict(scales=[True]), 'scale'),
    (dict(scales=['0.5']), 'scale'),
    (dict(roi_band=(0.1, math.nan)), 'roi_band'),
    (dict(roi_band=('a', 'b')), 'roi_band'),
    (dict(roi_band=0.5), 'roi_band'),
    (dict(roi_dilation=-1), 'roi_dilation'),
    (dict(roi_dilation=10 ** 9), 'roi_dilation'),
    (dict(precision='FP32'), 'precision'),
    (dict(precision=None), 'precision'),
    (dict(width=0), 'width'),
])
def test_numeric_options_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_refiner(dict(type='CRM', **kwargs))


def test_numpy_numbers_and_arrays_are_accepted():
    r = build_refiner(dict(type='CRM', chunk_size=np.int64(4096), scales=np.array([0.5, 1.0]),
                           roi_band=(np.float32(0.1), 0.9)))
    assert r.chunk_size == 4096 and r.scales == (0.5, 1.0)


# ------------------------------------------------------------------ one size rule
@pytest.mark.parametrize('mask_kind', ['object', 'empty'])
def test_images_below_the_minimum_size_are_refused_even_with_an_empty_mask(crm, mask_kind):
    image = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    if mask_kind == 'object':
        mask[5:15, 5:15] = 255
    with pytest.raises(ValueError, match=r'larger than 32x32 px \(at least 33x33\), got 20x20'):
        crm.refine(image, mask)
    with pytest.raises(ValueError, match='got 20x20'):
        crm.refine_tensor(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask))
    assert crm.refine(np.zeros((33, 33, 3), np.uint8), np.zeros((33, 33), bool)).shape == (33, 33)


@pytest.mark.parametrize('mask_kind', ['object', 'empty'])
def test_cascadepsp_refuses_too_elongated_images_before_running(cascadepsp_weights, mask_kind):
    r = build_refiner(dict(type='CascadePSP', checkpoint=cascadepsp_weights, L=72, fast=True))
    image = np.zeros((1, 200, 3), np.uint8)   # 1 px high at long side 200 -> 0 px at L=72
    mask = np.zeros((1, 200), bool)
    mask[:, 50:150] = mask_kind == 'object'
    with pytest.raises(ValueError, match='would have a side of 0 px'):
        r.refine(image, mask)


# ------------------------------------------------------------------ checkpoints
def _bad_files(tmp_path):
    files = {}
    rng = np.random.default_rng(0)
    for name, content in [('random.pth', rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
                          ('text.pth', b'hello, this is not a checkpoint\n' * 10),
                          ('empty.pth', b''),
                          ('pickle.pth', b'\x80\x02}q\x00.')]:
        (tmp_path / name).write_bytes(content)
        files[name] = 'corrupt|empty'
    torch.save({'w': torch.zeros(1000)}, tmp_path / 'whole.pth')
    data = (tmp_path / 'whole.pth').read_bytes()
    (tmp_path / 'truncated.pth').write_bytes(data[:len(data) // 2])
    files['truncated.pth'] = 'corrupt'
    with zipfile.ZipFile(tmp_path / 'other.zip.pth', 'w') as z:
        z.writestr('readme.txt', 'not torch')
    files['other.zip.pth'] = 'corrupt'
    (tmp_path / 'folder.pth').mkdir()
    files['folder.pth'] = 'is a folder'
    files['missing.pth'] = 'not found'
    return files


@pytest.mark.parametrize('type_', ['CRM', 'CascadePSP', None])
def test_files_that_are_not_checkpoints_name_the_path(tmp_path, type_):
    for name, match in _bad_files(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(CheckpointError, match=match) as err:
            if type_ is None:
                read_state_dict(path)
            else:
                build_refiner(dict(type=type_, checkpoint=str(path)))
        assert name in str(err.value)
        assert 'weights_only=False' not in str(err.value)


def test_the_other_models_checkpoint_gets_one_message(crm_weights, cascadepsp_weights):
    with pytest.raises(CheckpointError, match="looks like a CRM checkpoint") as err:
        build_refiner(dict(type='CascadePSP', checkpoint=crm_weights))
    assert "type='CRM'" in str(err.value) and len(str(err.value)) < 400
    with pytest.raises(CheckpointError, match="looks like a CascadePSP checkpoint") as err:
        build_refiner(dict(type='CRM', checkpoint=cascadepsp_weights))
    assert "type='CascadePSP'" in str(err.value) and len(str(err.value)) < 400
    # in memory too
    state = torch.load(crm_weights, map_location='cpu', weights_only=True)
    with pytest.raises(CheckpointError, match="type='CRM'"):
        build_refiner(dict(type='CascadePSP', checkpoint=state))


# ------------------------------------------------------------------ one mask rule
def test_one_mask_rule_two_published_thresholds():
    assert (REFINE_FOREGROUND_ABOVE, EVAL_FOREGROUND_ABOVE) == (127, 128)
    assert base_mask_to_uint8 is mask_to_uint8
    m = np.array([[0, 127, 128, 129, 255]], np.uint8)
    assert foreground(m, REFINE_FOREGROUND_ABOVE).tolist() == [[False, False, True, True, True]]
    assert foreground(m, EVAL_FOREGROUND_ABOVE).tolist() == [[False, False, False, True, True]]
    assert as_binary_mask(m).tolist() == foreground(m, EVAL_FOREGROUND_ABOVE).tolist()
    from segrefine_plugins.cli import FOREGROUND_ABOVE
    assert FOREGROUND_ABOVE == EVAL_FOREGROUND_ABOVE
    with pytest.raises(ValueError, match='above must be'):
        foreground(m, 100)


@pytest.mark.parametrize('bad, match', [
    (np.eye(4, dtype=np.uint8), r'\{0, 1\}'),
    (np.zeros((4, 4), np.int32), 'dtype int32'),
    (np.zeros((4, 4, 3), np.uint8), 'HxW'),
    (np.zeros((0, 4), np.uint8), 'empty'),
    (np.full((4, 4), np.nan, np.float32), 'non-finite'),
    (np.full((4, 4), 2.0), r'\[0, 1\]'),
    ([[1]], 'numpy array'),
])
def test_mask_rule_errors_are_the_same_everywhere(crm, bad, match):
    with pytest.raises(ValueError, match=match):
        mask_to_uint8(bad)
    if not (isinstance(bad, np.ndarray) and bad.dtype.kind == 'f'):
        with pytest.raises(ValueError, match=match):
            as_binary_mask(bad)
    if isinstance(bad, np.ndarray) and bad.ndim == 2 and bad.size:
        with pytest.raises(ValueError, match=match):
            crm.refine(np.zeros(bad.shape + (3,), np.uint8), bad)


def test_metrics_refuse_probabilities_refiners_take_them():
    p = np.full((4, 4), 0.7, np.float32)
    assert foreground(p, REFINE_FOREGROUND_ABOVE).all()
    with pytest.raises(ValueError, match='threshold probabilities yourself'):
        as_binary_mask(p)


def test_masks_of_any_layout_are_read_alike():
    m = (np.arange(30).reshape(5, 6) * 8).astype(np.uint8)
    for view in (m[:, ::-1], m.T, np.asfortranarray(m), _read_only(m), torch.from_numpy(m)):
        out = mask_to_uint8(view)
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, np.asarray(view))


# ------------------------------------------------------------------ key=value
@pytest.mark.parametrize('text, expected', [
    ('false', False), ('False', False), ('no', False), ('OFF', False), ('true', True),
    ('yes', True), ('none', None), ('None', None), ('null', None), ('4', 4), ('-2', -2),
    ('0.5', 0.5), ('1e-3', 0.001), ('(0.5, 1.0)', (0.5, 1.0)), ('[3, 4, 6, 3]', [3, 4, 6, 3]),
    ('0.25/0.5/1', [0.25, 0.5, 1]), ("'quoted'", 'quoted'), ('bf16', 'bf16'),
    ('cuda:0', 'cuda:0'), ('work_dirs/a.pth', 'work_dirs/a.pth'), ('', ''),
])
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize('items, match', [
    (['novalue'], "is not key=value"),
    (['=5'], "key '' is not a valid name"),
    (['a b=1'], "key 'a b' is not a valid name"),
    (['L=1', 'L=2'], "'L' is given twice"),
    ([5], 'must be strings'),
])
def test_parse_key_values_errors(items, match):
    with pytest.raises(OptionError, match=match):
        parse_key_values(items, '--set')


def test_parse_key_values():
    assert parse_key_values([' L = 900', 'fast=false', 'scales=0.5,1.0', 'x=a=b'], 'x') == \
        {'L': 900, 'fast': False, 'scales': (0.5, 1.0), 'x': 'a=b'}


# ------------------------------------------------------------------ image files
def test_palette_label_png_is_refused_gray_palette_is_read(tmp_path):
    from conftest import require_module
    Image = require_module('PIL.Image', 'torchvision')
    labels = np.zeros((8, 8), np.uint8)
    labels[2:6, 2:6] = 1
    img = Image.new('P', (8, 8))
    img.putdata(labels.ravel().tolist())
    img.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)           # VOC colours
    img.save(tmp_path / 'voc.png')
    with pytest.raises(ImageReadError, match='palette'):
        read_mask(tmp_path / 'voc.png')
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)       # a black / white palette
    img.save(tmp_path / 'bw.png')
    np.testing.assert_array_equal(read_mask(tmp_path / 'bw.png'), labels * 255)


def test_16bit_masks(tmp_path):
    low = np.zeros((8, 8), np.uint16)
    low[2:6, 2:6] = 255
    cv2.imwrite(str(tmp_path / 'low.png'), low)
    with pytest.raises(ImageReadError, match='16-bit with values only in 0..255'):
        read_mask(tmp_path / 'low.png')
    with pytest.raises(ValueError, match='16-bit'):
        to_mask_uint8(low)
    full = low.astype(np.uint32) * 257
    cv2.imwrite(str(tmp_path / 'full.png'), full.astype(np.uint16))
    assert read_mask(tmp_path / 'full.png').max() == 255


def test_unicode_paths(tmp_path, crm, pair):
    image, mask = pair
    path = tmp_path / 'máscara ü 图.png'
    ok, buf = cv2.imencode('.png', mask)
    path.write_bytes(buf.tobytes())
    np.testing.assert_array_equal(read_mask(path), mask)
