"""RoiOptions (segrefine_plugins.multiobject.options) and the protocol knobs it carries:
validation, batching (exact), the size-aware ROI scale, the do-no-harm gate, thin ROIs.

The batching and size-rule tests run the real refiners (CascadePSP with the golden synthetic
weights at a small L, the shipped default CRM) on multi-object composites built from ECSSD
images and their human masks.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest

from segrefine_plugins import build_refiner
from segrefine_plugins.io import read_image, read_mask
from segrefine_plugins.multiobject import RoiOptions, refine_label_map, refine_segments
from segrefine_plugins.multiobject.options import LABEL_MAP_MIN_AREA


# --------------------------------------------------------------------------- options
def test_defaults_are_the_published_protocol():
    opts = RoiOptions()
    assert (opts.roi_padding, opts.kernel_size, opts.ignore_index, opts.stuff_scale) == \
        (0.25, 10, 255, 0.51)
    assert opts.min_area_for(label_map=True) == LABEL_MAP_MIN_AREA == 1024
    assert opts.min_area_for(label_map=False) == 0
    assert opts.max_upscale is None and opts.roi_batch_size == 1 and not opts.gated


def test_from_any_and_replace():
    opts = RoiOptions.from_any(dict(min_area=5, stuff_classes=[3, 'wall']), roi_batch_size=4)
    assert opts.min_area == 5 and opts.stuff_classes == (3, 'wall') and opts.roi_batch_size == 4
    assert RoiOptions.from_any(opts) == opts and RoiOptions.from_any(None) == RoiOptions()
    changed = opts.replace(gate_min_iou=0.9)
    assert changed.gated and changed.min_area == 5 and not opts.gated
    assert set(opts.as_dict()) == set(RoiOptions.fields())


@pytest.mark.parametrize('bad, error', [
    (dict(roi_padding=-0.1), ValueError), (dict(roi_padding=float('nan')), ValueError),
    (dict(roi_padding='0.25'), TypeError), (dict(min_area=-1), ValueError),
    (dict(min_area=1.5), TypeError), (dict(min_area=True), TypeError),
    (dict(kernel_size=0), ValueError), (dict(stuff_scale=0), ValueError),
    (dict(stuff_classes='wall'), TypeError), (dict(stuff_classes=[1.5]), TypeError),
    (dict(max_upscale=0.5), ValueError), (dict(max_upscale=float('inf')), ValueError),
    (dict(roi_batch_size=0), ValueError), (dict(roi_batch_size=10 ** 6), ValueError),
    (dict(gate_min_iou=1.5), ValueError), (dict(gate_min_confidence='high'), TypeError),
    (dict(gate_pixel_confidence=-0.1), ValueError), (dict(gate_pixel_confidence='x'), TypeError),
    (dict(min_roi_size=0), ValueError), (dict(no_such_option=1), TypeError),
])
def test_bad_options_are_refused_with_the_name(bad, error):
    with pytest.raises(error, match=next(iter(bad))):
        RoiOptions.from_any(bad)


def test_type_errors_are_also_value_errors():
    """Callers that catch ValueError for bad options (the adapters) see type errors too."""
    with pytest.raises(ValueError):
        RoiOptions(min_area='big')


def test_not_a_mapping():
    with pytest.raises(TypeError, match='RoiOptions'):
        RoiOptions.from_any([('min_area', 3)])


# --------------------------------------------------------------------------- real inputs
def _object(data_root: Path, name: str, size: int) -> Tuple[np.ndarray, np.ndarray]:
    image = read_image(data_root / 'ecssd' / 'images' / f'{name}.jpg')
    mask = read_mask(data_root / 'ecssd' / 'masks' / f'{name}.png') > 127
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return image, mask.astype(bool)


def composite(data_root: Path, names=('0001', '0002', '0001', '0005'), tile: int = 64
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2x2 mosaic of ECSSD objects: image, truth (class k + 1 for tile k's object, 0 for
    the backgrounds) and a coarse map (each tile's truth 4x down-up-sampled, nearest). Tiles
    sit 8 px inside cells of ``tile + 16`` px, so no padded ROI is clipped by the image
    border; tiles 0 and 2 hold the same object, so their ROIs have equal shapes (what
    batching groups)."""
    cell = tile + 16
    image = np.zeros((2 * cell, 2 * cell, 3), np.uint8)
    truth = np.zeros((2 * cell, 2 * cell), np.int64)
    coarse = np.zeros_like(truth)
    for k, name in enumerate(names):
        y, x = (k // 2) * cell + 8, (k % 2) * cell + 8
        img, mask = _object(data_root, name, tile)
        image[y:y + tile, x:x + tile] = img
        truth[y:y + tile, x:x + tile][mask] = k + 1
        small = cv2.resize(mask.astype(np.uint8), (tile // 4, tile // 4),
                           interpolation=cv2.INTER_NEAREST)
        up = cv2.resize(small, (tile, tile), interpolation=cv2.INTER_NEAREST).astype(bool)
        coarse[y:y + tile, x:x + tile][up] = k + 1
    return image, truth, coarse


@pytest.fixture(scope='module')
def cascadepsp(cascadepsp_weights):
    # fast mode at a small L: the batching logic is that of the global step; the local step
    # runs per object either way
    return build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=96,
                              fast=True))


