"""Image / mask folder datasets: both layouts, concatenation, items, reproducibility."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from segrefine_plugins.training.datasets import MaskPairDataset, find_pairs, read_pair
from segrefine_plugins.training.perturbation import lowres_mask, perturb_mask


@pytest.fixture(scope='module')
def published_layout(data_root, tmp_path_factory):
    """Three ECSSD pairs copied into the published NAME_im.jpg / NAME_gt.png layout."""
    root = tmp_path_factory.mktemp('published')
    for img, mask in find_pairs(data_root / 'ecssd')[:3]:
        stem = img.rsplit('/', 1)[-1].rsplit('.', 1)[0]
        shutil.copy(img, root / f'{stem}_im.jpg')
        shutil.copy(mask, root / f'{stem}_gt.png')
    return root


def test_both_layouts_and_concatenation(data_root, published_layout):
    assert len(find_pairs(published_layout)) == 3
    ds = MaskPairDataset([str(data_root / 'ecssd'), str(published_layout)], subset=None)
    assert len(ds) == 1000 + 3
    assert ds.pairs[-1][1].endswith('_gt.png')


def test_missing_or_empty_roots_raise(tmp_path):
    with pytest.raises(ValueError, match='not a directory'):
        find_pairs(tmp_path / 'nope')
    with pytest.raises(ValueError, match='no image / mask pairs'):
        find_pairs(tmp_path)
    with pytest.raises(ValueError):
        MaskPairDataset([])
    with pytest.raises(ValueError):
        MaskPairDataset(str(tmp_path), coarse='bogus')


def test_mismatched_sizes_raise(tmp_path, data_root):
    img, mask = find_pairs(data_root / 'ecssd')[0]
    import cv2
    shutil.copy(img, tmp_path / 'a_im.jpg')
    m = cv2.imread(mask, cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / 'a_gt.png'), m[:-3])
    with pytest.raises(ValueError, match='its mask'):
        read_pair(*find_pairs(tmp_path)[0])


def test_training_item_shapes_and_ranges(data_root):
    ds = MaskPairDataset(str(data_root / 'duts-te-2k'), crop_size=64, subset=(0, 4), seed=1)
    item = ds[2]
    assert item['image'].shape == (3, 64, 64) and item['image'].dtype == torch.float32
    assert item['seg'].shape == (1, 64, 64) and set(item['seg'].unique().tolist()) <= {-1.0, 1.0}
    assert item['gt'].shape == (1, 64, 64) and 0 <= item['gt'].min() <= item['gt'].max() <= 1
    assert item['index'] == 2
    # soft ground truth is kept soft (DUTS masks have anti-aliased edges)
    full = MaskPairDataset(str(data_root / 'duts-te-2k'), train=False, subset=(0, 4))[0]
    g = full['gt']
    assert ((g > 0) & (g < 1)).any()


def test_training_items_reproducible_per_seed_and_vary_per_draw(data_root):
    kw = dict(roots=str(data_root / 'duts-te-2k'), crop_size=48, subset=(0, 3))
    a, b, c = MaskPairDataset(seed=5, **kw), MaskPairDataset(seed=5, **kw), \
        MaskPairDataset(seed=6, **kw)
    first_a, first_b = a[1], b[1]
    for k in ('image', 'seg', 'gt'):
        assert torch.equal(first_a[k], first_b[k])
    assert not torch.equal(first_a['seg'], c[1]['seg']) or \
        not torch.equal(first_a['image'], c[1]['image'])
    second = a[1]   # the next draw of the same item is a new augmentation
    assert not torch.equal(first_a['image'], second['image']) or \
        not torch.equal(first_a['seg'], second['seg'])


def test_validation_items_are_fixed_and_coarse(data_root):
    kw = dict(roots=str(data_root / 'ecssd'), train=False, subset=(0, 2))
    ds = MaskPairDataset(coarse='perturb', val_iou=0.8, **kw)
    x, y = ds[0], ds[0]
    assert torch.equal(x['seg'], y['seg'])
    img, _ = read_pair(*ds.pairs[0])
    assert x['image'].shape[1:] == img.shape[:2]
    gt, seg = x['gt'][0] > 0.5, x['seg'][0] > 0
    iou = (gt & seg).sum().item() / (gt | seg).sum().item()
    assert 0.6 < iou < 0.85
    low = MaskPairDataset(coarse='lowres', **kw)[0]
    lseg = low['seg'][0] > 0
    assert (gt & lseg).sum().item() / (gt | lseg).sum().item() > 0.85


def test_lowres_prob_one_gives_lowres_training_inputs(data_root):
    ds = MaskPairDataset(str(data_root / 'ecssd'), crop_size=400, subset=(0, 1),
                         lowres_prob=1.0)
    item = ds[0]
    seg = item['seg'][0].numpy() > 0
    gt_u8 = np.rint(item['gt'][0].numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(seg, lowres_mask(gt_u8, 8) > 0)
    with pytest.raises(ValueError):
        MaskPairDataset(str(data_root / 'ecssd'), lowres_prob=1.5)


def test_soft_lowres_inputs_are_the_probability_read_linearly(data_root):
    ds = MaskPairDataset(str(data_root / 'ecssd'), crop_size=400, subset=(0, 1),
                         lowres_prob=1.0, soft_lowres_prob=1.0)
    item = ds[0]
    seg = item['seg'][0].numpy()
    gt_u8 = np.rint(item['gt'][0].numpy() * 255).astype(np.uint8)
    want = lowres_mask(gt_u8, 8, soft=True).astype(np.float32) * (2 / 255) - 1
    np.testing.assert_allclose(seg, want, atol=1e-6)
    assert len(np.unique(seg)) > 10 and seg.min() >= -1 and seg.max() <= 1
    val = MaskPairDataset(str(data_root / 'ecssd'), train=False, coarse='lowres_soft',
                          lowres_factor=4, subset=(0, 1))[0]
    hard = MaskPairDataset(str(data_root / 'ecssd'), train=False, coarse='lowres',
                           lowres_factor=4, subset=(0, 1))[0]
    assert len(np.unique(val['seg'].numpy())) > 10
    # the same mask but where the bilinear probability is exactly 0.5 (hard: background,
    # soft: 128/255, just above)
    assert np.mean((val['seg'].numpy() > 0) != (hard['seg'].numpy() > 0)) < 1e-3
    with pytest.raises(ValueError, match='soft_lowres_prob'):
        MaskPairDataset(str(data_root / 'ecssd'), soft_lowres_prob=-0.1)
    with pytest.raises(ValueError, match='lowres_soft'):
        MaskPairDataset(str(data_root / 'ecssd'), train=False, coarse='soft')


def test_several_lowres_factors_draw_each_of_them(data_root):
    kw = dict(crop_size=256, subset=(0, 1), lowres_prob=1.0, lowres_factor=(4, 16))
    ds = MaskPairDataset(str(data_root / 'ecssd'), **kw)
    seen = set()
    for _ in range(12):
        item = ds[0]
        seg = item['seg'][0].numpy() > 0
        gt_u8 = np.rint(item['gt'][0].numpy() * 255).astype(np.uint8)
        match = {f for f in (4, 16) if np.array_equal(seg, lowres_mask(gt_u8, f) > 0)}
        assert match, 'the coarse mask is neither the 4x nor the 16x down-up-sampled truth'
        seen |= match
    assert seen == {4, 16}
    with pytest.raises(ValueError, match='single lowres_factor'):
        MaskPairDataset(str(data_root / 'ecssd'), train=False, coarse='lowres',
                        lowres_factor=(4, 8))
    with pytest.raises(ValueError, match='integer >= 1'):
        MaskPairDataset(str(data_root / 'ecssd'), lowres_factor=(0, 8))


def test_subset_and_index_errors(data_root):
    ds = MaskPairDataset(str(data_root / 'ecssd'), subset=(10, 15))
    assert len(ds) == 5 and ds.pairs[0] == find_pairs(data_root / 'ecssd')[10]
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(ValueError):
        MaskPairDataset(str(data_root / 'ecssd'), subset=(5, 5))


def test_dataloader_with_workers_collates(data_root):
    ds = MaskPairDataset(str(data_root / 'duts-te-2k'), crop_size=32, subset=(0, 4))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batch = next(iter(loader))
    assert batch['image'].shape == (2, 3, 32, 32) and batch['seg'].shape == (2, 1, 32, 32)
    assert np.isfinite(batch['image'].numpy()).all()


def test_perturb_symmetric_uses_the_unbiased_perturbation(data_root):
    kw = dict(roots=str(data_root / 'ecssd'), train=False, subset=(0, 2), val_iou=0.8, seed=3)
    pub = MaskPairDataset(**kw)[1]
    sym = MaskPairDataset(perturb_symmetric=True, **kw)[1]
    gt = np.rint(sym['gt'][0].numpy() * 255).astype(np.uint8)
    expect = perturb_mask(gt, np.random.default_rng([3, 1]), iou_target=0.8, symmetric=True)
    np.testing.assert_array_equal(sym['seg'][0].numpy() > 0, expect > 0)
    assert not torch.equal(pub['seg'], sym['seg'])
    train = MaskPairDataset(str(data_root / 'ecssd'), subset=(0, 2), perturb_symmetric=True)
    assert train.perturb_symmetric and train[0]['seg'].shape == train[0]['gt'].shape


def _uint8_image(item_image: torch.Tensor) -> np.ndarray:
    """A normalised (3, H, W) item image back to (H, W, 3) uint8."""
    from segrefine_plugins.training.datasets import IMAGENET_MEAN, IMAGENET_STD
    rgb = item_image.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('lowres_prob', [0.0, 1.0])
def test_work_scale_items_are_made_small_then_enlarged_as_the_refiner_does(data_root,
                                                                           lowres_prob):
    """work_scale=2 with crop 96 = the work_scale=1 item of crop 48 (same draws), enlarged by
    the refiner's own enlargement (bicubic image, re-binarised bilinear mask)."""
    from segrefine_plugins.inference.crm import enlarge_input
    kw = dict(subset=(3, 4), lowres_prob=lowres_prob, lowres_factor=4, seed=5)
    small = MaskPairDataset(str(data_root / 'ecssd'), crop_size=48, **kw)[0]
    big = MaskPairDataset(str(data_root / 'ecssd'), crop_size=96, work_scale=2, **kw)[0]
    assert big['image'].shape == (3, 96, 96) and big['seg'].shape == big['gt'].shape == (1, 96, 96)
    image = torch.from_numpy(_uint8_image(small['image']).transpose(2, 0, 1).copy())
    coarse = torch.from_numpy(np.where(small['seg'][0].numpy() > 0, 255, 0).astype(np.uint8))
    want_image, want_mask = enlarge_input(image, coarse, (96, 96))
    np.testing.assert_array_equal(_uint8_image(big['image']), want_image.numpy().transpose(1, 2, 0))
    np.testing.assert_array_equal(big['seg'][0].numpy() > 0, want_mask.numpy() > 127)
    # the ground truth is enlarged too: its 2x2 means give back the small one (to rounding)
    pooled = big['gt'][0].numpy().reshape(48, 2, 48, 2).mean(axis=(1, 3))
    assert np.abs(pooled - small['gt'][0].numpy()).mean() < 0.02


