"""CRM pipeline: golden parity, chunking / tiling invariance, roi_only, options, bad inputs."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segrefine_plugins import build_refiner
from segrefine_plugins.inference import crm as crm_inf
from segrefine_plugins.inference.crm import CRMRefiner, default_weights, infer_architecture
from segrefine_plugins.models.checkpoint import CheckpointError, read_state_dict
from segrefine_plugins.models.crm import CRMNet, TensorWindows

GOLDEN = ['crm_refine_4scales.npz', 'crm_refine_4scales_odd.npz']


def _small_state(blocks=(1, 1, 1, 1), width=8, seed=0) -> dict:
    """A small CRM in the published layout ('module.' keys), with non-trivial BN stats."""
    torch.manual_seed(seed)
    model = CRMNet(blocks, width)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return {'module.' + k: v for k, v in model.state_dict().items()}


@pytest.fixture(scope='module')
def small_state() -> dict:
    return _small_state()


@pytest.fixture(scope='module')
def sample():
    """A 90x130 image with a blob mask (uint8 0/255)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:90, :130]
    mask = (((yy - 45) / 30.0) ** 2 + ((xx - 60) / 45.0) ** 2 < 1).astype(np.uint8) * 255
    image = (rng.random((90, 130, 3)) * 60 + mask[..., None] * 0.6).astype(np.uint8)
    return image, mask


@pytest.mark.slow
@pytest.mark.parametrize('case', GOLDEN)
def test_golden_parity(case, golden_dir, crm_weights):
    g = np.load(golden_dir / case)
    refiner = build_refiner(dict(type='CRM', checkpoint=str(crm_weights),
                                 scales=tuple(float(s) for s in g['scales'])))
    prob = refiner.refine(g['image'], g['mask'])
    assert prob.dtype == np.float32 and prob.shape == g['prob'].shape
    diff = float(np.abs(prob - g['prob']).max())
    assert diff < 1e-5, f'max abs diff {diff}'
    levels = np.abs(np.floor(prob * 255).astype(int) - g['uint8'].astype(int))
    assert levels.max() <= 1 and int((levels > 0).sum()) <= 5


@pytest.mark.slow
def test_golden_parity_windowed_and_chunked(golden_dir, crm_weights):
    """Small encoder windows and odd chunk sizes keep the published numbers."""
    g = np.load(golden_dir / 'crm_refine_4scales_odd.npz')
    refiner = build_refiner(dict(type='CRM', checkpoint=str(crm_weights), tile_size=128,
                                 chunk_size=1000))
    assert len(refiner.tiles(refiner.model.feature_size(251, 205))) == 4
    prob = refiner.refine(g['image'], g['mask'])
    assert float(np.abs(prob - g['prob']).max()) < 1e-5


def test_chunk_sizes_give_identical_outputs(small_state, sample):
    image, mask = sample
    outs = [build_refiner(dict(type='CRM', checkpoint=small_state, chunk_size=c)).refine(image, mask)
            for c in (997, 4096, 10 ** 6)]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6, rtol=0)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-6, rtol=0)


def test_encoder_windows_keep_the_numbers(small_state, sample):
    image, mask = sample
    whole = build_refiner(dict(type='CRM', checkpoint=small_state, tile_size=None))
    windowed = build_refiner(dict(type='CRM', checkpoint=small_state, tile_size=48))
    assert len(windowed.tiles(windowed.model.feature_size(154, 194))) == 20
    np.testing.assert_allclose(windowed.refine(image, mask), whole.refine(image, mask),
                               atol=1e-5, rtol=0)