@pytest.fixture(scope='module')
def crm():
    return build_refiner(dict(type='CRM'))


@pytest.mark.parametrize('which', ['cascadepsp', 'crm'])
def test_batched_rois_equal_one_at_a_time(which, request, data_root):
    refiner = request.getfixturevalue(which)
    image, _, coarse = composite(data_root)
    one = refine_label_map(image, coarse, refiner, min_area=30, return_confidence=True)
    many = refine_label_map(image, coarse, refiner, min_area=30, roi_batch_size=8,
                            return_confidence=True)
    assert len(one.rois) >= 5 and one.rois == many.rois
    assert np.array_equal(one.labels, many.labels)
    assert np.abs(one.confidence - many.confidence).max() <= 1e-5
    if which == 'cascadepsp':   # same-shape global steps really ran as one forward
        stats = refiner.last_stats
        assert stats['global_batches'] < stats['objects']


def test_batched_segments_equal_one_at_a_time(cascadepsp, data_root):
    image, truth, coarse = composite(data_root)
    masks = np.stack([coarse == k for k in range(1, 5)])
    for fuse in (True, False):
        one = refine_segments(image, masks, cascadepsp, fuse=fuse, return_probs=True)
        assert len(one.rois) == 4
        many = refine_segments(image, masks, cascadepsp, fuse=fuse, return_probs=True,
                               roi_batch_size=3)
        assert np.array_equal(one.masks, many.masks)
        assert np.abs(one.probs - many.probs).max() <= 1e-5


def test_refine_batch_equals_refine(cascadepsp, data_root):
    image, mask = _object(data_root, '0003', 80)
    images = [image, image[:60], image, np.ascontiguousarray(image[:, ::-1])]
    masks = [mask, mask[:60], np.zeros_like(mask), np.ascontiguousarray(mask[:, ::-1])]
    batched = cascadepsp.refine_batch(images, masks)
    for img, m, out in zip(images, masks, batched):
        assert out.dtype == np.float32 and out.shape == m.shape
        assert np.abs(out - cascadepsp.refine(img, m)).max() <= 1e-5
    assert not batched[2].any()   # empty mask: zeros, as refine gives
    with pytest.raises(ValueError, match='2 images but 1 masks'):
        cascadepsp.refine_batch(images[:2], masks[:1])


