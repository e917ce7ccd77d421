"""Class maps -> components -> padded ROIs (segrefine_plugins.multiobject.components)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefine_plugins.multiobject.components import (
    Roi, bounding_box, class_areas, component_masks, disk_kernel, ensure_min_size, label_map_rois,
    make_roi, pad_box, segment_rois)


def reference_components(mask: np.ndarray, kernel_size: int, min_area: int) -> list:
    """The protocol done the plain way, on the whole image: input masks as full-size arrays."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    dilated = cv2.dilate(mask.astype(np.uint8), kernel)
    count, comp = cv2.connectedComponents(dilated, connectivity=8)
    out = []
    for i in range(1, count):
        eroded = cv2.erode((comp == i).astype(np.uint8), kernel)
        if eroded.sum() <= min_area:
            continue
        inp = eroded.astype(bool) & mask
        if inp.any():
            out.append(inp)
    return out


def as_full(box, crop, shape) -> np.ndarray:
    full = np.zeros(shape, dtype=bool)
    full[box[0]:box[1], box[2]:box[3]] = crop
    return full


def random_blobs(seed: int, shape=(90, 120), count=7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    for _ in range(count):
        cy, cx = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
        axes = (int(rng.integers(1, 14)), int(rng.integers(1, 14)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('kernel_size,min_area', [(10, 0), (10, 40), (11, 0), (3, 5)])
def test_components_match_whole_image_reference(seed, kernel_size, min_area):
    mask = random_blobs(seed)
    got = [as_full(b, c, mask.shape) for b, c in component_masks(mask, kernel_size, min_area)]
    want = reference_components(mask, kernel_size, min_area)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_component_boxes_are_tight():
    mask = random_blobs(3)
    for box, crop in component_masks(mask, 10, 0):
        assert crop.shape == (box[1] - box[0], box[3] - box[2])
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()


def test_close_blobs_merge_but_gap_stays_out_of_the_mask():
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:30, 5:25] = True
    mask[10:30, 28:50] = True          # 3-px gap: bridged by the dilation
    mask[0:2, 58:60] = True            # far away, tiny
    parts = sorted(component_masks(mask, 11, 0), key=lambda p: p[1].sum())
    assert len(parts) == 2
    merged = as_full(*parts[1], mask.shape)
    assert merged[10:30, 5:25].all() and merged[10:30, 28:50].all()
    assert not merged[:, 25:28].any()  # input mask = component AND class


def test_min_area_is_strict_and_applies_to_eroded_components():
    mask = np.zeros((70, 70), dtype=bool)
    mask[15:25, 15:25] = True          # 100 px (closing a square gives the square back)
    mask[40:55, 40:55] = True          # 225 px
    assert len(list(component_masks(mask, 11, 99))) == 2
    assert len(list(component_masks(mask, 11, 100))) == 1
    assert len(list(component_masks(mask, 11, 225))) == 0


def test_even_kernel_quirk_one_pixel_vanishes_odd_kernel_keeps_it():
    mask = np.zeros((30, 30), dtype=bool)
    mask[15, 15] = True
    assert not (disk_kernel(10) == disk_kernel(10)[::-1, ::-1]).all()
    assert list(component_masks(mask, 10, 0)) == []
    (box, crop), = component_masks(mask, 11, 0)
    assert box == (15, 16, 15, 16) and crop.tolist() == [[True]]


def test_object_touching_the_border_keeps_its_extent():
    mask = np.zeros((40, 40), dtype=bool)
    mask[0:12, 0:40] = True
    (box, crop), = component_masks(mask, 10, 0)
    # the OpenCV border counts as foreground for the erosion: the top rows are kept
    assert box[0] == 0 and box[1] == 12
    assert crop[0].all()


def test_border_band_counts_towards_the_eroded_area_only():
    """OpenCV's erosion border is foreground: a blob whose dilation reaches the border keeps
    that band after the erosion (area), but its input mask is still within the blob."""
    mask = np.zeros((40, 40), dtype=bool)
    mask[3:13, 15:25] = True           # 100 px, 3 rows from the top
    (box, crop), = component_masks(mask, 11, 0)
    assert box == (3, 13, 15, 25) and crop.all()
    assert len(list(component_masks(mask, 11, 100))) == 1   # eroded area > 100


def test_bounding_box_and_pad_box():
    mask = np.zeros((100, 80), dtype=bool)
    assert bounding_box(mask) is None
    mask[20:60, 10:30] = True
    assert bounding_box(mask) == (20, 60, 10, 30)
    # h = 40 -> 5 rows each side, w = 20 -> 2 columns each side (floor of 2.5)
    assert pad_box((20, 60, 10, 30), 0.25, (100, 80)) == (15, 65, 8, 32)
    assert pad_box((20, 60, 10, 30), 0.0, (100, 80)) == (20, 60, 10, 30)
    assert pad_box((0, 100, 70, 80), 0.25, (100, 80)) == (0, 100, 69, 80)  # clipped
    with pytest.raises(ValueError):
        pad_box((20, 60, 10, 30), -0.1, (100, 80))
    with pytest.raises(ValueError):
        pad_box((20, 20, 10, 30), 0.25, (100, 80))


def test_make_roi_places_the_mask():
    crop = np.array([[True, False], [True, True]])
    roi = make_roi((10, 12, 20, 22), crop, 3, 1.0, (40, 40), index=5)
    assert roi.box == (9, 13, 19, 23) and roi.label == 3 and roi.index == 5
    np.testing.assert_array_equal(roi.mask[1:3, 1:3], crop)
    assert roi.mask.sum() == crop.sum()


def test_class_areas_small_and_large_ids():
    labels = np.array([[0, 5, 5], [200, 5, 0]], dtype=np.uint8)
    classes, areas = class_areas(labels)
    assert classes.tolist() == [0, 5, 200] and areas.tolist() == [2, 3, 1]
    labels = np.array([[-3, 70000], [70000, 2]], dtype=np.int64)
    classes, areas = class_areas(labels)
    assert classes.tolist() == [-3, 2, 70000] and areas.tolist() == [1, 1, 2]


def make_label_map() -> np.ndarray:
    labels = np.zeros((64, 80), dtype=np.uint8)      # class 0 everywhere else
    labels[5:30, 5:35] = 3
    labels[40:60, 50:78] = 3                          # class 3: two far-apart parts
    labels[35:64, 0:20] = 17                          # touches the border
    labels[0:10, 60:80] = 255                         # ignored
    labels[50:52, 30:32] = 42                         # tiny class
    return labels


def test_label_map_rois_order_ignore_min_area_and_masks():
    labels = make_label_map()
    rois = list(label_map_rois(labels, min_area=10, kernel_size=10))
    assert [r.label for r in rois] == [0, 3, 3, 17]
    for roi in rois:
        y0, y1, x0, x1 = roi.box
        assert roi.mask.any() and roi.mask.shape == (y1 - y0, x1 - x0)
        assert (labels[y0:y1, x0:x1][roi.mask] == roi.label).all()   # mask within its class
    assert 255 in {r.label for r in label_map_rois(labels, min_area=0, ignore_index=None)}
    assert [r.label for r in label_map_rois(labels, min_area=0, classes=[42, 255])] == [42]
    assert [r.label for r in label_map_rois(labels, min_area=4)] == [0, 3, 3, 17]  # 42 has 4 px
    assert list(label_map_rois(np.full((20, 20), 255, np.uint8))) == []


def test_label_map_rois_errors():
    labels = make_label_map()
    with pytest.raises(ValueError, match='integer'):
        label_map_rois(labels.astype(np.float32))
    with pytest.raises(ValueError, match='kernel_size'):
        component_masks(labels == 3, 0)
    with pytest.raises(ValueError, match='kernel_size'):
        label_map_rois(labels, kernel_size=0)
    with pytest.raises(ValueError, match='min_area'):
        label_map_rois(labels, min_area=-1)
    with pytest.raises(ValueError, match='roi_padding'):
        label_map_rois(labels, roi_padding=float('nan'))
    with pytest.raises(ValueError, match='bool'):
        component_masks(labels, 10)


def test_segment_rois_whole_or_split():
    mask = np.zeros((60, 60), dtype=bool)
    mask[5:20, 5:20] = True
    mask[40:55, 40:55] = True
    whole = list(segment_rois(mask, 7, 2))
    assert len(whole) == 1 and whole[0].label == 7 and whole[0].index == 2
    assert whole[0].mask.sum() == mask.sum()
    assert whole[0].box == pad_box((5, 55, 5, 55), 0.25, (60, 60))
    split = list(segment_rois(mask, 7, 2, split_components=True, kernel_size=11))
    assert len(split) == 2 and sum(r.mask.sum() for r in split) == mask.sum()
    assert list(segment_rois(mask, 7, min_area=int(mask.sum()))) == []
    assert list(segment_rois(np.zeros((5, 5), bool), 1)) == []


def test_ensure_min_size():
    mask = np.ones((4, 6), dtype=bool)
    roi = Roi(label=2, box=(20, 24, 30, 36), mask=mask, index=1)
    assert ensure_min_size(roi, 4, (100, 100)) is roi
    big = ensure_min_size(roi, 10, (100, 100))
    assert big.box == (17, 27, 28, 38) and big.label == 2 and big.index == 1
    assert big.mask.sum() == mask.sum() and big.mask[3:7, 2:8].all()
    # shifted to stay inside the image; the whole side where the image is too small
    near = ensure_min_size(Roi(2, (0, 4, 95, 100), np.ones((4, 5), bool)), 10, (8, 100))
    assert near.box == (0, 8, 90, 100) and near.mask[0:4, 5:10].all()
    assert near.mask.sum() == 20
    with pytest.raises(ValueError, match='min_roi_size'):
        ensure_min_size(roi, 0, (100, 100))