def test_work_scale_validation_items_are_whole_images_enlarged(data_root):
    kw = dict(train=False, coarse='lowres', lowres_factor=4, subset=(0, 1))
    plain = MaskPairDataset(str(data_root / 'ecssd'), **kw)[0]
    big = MaskPairDataset(str(data_root / 'ecssd'), work_scale=1.5, **kw)[0]
    h, w = plain['gt'].shape[1:]
    assert big['gt'].shape[1:] == (round(h * 1.5), round(w * 1.5))
    assert big['image'].shape[1:] == big['seg'].shape[1:] == big['gt'].shape[1:]
    for bad in (0.5, 5.0, float('nan')):
        with pytest.raises(ValueError, match='work_scale'):
            MaskPairDataset(str(data_root / 'ecssd'), work_scale=bad)


def test_read_pair_uses_the_package_readers(tmp_path):
    """Training pairs go through io.read_image / read_mask: an image OpenCV refuses to decode
    and a colour mask raise ImageReadError naming the file (cv2.imread raised cv2.error, or
    read red as background)."""
    from segrefine_plugins.io import ImageReadError
    from segrefine_plugins.training.datasets import read_pair

    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'i.png'), image)
    gray = np.zeros((20, 30), np.uint8)
    gray[5:15, 5:25] = 255
    cv2.imwrite(str(tmp_path / 'g.png'), gray)
    rgb, mask = read_pair(str(tmp_path / 'i.png'), str(tmp_path / 'g.png'))
    np.testing.assert_array_equal(rgb, image[:, :, ::-1])
    np.testing.assert_array_equal(mask, gray)
    red = np.zeros((20, 30, 3), np.uint8)
    red[5:15, 5:25, 2] = 255
    cv2.imwrite(str(tmp_path / 'red.png'), red)
    with pytest.raises(ImageReadError, match='red.png'):
        read_pair(str(tmp_path / 'i.png'), str(tmp_path / 'red.png'))
    (tmp_path / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    with pytest.raises(ImageReadError, match='bad.png'):
        read_pair(str(tmp_path / 'bad.png'), str(tmp_path / 'g.png'))