def test_size_rule_caps_the_working_size(cascadepsp_weights, data_root):
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=400,
                                 fast=True))
    image, mask = _object(data_root, '0004', 100)
    refiner.refine(image, mask)
    assert max(refiner.last_stats['global_size']) == 400     # published: enlarged 4x
    with refiner.limit_upscale(1.5):
        capped = refiner.refine(image, mask)
        assert max(refiner.last_stats['global_size']) == 150
    assert refiner.max_upscale is None                      # the context restores it
    assert capped.shape == mask.shape
    big = np.ascontiguousarray(cv2.resize(image, (500, 500)))
    big_mask = cv2.resize(mask.astype(np.uint8), (500, 500), interpolation=cv2.INTER_NEAREST)
    with refiner.limit_upscale(1.5):                         # ROIs above L: unchanged
        refiner.refine(big, big_mask.astype(bool))
    assert max(refiner.last_stats['global_size']) == 400


def test_size_rule_through_the_label_map(cascadepsp_weights, data_root):
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=160,
                                 fast=True))
    image, _, coarse = composite(data_root)
    exact = refine_label_map(image, coarse, refiner, min_area=30)
    capped = refine_label_map(image, coarse, refiner, min_area=30, max_upscale=1.0)
    assert exact.rois == capped.rois
    assert not np.array_equal(exact.labels, capped.labels)   # the option changes numbers
    with pytest.raises(ValueError, match='max_upscale'):
        refine_label_map(image, coarse, refiner, max_upscale=0.9)


# --------------------------------------------------------------------------- the gate
def test_gate_keeps_coarse_where_refinement_disagrees(crm, data_root):
    image, truth, coarse = composite(data_root)
    plain = refine_label_map(image, coarse, crm, min_area=30)
    assert plain.gated == 0 and not np.array_equal(plain.labels, coarse)
    strict = refine_label_map(image, coarse, crm, min_area=30, gate_min_iou=1.0)
    # every ROI whose refined mask differs at all from its coarse mask is gated
    assert strict.gated > 0 and strict.gated <= len(strict.rois)
    assert np.array_equal(strict.labels, coarse) or strict.gated < len(strict.rois)
    off = refine_label_map(image, coarse, crm, min_area=30, gate_min_iou=0.0,
                           gate_min_confidence=0.0)
    assert off.gated == 0 and np.array_equal(off.labels, plain.labels)


def test_gate_everything_returns_the_input(crm, data_root):
    image, truth, coarse = composite(data_root)
    res = refine_label_map(image, coarse, crm, min_area=30, gate_min_confidence=1.0)
    assert res.gated == len(res.rois) and np.array_equal(res.labels, coarse)
    masks = np.stack([coarse == k for k in range(1, 5)])
    seg = refine_segments(image, masks, crm, fuse=False, gate_min_confidence=1.0)
    assert seg.gated == [0, 1, 2, 3] and np.array_equal(seg.masks, masks)


def test_pixel_gate_reverts_only_unconfident_changes():
    from segrefine_plugins.multiobject.refine import _gate, _revert_unconfident

    prob = np.array([[0.9, 0.6, 0.4, 0.1, 0.5, 0.7]], np.float32)
    coarse = np.array([[False, False, True, True, True, True]])
    opts = RoiOptions(gate_pixel_confidence=0.5)
    out = _revert_unconfident(opts, prob, coarse)
    # 0.9 / 0.1: confident changes stay; 0.6 / 0.4 / 0.5: weak changes go back to coarse;
    # 0.7 agrees with coarse and is untouched
    assert np.allclose(out[0, [0, 1, 2, 3, 5]], [0.9, 0.4, 0.6, 0.1, 0.7])
    assert out[0, 4] > 0.5 and prob[0, 4] == 0.5              # the input is not modified
    assert not _gate(opts, out, coarse)                        # confident changes survive
    assert _gate(opts, _revert_unconfident(RoiOptions(gate_pixel_confidence=1.0), prob, coarse),
                 coarse)                                       # nothing survives: gated
    assert _revert_unconfident(RoiOptions(), prob, coarse) is prob
    assert RoiOptions(gate_pixel_confidence=0.2).gated