def test_roi_covering_everything_equals_full(small_state, sample):
    image, mask = sample
    full = build_refiner(dict(type='CRM', checkpoint=small_state, tile_size=64))
    roi = build_refiner(dict(type='CRM', checkpoint=small_state, tile_size=64, roi_only=True,
                             roi_band=(0.0, 1.0), roi_dilation=0))
    np.testing.assert_allclose(roi.refine(image, mask), full.refine(image, mask),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize('soft', [False, True])
def test_coarse_band_decodes_near_the_coarse_boundary_and_keeps_the_mask_elsewhere(
        small_state, sample, soft):
    """``coarse_band=r``: within r px of the coarse mask's boundary the output is the full
    decoding, elsewhere the coarse mask (0 / 1, or value / 255 with soft input); a band
    covering the image equals full decoding."""
    image, mask = sample
    soft_mask = mask.copy()
    if soft:
        soft_mask[mask > 0] = 230                     # still > 127: same label, not 255
    kw = dict(type='CRM', checkpoint=small_state, scales=(1.0,), tile_size=48, soft_input=soft)
    full = build_refiner(kw).refine(image, soft_mask)
    r = 6
    banded = build_refiner(dict(kw, coarse_band=r))
    out = banded.refine(image, soft_mask)
    fg = (mask > 127).astype(np.uint8)
    # chessboard distance to the other label (= square element): 1 on the boundary pixels
    d = cv2.distanceTransform(fg, cv2.DIST_C, 3) + cv2.distanceTransform(1 - fg, cv2.DIST_C, 3)
    inside, far = d <= r + 1, d > r + 1
    np.testing.assert_allclose(out[inside], full[inside], atol=1e-6, rtol=0)
    keep = soft_mask.astype(np.float32) / 255 if soft else fg.astype(np.float32)
    np.testing.assert_array_equal(out[far], keep[far])
    assert 0 < banded.last_stats['decoded'] < 0.5
    everything = build_refiner(dict(kw, coarse_band=200)).refine(image, soft_mask)
    np.testing.assert_allclose(everything, full, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='coarse_band'):
        build_refiner(dict(kw, coarse_band=0))


def test_roi_decodes_only_the_band_and_carries_the_rest(small_state):
    """decode_scale with a region of interest: ROI pixels equal full decoding, the others
    keep the previous output, and windows without ROI pixels are not encoded."""
    refiner = build_refiner(dict(type='CRM', checkpoint=small_state, tile_size=48))
    g = torch.Generator().manual_seed(3)
    rgb, seg = torch.randn(1, 3, 60, 80, generator=g), torch.rand(1, 1, 60, 80, generator=g)
    size = (120, 160)
    with torch.inference_mode():
        inputs = TensorWindows(rgb, seg * 2 - 1)
        full = refiner.decode_scale(inputs, size)
        roi = torch.zeros(size, dtype=torch.bool)
        roi[5:20, 100:150] = True
        roi[90, 3] = True
        encoded = []
        orig = refiner.net.encode_windows
        refiner.net.encode_windows = lambda *a: encoded.append(a[1:]) or orig(*a)
        out = refiner.decode_scale(inputs, size, roi=roi,
                                   out=torch.full(size, -1.0))
    assert torch.equal(out[~roi], torch.full(size, -1.0)[~roi])
    torch.testing.assert_close(out[roi], full[roi], atol=1e-6, rtol=0)
    n_windows = len(refiner.tiles(refiner.model.feature_size(60, 80)))
    assert 0 < len(encoded) < n_windows
    assert refiner.last_stats['windows_encoded'] == n_windows + len(encoded)


def test_uncertain_band(small_state):
    refiner = build_refiner(dict(type='CRM', checkpoint=small_state, roi_band=(0.1, 0.9),
                                 roi_dilation=2))
    prob = torch.zeros(20, 20)
    prob[10:, :] = 1.0
    prob[10, 5] = 0.5
    band = refiner.uncertain_band(prob)
    assert band.sum() == 25 and band[8:13, 3:8].all()
    refiner.roi_dilation = 0
    assert refiner.uncertain_band(prob).sum() == 1


def test_roi_only_changes_only_uncertain_pixels(small_state, sample):
    """With a narrow band, pixels outside it keep the previous scale's value: the result
    differs from full decoding, but only where the band was."""
    image, mask = sample
    kw = dict(type='CRM', checkpoint=small_state, scales=(0.25, 1.0))
    full = build_refiner(kw).refine(image, mask)
    coarse = build_refiner(dict(kw, scales=(0.25,))).refine(image, mask)
    lo, hi = np.quantile(coarse, [0.4, 0.6])
    roi = build_refiner(dict(kw, roi_only=True, roi_band=(float(lo), float(hi)),
                             roi_dilation=0)).refine(image, mask)
    band = (coarse > lo) & (coarse < hi)
    assert 0 < band.mean() < 0.5
    stats = build_refiner(dict(kw, roi_only=True, roi_band=(float(lo), float(hi)),
                               roi_dilation=0))
    stats.refine(image, mask)
    assert 0.5 < stats.last_stats['decoded'] < 0.75  # scale 1 of 2 decodes the band only
    np.testing.assert_allclose(roi[band], full[band], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(roi[~band], coarse[~band])


def test_architecture_is_read_from_the_checkpoint(small_state, tmp_path):
    state = read_state_dict_from(small_state, tmp_path)
    assert infer_architecture(state) == {'blocks': (1, 1, 1, 1), 'width': 8,
                                         'feat_channels': 256, 'hidden': 32}
    refiner = build_refiner(dict(type='CRM', checkpoint=str(tmp_path / 'small.pth')))
    assert refiner.model.blocks == (1, 1, 1, 1) and refiner.model.width == 8
    with pytest.raises(ValueError, match='do not match the checkpoint'):
        build_refiner(dict(type='CRM', checkpoint=small_state, blocks=(3, 4, 6, 3)))


def read_state_dict_from(state: dict, folder) -> dict:
    torch.save(state, folder / 'small.pth')
    return read_state_dict(folder / 'small.pth')


def test_published_checkpoint_file_and_repr(crm_weights):
    refiner = build_refiner(dict(type='CRM', checkpoint=str(crm_weights), scales=[0.5, 1]))
    assert refiner.model.blocks == (3, 4, 6, 3) and refiner.model.width == 64
    assert refiner.scales == (0.5, 1.0)
    assert 'CRMRefiner(scales=(0.5, 1.0)' in repr(refiner)


def test_default_weights_missing_message(tmp_path, monkeypatch):
    monkeypatch.setattr(crm_inf, 'WEIGHTS_DIR', tmp_path)
    with pytest.raises(ValueError, match='no default CRM weights are installed'):
        CRMRefiner()
    with pytest.raises(ValueError, match='no default CRM weights are installed'):
        build_refiner(dict(type='CRM'))


def test_default_weights_installed(tmp_path, monkeypatch, small_state, sample):
    monkeypatch.setattr(crm_inf, 'WEIGHTS_DIR', tmp_path)
    torch.save(small_state, tmp_path / 'crm_default.pth')
    with pytest.raises(ValueError, match='no architecture sidecar'):
        default_weights()
    (tmp_path / 'crm_default.json').write_text('{"blocks": [1, 1, 1], "width": 8}')
    with pytest.raises(ValueError, match='must hold'):
        default_weights()
    (tmp_path / 'crm_default.json').write_text('not json')
    with pytest.raises(ValueError, match='cannot read'):
        default_weights()
    (tmp_path / 'crm_default.json').write_text(json.dumps(
        {'blocks': [1, 1, 1, 1], 'width': 8, 'trained_on': 'duts-te-2k'}))
    path, arch = default_weights()
    assert path == tmp_path / 'crm_default.pth'
    assert arch['blocks'] == (1, 1, 1, 1) and arch['trained_on'] == 'duts-te-2k'
    refiner = build_refiner(dict(type='CRM'))
    assert refiner.model.width == 8
    image, mask = sample
    np.testing.assert_array_equal(
        refiner.refine(image, mask),
        build_refiner(dict(type='CRM', checkpoint=small_state)).refine(image, mask))
    (tmp_path / 'crm_default.json').write_text('{"blocks": [2, 1, 1, 1], "width": 8}')
    with pytest.raises(CheckpointError, match='sidecar says'):
        CRMRefiner()


def test_soft_input_default_is_the_soft_trained_file(tmp_path, monkeypatch, small_state,
                                                    sample):
    """checkpoint=None with soft_input=True loads crm_default_soft (its own file and sidecar),
    never the hard default; a missing soft file is named."""
    monkeypatch.setattr(crm_inf, 'WEIGHTS_DIR', tmp_path)
    torch.save(small_state, tmp_path / 'crm_default.pth')
    (tmp_path / 'crm_default.json').write_text('{"blocks": [1, 1, 1, 1], "width": 8}')
    assert CRMRefiner().model.width == 8
    with pytest.raises(ValueError, match='crm_default_soft.pth'):
        CRMRefiner(soft_input=True)
    soft_state = {k: v * 0.5 if v.is_floating_point() else v for k, v in small_state.items()}
    torch.save(soft_state, tmp_path / 'crm_default_soft.pth')
    (tmp_path / 'crm_default_soft.json').write_text(
        '{"blocks": [1, 1, 1, 1], "width": 8, "scales": [0.5, 1.0]}')
    soft = CRMRefiner(soft_input=True)
    assert soft.scales == (0.5, 1.0) and CRMRefiner().scales == crm_inf.PUBLISHED_SCALES
    image, mask = sample
    out = soft.refine(image, mask)
    np.testing.assert_array_equal(out, CRMRefiner(soft_state, scales=(0.5, 1.0),
                                                  soft_input=True).refine(image, mask))
    assert not np.array_equal(out, CRMRefiner(small_state, scales=(0.5, 1.0),
                                              soft_input=True).refine(image, mask))


def test_default_weights_sidecar_names_the_work_scale(tmp_path, monkeypatch, small_state,
                                                     sample):
    """The default weights refine at the work_scale their sidecar names (1 without one); an
    explicit work_scale wins; an in-memory checkpoint has no sidecar; a bad value raises."""
    monkeypatch.setattr(crm_inf, 'WEIGHTS_DIR', tmp_path)
    torch.save(small_state, tmp_path / 'crm_default.pth')
    sidecar = tmp_path / 'crm_default.json'
    sidecar.write_text('{"blocks": [1, 1, 1, 1], "width": 8, "scales": [0.5, 1.0]}')
    assert CRMRefiner().work_scale == 1.0
    sidecar.write_text('{"blocks": [1, 1, 1, 1], "width": 8, "scales": [0.5, 1.0], '
                       '"work_scale": 2.0}')
    default = CRMRefiner()
    assert default.work_scale == 2.0 and CRMRefiner(work_scale=1.5).work_scale == 1.5
    assert CRMRefiner(small_state).work_scale == 1.0
    image, mask = sample
    np.testing.assert_array_equal(
        default.refine(image, mask),
        CRMRefiner(small_state, scales=(0.5, 1.0), work_scale=2).refine(image, mask))
    sidecar.write_text('{"blocks": [1, 1, 1, 1], "width": 8, "work_scale": 0.5}')
    with pytest.raises(ValueError, match='sidecar of .*crm_default.pth.*work_scale'):
        CRMRefiner()


def test_a_checkpoint_file_with_a_sidecar_gets_its_settings(tmp_path, small_state, sample):
    """A checkpoint file NAME.pth with NAME.json beside it (as the shipped files have) runs
    at the sidecar's scales / work_scale, so naming a shipped file by its path gives the
    default's results; without a sidecar, or beside another program's JSON, it runs as
    published; a malformed or mismatching sidecar raises."""
    from segrefine_plugins.inference.crm import checkpoint_sidecar

    ckpt = tmp_path / 'mine.pth'
    torch.save(small_state, ckpt)
    assert checkpoint_sidecar(ckpt) is None and checkpoint_sidecar(small_state) is None
    plain = CRMRefiner(str(ckpt))
    assert plain.work_scale == 1.0 and plain.scales == crm_inf.PUBLISHED_SCALES
    (tmp_path / 'mine.json').write_text('{"epoch": 3, "loss": 0.1}')       # not a sidecar
    assert CRMRefiner(ckpt).work_scale == 1.0
    (tmp_path / 'mine.json').write_text(
        '{"blocks": [1, 1, 1, 1], "width": 8, "scales": [0.5, 1.0], "work_scale": 2.0}')
    named = CRMRefiner(ckpt)
    assert named.work_scale == 2.0 and named.scales == (0.5, 1.0)
    assert CRMRefiner(ckpt, work_scale=1.5, scales=[1.0]).work_scale == 1.5   # explicit wins
    image, mask = sample
    np.testing.assert_array_equal(
        named.refine(image, mask),
        CRMRefiner(small_state, scales=(0.5, 1.0), work_scale=2).refine(image, mask))
    (tmp_path / 'mine.json').write_text('{"blocks": [1, 1, 1], "width": 8}')
    with pytest.raises(ValueError, match='must hold'):
        CRMRefiner(ckpt)
    (tmp_path / 'mine.json').write_text('{"blocks": [2, 1, 1, 1], "width": 8}')
    with pytest.raises(CheckpointError, match='sidecar says'):
        CRMRefiner(ckpt)
    other = tmp_path / 'model.pt'                      # any suffix, not only .pth
    torch.save(small_state, other)
    (tmp_path / 'model.json').write_text('{"blocks": [1, 1, 1, 1], "width": 8, '
                                         '"work_scale": 2.0}')
    assert CRMRefiner(other).work_scale == 2.0


def test_naming_the_shipped_default_by_path_gives_the_default(sample):
    from segrefine_plugins.inference.crm import WEIGHTS_DIR
    image, mask = sample
    np.testing.assert_array_equal(
        build_refiner(dict(type='CRM', checkpoint=str(WEIGHTS_DIR / 'crm_default.pth')))
        .refine(image, mask), build_refiner(dict(type='CRM')).refine(image, mask))


def test_explicit_work_scale_one_loads_the_scale1_weights(tmp_path, monkeypatch, small_state,
                                                          sample):
    """checkpoint=None with work_scale=1 loads crm_default_scale1 (the model trained at the
    input's own size); other work scales and soft_input keep their own files."""
    monkeypatch.setattr(crm_inf, 'WEIGHTS_DIR', tmp_path)
    torch.save(small_state, tmp_path / 'crm_default.pth')
    (tmp_path / 'crm_default.json').write_text(
        '{"blocks": [1, 1, 1, 1], "width": 8, "scales": [0.5, 1.0], "work_scale": 2.0}')
    with pytest.raises(ValueError, match='crm_default_scale1.pth'):
        CRMRefiner(work_scale=1)
    scale1 = {k: v * 0.5 if v.is_floating_point() else v for k, v in small_state.items()}
    torch.save(scale1, tmp_path / 'crm_default_scale1.pth')
    (tmp_path / 'crm_default_scale1.json').write_text(
        '{"blocks": [1, 1, 1, 1], "width": 8, "scales": [0.5, 1.0], "work_scale": 1.0}')
    image, mask = sample
    fast = CRMRefiner(work_scale=1.0)
    assert fast.work_scale == 1.0 and CRMRefiner(work_scale=1.5).work_scale == 1.5
    np.testing.assert_array_equal(fast.refine(image, mask),
                                  CRMRefiner(scale1, scales=(0.5, 1.0)).refine(image, mask))
    np.testing.assert_array_equal(  # 1.5 is not 1: the default file, at 1.5
        CRMRefiner(work_scale=1.5).refine(image, mask),
        CRMRefiner(small_state, scales=(0.5, 1.0), work_scale=1.5).refine(image, mask))


def test_shipped_default_files_agree_on_architecture_and_name_their_work_scale():
    hard_path, hard = default_weights()
    scale1_path, scale1 = default_weights(crm_inf.DEFAULT_SCALE1_WEIGHTS)
    keys = ('blocks', 'width', 'feat_channels', 'hidden', 'scales')
    assert [scale1[k] for k in keys] == [hard[k] for k in keys]
    assert hard['work_scale'] == 2.0 and scale1['work_scale'] == 1.0
    assert CRMRefiner().work_scale == 2.0 and CRMRefiner(soft_input=True).work_scale == 2.0
    for path in (hard_path, scale1_path):
        assert path.stat().st_size < 10 * 2 ** 20


def test_shipped_soft_default_matches_the_hard_architecture():
    hard_path, hard = default_weights()
    soft_path, soft = default_weights(crm_inf.DEFAULT_SOFT_WEIGHTS)
    assert soft_path != hard_path and soft['soft_input'] is True
    keys = ('blocks', 'width', 'feat_channels', 'hidden', 'scales')
    assert [soft[k] for k in keys] == [hard[k] for k in keys]
    assert soft_path.stat().st_size < 10 * 2 ** 20


def test_work_scale_refines_an_enlarged_input(small_state, sample):
    """work_scale=s equals refining the bicubic-enlarged image and re-binarised bilinear mask
    at s x the size, area-averaged back; 1 is the plain refiner."""
    image, mask = sample
    kw = dict(checkpoint=small_state, scales=(0.5, 1.0))
    plain = CRMRefiner(**kw).refine(image, mask)
    np.testing.assert_array_equal(CRMRefiner(work_scale=1, **kw).refine(image, mask), plain)
    out = CRMRefiner(work_scale=2, **kw).refine(image, mask)
    assert out.shape == mask.shape and out.dtype == np.float32
    img_t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    big = F.interpolate(img_t, size=(180, 260), mode='bicubic', align_corners=False)
    big = big[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    big_mask = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(180, 260),
                             mode='bilinear', align_corners=False)[0, 0] > 127.5
    want = CRMRefiner(**kw).refine(big, big_mask.numpy())
    want = F.interpolate(torch.from_numpy(want)[None, None], size=mask.shape, mode='area')[0, 0]
    np.testing.assert_allclose(out, want.numpy(), atol=1e-5)
    assert not np.array_equal(out, plain)
    for bad in (0.5, 5, float('nan')):
        with pytest.raises(ValueError, match='work_scale'):
            CRMRefiner(work_scale=bad, **kw)


def test_mask_is_binarised_and_bgr_flag(small_state, sample):
    image, mask = sample
    refiner = build_refiner(dict(type='CRM', checkpoint=small_state, scales=(0.5, 1.0)))
    ref = refiner.refine(image, mask)
    soft = np.where(mask > 0, 0.7, 0.2).astype(np.float32)  # same binarisation at > 127
    np.testing.assert_array_equal(refiner.refine(image, soft), ref)
    np.testing.assert_array_equal(refiner.refine(image, mask > 0), ref)
    bgr = build_refiner(dict(type='CRM', checkpoint=small_state, scales=(0.5, 1.0), bgr=True))
    np.testing.assert_array_equal(bgr.refine(np.ascontiguousarray(image[..., ::-1]), mask), ref)
    out = refiner.refine_tensor(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask))
    np.testing.assert_array_equal(out.numpy(), ref)
    assert ref.dtype == np.float32 and ref.min() >= 0 and ref.max() <= 1


def test_soft_input_reads_the_mask_linearly(small_state, sample):
    image, mask = sample
    hard = build_refiner(dict(type='CRM', checkpoint=small_state, scales=(0.5, 1.0)))
    soft = build_refiner(dict(type='CRM', checkpoint=small_state, scales=(0.5, 1.0),
                              soft_input='true'))
    assert soft.soft_input and not hard.soft_input
    # a hard 0 / 255 mask is the same input either way
    np.testing.assert_array_equal(soft.refine(image, mask), hard.refine(image, mask))
    # a probability map is not binarised: the result depends on the values, not only > 127
    prob_a = np.where(mask > 0, 0.7, 0.2).astype(np.float32)
    prob_b = np.where(mask > 0, 0.9, 0.1).astype(np.float32)
    out_a, out_b = soft.refine(image, prob_a), soft.refine(image, prob_b)
    assert np.abs(out_a - out_b).max() > 0        # (the input itself: test_inference_crm_input)
    np.testing.assert_array_equal(hard.refine(image, prob_a), hard.refine(image, prob_b))
    with pytest.raises(ValueError, match='soft_input'):
        build_refiner(dict(type='CRM', checkpoint=small_state, soft_input='maybe'))


def test_min_input_size(small_state, sample):
    refiner = build_refiner(dict(type='CRM', checkpoint=small_state))
    assert refiner.min_input_size == 33
    image, mask = sample
    assert refiner.refine(image[:33, :33], mask[:33, :33]).shape == (33, 33)


def test_empty_mask_gives_zeros(small_state, sample):
    image, _ = sample
    refiner = build_refiner(dict(type='CRM', checkpoint=small_state))
    out = refiner.refine(image, np.zeros(image.shape[:2], np.uint8))
    assert out.shape == image.shape[:2] and not out.any()


@pytest.mark.parametrize('kwargs, match', [
    (dict(scales=()), 'scales'),
    (dict(scales=(0.5, 0)), 'scale'),
    (dict(scales=(1.5,)), 'scale'),
    (dict(scales=(float('nan'),)), 'scale'),
    (dict(scales='1.0'), 'scales'),
    (dict(chunk_size=0), 'chunk_size'),
    (dict(chunk_size=1.5), 'chunk_size'),
    (dict(tile_size=8), 'tile_size'),
    (dict(roi_band=(0.9, 0.1)), 'roi_band'),
    (dict(roi_band=(0.1, 1.5)), 'roi_band'),
    (dict(roi_dilation=-1), 'roi_dilation'),
    (dict(precision='fp8'), 'precision'),
])
def test_bad_options(small_state, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CRMRefiner(checkpoint=small_state, **kwargs)


def test_bad_checkpoints(tmp_path, spec_root):
    with pytest.raises(CheckpointError, match='not found'):
        CRMRefiner(checkpoint=str(tmp_path / 'missing.pth'))
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError):
        CRMRefiner(checkpoint=str(tmp_path / 'junk.pth'))
    truncated = {k: v for k, v in _small_state().items() if 'imnet' not in k}
    with pytest.raises(CheckpointError, match='missing keys'):
        CRMRefiner(checkpoint=truncated)
    with pytest.raises(CheckpointError, match='not a CRM checkpoint'):
        CRMRefiner(checkpoint={'module.conv.weight': torch.zeros(1)})


def test_bad_inputs(small_state, sample):
    image, mask = sample
    refiner = build_refiner(dict(type='CRM', checkpoint=small_state))
    with pytest.raises(ValueError, match='larger than 32x32'):
        refiner.refine(image[:32], mask[:32])
    with pytest.raises(ValueError, match='differs from the image'):
        refiner.refine(image, mask[:, :-1])
    with pytest.raises(ValueError, match='HxWx3'):
        refiner.refine(image[..., 0], mask)
    with pytest.raises(ValueError, match='uint8'):
        refiner.refine(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match=r'\{0, 1\}'):
        refiner.refine(image, (mask > 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        refiner.refine(image, mask.astype(np.float32))
    with pytest.raises(ValueError, match='shrinks'):
        build_refiner(dict(type='CRM', checkpoint=small_state, scales=(0.001, 1.0))).refine(
            image, mask)