def test_pixel_gate_on_a_real_composite(crm, data_root):
    image, truth, coarse = composite(data_root)
    plain = refine_label_map(image, coarse, crm, min_area=50)
    zero = refine_label_map(image, coarse, crm, min_area=50, gate_pixel_confidence=0.0)
    assert zero.gated == 0 and np.array_equal(zero.labels, plain.labels)
    half = refine_label_map(image, coarse, crm, min_area=50, gate_pixel_confidence=0.5)
    assert 0 < np.count_nonzero(half.labels != coarse) < np.count_nonzero(plain.labels != coarse)
    full = refine_label_map(image, coarse, crm, min_area=50, gate_pixel_confidence=1.0)
    assert full.gated == len(full.rois) and np.array_equal(full.labels, coarse)


def test_depth_gate_reverts_thin_slivers_and_keeps_thick_corrections():
    from segrefine_plugins.multiobject.refine import apply_gate, change_depth

    coarse = np.zeros((40, 40), bool)
    coarse[10:30, 10:30] = True
    refined = np.zeros_like(coarse)
    refined[9:29, 10:30] = True          # the square moved up 1 px: two 1-px slivers
    refined[30:37, 14:24] = True         # and a 7 x 10 px region added below it
    prob = np.where(refined, 0.8, 0.2).astype(np.float32)
    depth = change_depth(refined != coarse)
    assert depth[9, 15] == 1.0                                       # top sliver: depth 1
    # the vacated row 29 touches the added block: one region, 8 px high, depth 4
    assert depth[33, 18] == depth[29, 11] == 4.0 and depth[0, 0] == 0.0
    out, gated = apply_gate(RoiOptions(gate_min_change_depth=2), prob, coarse)
    kept = out > 0.5
    assert not gated and not kept[9].any()                           # sliver reverted
    assert kept[30:37, 14:24].all() and not kept[29].any()           # thick region whole
    assert kept[10:29, 10:30].all() and prob[9, 15] == 0.8           # input not modified
    out, gated = apply_gate(RoiOptions(gate_min_change_depth=5), prob, coarse)
    assert gated and np.array_equal(out > 0.5, coarse)               # nothing survives
    # just above 1 already reverts the depth-1 sliver, like 2 here
    np.testing.assert_array_equal(
        apply_gate(RoiOptions(gate_min_change_depth=1.01), prob, coarse)[0] > 0.5, kept)
    # an ROI the refiner left as it was is not counted as gated
    same = np.where(coarse, 0.9, 0.1).astype(np.float32)
    assert apply_gate(RoiOptions(gate_min_change_depth=5), same, coarse) == (same, False)
    for bad in (0.5, 1):                  # depth 1 would revert nothing
        with pytest.raises(ValueError, match='gate_min_change_depth'):
            RoiOptions(gate_min_change_depth=bad)
    assert RoiOptions(gate_min_change_depth=2).gated


def test_trusted_objects_keep_their_thin_changes():
    """gate_trust_change_depth: an object whose changes reach that depth keeps all of them
    (the 1-px slivers too); an object whose deepest change is shallower loses its slivers."""
    from segrefine_plugins.multiobject.refine import apply_gate

    coarse = np.zeros((40, 40), bool)
    coarse[10:30, 10:30] = True
    refined = np.zeros_like(coarse)
    refined[9:29, 10:30] = True          # two 1-px slivers (depth 1) ...
    refined[30:37, 14:24] = True         # ... and a region of depth 4 below
    prob = np.where(refined, 0.8, 0.2).astype(np.float32)
    trusted, gated = apply_gate(RoiOptions(gate_min_change_depth=2,
                                           gate_trust_change_depth=4), prob, coarse)
    assert not gated and np.array_equal(trusted, prob)               # all changes kept
    plain, _ = apply_gate(RoiOptions(gate_min_change_depth=2), prob, coarse)
    deeper, _ = apply_gate(RoiOptions(gate_min_change_depth=2,
                                      gate_trust_change_depth=4.5), prob, coarse)
    np.testing.assert_array_equal(deeper, plain)                     # 4 < 4.5: not trusted
    assert not (deeper > 0.5)[9].any() and (deeper > 0.5)[30:37, 14:24].all()
    # slivers alone (a perfect mask's jitter): nothing reaches the trust depth, all revert
    only = np.where(np.pad(coarse[1:], ((0, 1), (0, 0))), 0.8, 0.2).astype(np.float32)
    out, gated = apply_gate(RoiOptions(gate_min_change_depth=2, gate_trust_change_depth=4),
                            only, coarse)
    assert gated and np.array_equal(out > 0.5, coarse)
    with pytest.raises(ValueError, match='set gate_min_change_depth too'):
        RoiOptions(gate_trust_change_depth=4)
    # only a deep region the refiner is sure of makes the ROI trusted (|2p - 1| = 0.6 here)
    unsure, _ = apply_gate(RoiOptions(gate_min_change_depth=2, gate_trust_change_depth=4,
                                      gate_trust_min_confidence=0.7), prob, coarse)
    np.testing.assert_array_equal(unsure, plain)
    weak = prob.copy()
    weak[30:37, 14:24] = 0.6                                         # deep, |2p - 1| = 0.2
    weak_out, _ = apply_gate(RoiOptions(gate_min_change_depth=2,
                                        gate_trust_change_depth=4), weak, coarse)
    assert not (weak_out > 0.5)[9].any() and (weak_out > 0.5)[30:37, 14:24].all()
    anything, _ = apply_gate(RoiOptions(gate_min_change_depth=2, gate_trust_change_depth=4,
                                        gate_trust_min_confidence=0.0), weak, coarse)
    np.testing.assert_array_equal(anything, weak)                    # 0: any deep region
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match='gate_trust_min_confidence'):
            RoiOptions(gate_min_change_depth=2, gate_trust_change_depth=4,
                       gate_trust_min_confidence=bad)
    for bad in (0.5, 1, 1.5, 1001):      # below the depth rule's own threshold: refused
        with pytest.raises(ValueError, match='gate_trust_change_depth'):
            RoiOptions(gate_min_change_depth=2, gate_trust_change_depth=bad)
    assert RoiOptions(gate_min_change_depth=2, gate_trust_change_depth=2).gated
    # with the pixel rule first: its reverts happen before the depth rule looks
    both, _ = apply_gate(RoiOptions(gate_pixel_confidence=0.7, gate_min_change_depth=2,
                                    gate_trust_change_depth=4), prob, coarse)
    np.testing.assert_array_equal(both > 0.5, coarse)   # |2p - 1| = 0.6 < 0.7: all revert


def test_depth_gate_on_a_real_composite(crm, data_root):
    image, truth, coarse = composite(data_root)
    plain = refine_label_map(image, coarse, crm, min_area=50)
    gated = refine_label_map(image, coarse, crm, min_area=50, gate_min_change_depth=3)
    changed = np.count_nonzero(gated.labels != coarse)
    assert 0 < changed < np.count_nonzero(plain.labels != coarse)
    huge = refine_label_map(image, coarse, crm, min_area=50, gate_min_change_depth=1000)
    assert huge.gated == len(huge.rois) and np.array_equal(huge.labels, coarse)


# --------------------------------------------------------------------------- thin ROIs
def test_thin_class_is_grown_not_fatal(cascadepsp_weights):
    """A 2 x 1900 px wire at the published L=900 used to fail the whole image ('a side of
    0 px'); its ROI is now grown to a short side the resize can take."""
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=900,
                                 fast=True))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 2000, 3), dtype=np.uint8)
    labels = np.zeros((64, 2000), np.int64)
    labels[30:32, 50:1950] = 7
    labels[:, :40] = 3
    res = refine_label_map(image, labels, refiner, min_area=1000)
    boxes = dict(res.rois)
    y0, y1, x0, x1 = boxes[7]
    assert x1 - x0 >= 1900 and y1 - y0 >= 3          # grown to a short side that survives
    assert res.labels.shape == labels.shape
