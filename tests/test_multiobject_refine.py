"""refine_label_map / refine_segments (segrefine_plugins.multiobject.refine).

Most tests use small deterministic refiners defined here (subclasses of our own Refiner
interface): ``ColourRefiner`` gives each pixel the probability that its colour is the object's
median colour, so it moves a wrong boundary onto the true colour edge, like a real refiner
would. One test per published model runs the real refiner on a small 2-class image.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segrefine_plugins import build_refiner
from segrefine_plugins.inference.base import IMAGENET_MEAN, IMAGENET_STD, Refiner
from segrefine_plugins.multiobject import (ensure_min_size, label_map_rois, refine_label_map,
                                           refine_segments, segments_to_id_map)

COLOURS = {0: (40, 160, 40), 3: (200, 40, 40), 5: (40, 40, 200), 17: (220, 220, 60),
           200: (140, 60, 160), 255: (10, 10, 10), 9: (255, 255, 255)}


class RecordingRefiner(Refiner):
    """Records every call and fails loudly on an empty mask (the pipeline must never send one)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[Tuple[Tuple[int, int], int]] = []

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert mask.dtype == np.bool_ and mask.any(), 'empty or non-bool mask sent to refiner'
        self.calls.append((image.shape[:2], int(mask.sum())))
        return super().refine(image, mask)


class ColourRefiner(RecordingRefiner):
    """prob = exp(-|c - median colour of the mask|^2 / (2 sigma^2)), colours in [0, 1]."""

    sigma = 0.12

    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        rgb = image[0] * std + mean
        fg = rgb[:, mask_u8 > 127].median(dim=1).values.view(3, 1, 1)
        return torch.exp(-((rgb - fg) ** 2).sum(0) / (2 * self.sigma ** 2))


class BlurRefiner(RecordingRefiner):
    """prob = the mask box-blurred with a 9x9 window (soft, decreasing across edges)."""

    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        m = (mask_u8 > 127).float()[None, None]
        return F.avg_pool2d(m, 9, stride=1, padding=4, count_include_pad=False)[0, 0]


def paint(labels: np.ndarray, noise_seed: int = 0) -> np.ndarray:
    """An RGB image whose colours follow ``labels`` (plus a little noise)."""
    image = np.zeros(labels.shape + (3,), dtype=np.float32)
    for c, colour in COLOURS.items():
        image[labels == c] = colour
    rng = np.random.default_rng(noise_seed)
    image += rng.normal(0, 4, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def scene() -> np.ndarray:
    """True labels: class 0 background, 3 (a box), 5 (the bottom band, touches 3 borders)."""
    labels = np.zeros((72, 96), dtype=np.uint8)
    labels[10:40, 12:50] = 3
    labels[44:72, :] = 5
    return labels


def shifted(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """A coarse prediction: the true map shifted (the edge rows / columns repeated)."""
    out = np.roll(labels, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy] = out[dy]
    if dx > 0:
        out[:, :dx] = out[:, dx:dx + 1]
    return out


def naive_fusion(start: np.ndarray, pieces: Sequence[Tuple[int, tuple, np.ndarray, float]]):
    """The modified argmax written plainly with full-size arrays."""
    labels, conf = start.copy(), np.full(start.shape, 0.5, np.float32)
    for cls, (y0, y1, x0, x1), prob, scale in pieces:
        full = np.zeros(start.shape, np.float32)
        full[y0:y1, x0:x1] = prob.astype(np.float32) * np.float32(scale)
        win = full > conf
        labels[win], conf[win] = cls, full[win]
    return labels, conf


# ----------------------------------------------------------------------------- label maps
def test_no_objects_returns_an_unchanged_copy():
    refiner = ColourRefiner()
    labels = np.full((40, 50), 255, np.uint8)
    res = refine_label_map(paint(labels), labels, refiner, return_confidence=True)
    assert res.labels is not labels and (res.labels == 255).all() and res.rois == []
    assert (res.confidence == 0.5).all() and refiner.calls == []
    labels = scene()           # every class is <= min_area pixels of a tiny threshold image
    res = refine_label_map(paint(labels), labels, refiner, min_area=labels.size)
    np.testing.assert_array_equal(res.labels, labels)
    assert res.confidence is None and refiner.calls == []


def test_shifted_boundaries_are_corrected():
    truth = scene()
    coarse = shifted(truth, 2, 2)
    refiner = ColourRefiner()
    res = refine_label_map(paint(truth), coarse, refiner, min_area=100, return_confidence=True)
    before, after = int((coarse != truth).sum()), int((res.labels != truth).sum())
    assert before > 400 and after <= before // 20
    assert res.labels.dtype == np.uint8
    assert sorted({c for c, _ in res.rois}) == [0, 3, 5]
    assert len(refiner.calls) == len(res.rois)
    assert res.confidence.dtype == np.float32 and res.confidence.min() >= 0.5


def test_class_touching_the_border_is_refined_in_a_clipped_roi():
    truth = scene()                       # class 5 touches left, right and bottom borders
    coarse = shifted(truth, -4, 0)        # too high by 4 rows: 5 must give rows back to 0
    coarse[-4:] = 5
    res = refine_label_map(paint(truth), coarse, ColourRefiner(), min_area=100)
    (box,) = [b for c, b in res.rois if c == 5]
    assert box[1] == 72 and box[2] == 0 and box[3] == 96
    np.testing.assert_array_equal(res.labels[40:72], truth[40:72])


def test_overlapping_rois_follow_the_modified_argmax():
    labels = np.zeros((60, 60), dtype=np.int32)
    labels[:, 30:] = 3                    # two halves: their padded ROIs overlap
    refiner = BlurRefiner()
    res = refine_label_map(paint(labels), labels, refiner, min_area=10, return_confidence=True)
    (b0,), (b3,) = [[b for c, b in res.rois if c == k] for k in (0, 3)]
    assert b0[3] > b3[2]                  # the ROIs overlap
    image = paint(labels)
    pieces = [(roi.label, roi.box, BlurRefiner().refine(
        image[roi.box[0]:roi.box[1], roi.box[2]:roi.box[3]], roi.mask), 1.0)
        for roi in label_map_rois(labels, min_area=10)]
    want_labels, want_conf = naive_fusion(labels, pieces)
    np.testing.assert_array_equal(res.labels, want_labels)
    np.testing.assert_allclose(res.confidence, want_conf, atol=1e-6)


def test_one_pixel_class():
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[20, 20] = 9
    image = paint(labels)
    # the published even kernel erodes a one-pixel component away: 9 is never refined ...
    res = refine_label_map(image, labels, ColourRefiner(), min_area=0)
    assert [c for c, _ in res.rois] == [0] and res.labels[20, 20] == 9   # ... 0 does not want it
    # with an odd (symmetric) kernel it is refined in a 1x1 ROI and keeps its pixel
    refiner = ColourRefiner()
    res = refine_label_map(image, labels, refiner, min_area=0, kernel_size=11)
    assert (9, (20, 21, 20, 21)) in res.rois and ((1, 1), 1) in refiner.calls
    np.testing.assert_array_equal(res.labels, labels)
    # a one-pixel class with its neighbour's colour is claimed by the refined neighbour
    res = refine_label_map(paint(np.zeros_like(labels)), labels, ColourRefiner(), min_area=0)
    assert (res.labels == 0).all()


def test_ignore_index():
    truth = scene()
    truth[0:8, 60:96] = 255
    coarse = shifted(truth, 2, 2)
    res = refine_label_map(paint(truth), coarse, ColourRefiner(), min_area=50)
    assert 255 not in {c for c, _ in res.rois}
    # ignored pixels with their own colour stay ignored; refined classes do not take them
    np.testing.assert_array_equal(res.labels[2:8, 62:96], coarse[2:8, 62:96])
    res = refine_label_map(paint(truth), coarse, ColourRefiner(), min_area=50,
                           ignore_index=None)
    assert 255 in {c for c, _ in res.rois}
    assert int((res.labels != truth).sum()) < int((coarse != truth).sum()) // 10


def test_class_ids_with_gaps_and_dtypes():
    truth = scene()
    truth[10:40, 60:90] = 200
    truth[45:52, 0:30] = 17
    coarse = shifted(truth, 2, -3)
    res = refine_label_map(paint(truth), coarse, ColourRefiner(), min_area=50)
    assert set(np.unique(res.labels)) <= {0, 3, 5, 17, 200}
    assert int((res.labels != truth).sum()) < int((coarse != truth).sum()) // 10
    # the same map as int64 with negative ids and ignore -1
    remap = {0: -5, 3: 3, 5: 1000, 17: 17, 200: -1}
    coarse64 = np.vectorize(remap.get)(coarse).astype(np.int64)
    res64 = refine_label_map(paint(truth), coarse64, ColourRefiner(), min_area=50,
                             ignore_index=-1)
    assert res64.labels.dtype == np.int64 and -1 not in {c for c, _ in res64.rois}
    assert set(np.unique(res64.labels)) <= set(remap.values())


def test_classes_and_stuff_options():
    truth = scene()
    coarse = shifted(truth, 2, 2)
    image = paint(truth)
    res = refine_label_map(image, coarse, ColourRefiner(), min_area=100, classes=[3, 42])
    assert {c for c, _ in res.rois} == {3}
    changed = res.labels != coarse
    assert changed.any() and ((res.labels[changed] == 3) | (coarse[changed] == 3)).all()
    res = refine_label_map(image, coarse, ColourRefiner(), min_area=100, stuff_classes=[0],
                           return_confidence=True)
    won_by_0 = (res.labels == 0) & (res.confidence > 0.5)
    assert won_by_0.any() and res.confidence[won_by_0].max() <= 0.51 + 1e-6
    with pytest.raises(ValueError, match='stuff_scale'):
        refine_label_map(image, coarse, ColourRefiner(), stuff_scale=0)


def test_deterministic():
    truth = scene()
    coarse = shifted(truth, 2, 2)
    a = refine_label_map(paint(truth), coarse, ColourRefiner(), min_area=100,
                         return_confidence=True)
    b = refine_label_map(paint(truth), coarse, ColourRefiner(), min_area=100,
                         return_confidence=True)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    assert a.rois == b.rois


class MaskEchoRefiner(Refiner):
    """prob = the coarse mask it was given, as 0..1 (records the uint8 masks)."""

    def __init__(self) -> None:
        super().__init__(soft_input=True)
        self.masks: List[np.ndarray] = []

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.masks.append(np.array(mask))
        return super().refine(image, mask)

    def _refine(self, image: torch.Tensor, mask_u8: torch.Tensor) -> torch.Tensor:
        return mask_u8.float() / 255.0


def assert_soft_inputs(rois, masks, probs):
    """The refiner got ``round(255 p)`` of map ``probs[k]`` wherever an ROI ``(k, box)``'s
    mask is set, and soft values, not 0 / 255."""
    for (k, (y0, y1, x0, x1)), mask in zip(rois, masks):
        assert mask.dtype == np.uint8
        want = np.rint(probs[k, y0:y1, x0:x1] * 255).astype(np.uint8)
        inside = mask > 0
        np.testing.assert_array_equal(mask[inside], want[inside])
        assert len(np.unique(mask)) > 3


def test_label_map_soft_coarse_probabilities():
    labels = scene()
    image = paint(labels)
    probs = np.zeros((6,) + labels.shape, np.float32)
    for c in (0, 3, 5):
        probs[c] = cv2.GaussianBlur((labels == c).astype(np.float32), (7, 7), 2)
    probs /= probs.sum(0, keepdims=True)
    refiner = MaskEchoRefiner()
    res = refine_label_map(image, labels, refiner, probs=probs, min_area=0)
    hard = refine_label_map(image, labels, MaskEchoRefiner(), min_area=0)
    assert [r[0] for r in res.rois] == [0, 3, 5] and res.rois == hard.rois
    assert_soft_inputs(res.rois, refiner.masks, probs)
    # probs of the wrong size / kind are refused with a clear message
    with pytest.raises(ValueError, match='differs'):
        refine_label_map(image, labels, refiner, probs=probs[:, :-1])
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        refine_label_map(image, labels, refiner, probs=probs * 2)
    with pytest.raises(ValueError, match='float'):
        refine_label_map(image, labels, refiner, probs=(probs * 255).astype(np.uint8))
    with pytest.raises(ValueError, match='no probability map'):
        refine_label_map(image, labels, refiner, probs=probs[:4], min_area=0)
    # a class whose probability stays <= 0.5 in its ROI (the argmax of a multi-class softmax
    # may win below 0.5): its hard mask, not an input the refiner would call empty
    low = probs.copy()
    low[3] = np.minimum(low[3], 0.45)
    low_refiner, hard_refiner = MaskEchoRefiner(), MaskEchoRefiner()
    out = refine_label_map(image, labels, low_refiner, probs=low, min_area=0)
    hard = refine_label_map(image, labels, hard_refiner, min_area=0)
    i = [r[0] for r in out.rois].index(3)
    np.testing.assert_array_equal(low_refiner.masks[i], hard_refiner.masks[i])
    assert (out.labels == 3).any() and (hard.labels == 3).any()


def test_segments_soft_masks_probabilities():
    labels = scene()
    image = paint(labels)
    masks = np.stack([labels == 3, labels == 5])
    soft = np.stack([cv2.GaussianBlur(m.astype(np.float32), (7, 7), 2) for m in masks])
    refiner = MaskEchoRefiner()
    res = refine_segments(image, masks, refiner, soft_masks=soft)
    hard = refine_segments(image, masks, MaskEchoRefiner())
    assert res.rois == hard.rois and len(refiner.masks) == 2
    assert_soft_inputs(res.rois, refiner.masks, soft)
    assert not np.array_equal(res.confidence, hard.confidence)   # soft values reached the fusion
    with pytest.raises(ValueError, match='soft_masks'):
        refine_segments(image, masks, refiner, soft_masks=soft[:1])
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        refine_segments(image, masks, refiner, soft_masks=soft * 2)
    empty = np.zeros((0,) + labels.shape, dtype=bool)
    out = refine_segments(image, empty, refiner, soft_masks=np.zeros(empty.shape, np.float32))
    assert out.rois == []


def test_segments_soft_masks_list_with_hard_entries():
    """A list of per-segment maps: None entries give that segment's hard mask (bool, as
    without soft input), float entries their probabilities; nothing else changes."""
    labels = scene()
    image = paint(labels)
    masks = np.stack([labels == 3, labels == 5])
    soft = cv2.GaussianBlur(masks[1].astype(np.float32), (7, 7), 2)
    refiner, hard_refiner = MaskEchoRefiner(), MaskEchoRefiner()
    res = refine_segments(image, masks, refiner, soft_masks=[None, soft])
    hard = refine_segments(image, masks, hard_refiner)
    assert res.rois == hard.rois and len(refiner.masks) == 2
    np.testing.assert_array_equal(refiner.masks[0], hard_refiner.masks[0])  # segment 0: hard
    assert_soft_inputs(res.rois[1:], refiner.masks[1:], np.stack([soft, soft]))
    # all-None: the hard result exactly
    none = refine_segments(image, masks, MaskEchoRefiner(), soft_masks=[None, None])
    np.testing.assert_array_equal(none.id_map, hard.id_map)
    np.testing.assert_array_equal(none.confidence, hard.confidence)
    # a tuple works as a list
    tup = refine_segments(image, masks, MaskEchoRefiner(), soft_masks=(None, soft))
    np.testing.assert_array_equal(tup.confidence, res.confidence)
    # a soft map with nothing above 0.5 in the ROI (a multi-class softmax whose winner is
    # below 0.5): the hard mask, not an "empty" input the refiner would answer with zeros
    low_refiner = MaskEchoRefiner()
    low = refine_segments(image, masks, low_refiner, soft_masks=[None, soft * 0.4])
    np.testing.assert_array_equal(low_refiner.masks[1], hard_refiner.masks[1])
    np.testing.assert_array_equal(low.id_map, hard.id_map)
    with pytest.raises(ValueError, match='1 entries for 2 masks'):
        refine_segments(image, masks, refiner, soft_masks=[soft])
    with pytest.raises(ValueError, match=r'probs\[1\] .*differs'):
        refine_segments(image, masks, refiner, soft_masks=[None, soft[:-1]])
    with pytest.raises(ValueError, match=r'probs\[0\] must be finite'):
        refine_segments(image, masks, refiner, soft_masks=[soft * np.nan, None])
    with pytest.raises(ValueError, match=r'\(H, W\) float'):
        refine_segments(image, masks, refiner, soft_masks=[soft[None], None])


def test_label_map_bad_input():
    labels = scene()
    image = paint(labels)
    refiner = ColourRefiner()
    with pytest.raises(ValueError, match='integer'):
        refine_label_map(image, labels.astype(np.float32), refiner)
    with pytest.raises(ValueError, match='integer'):
        refine_label_map(image, labels.astype(bool), refiner)
    with pytest.raises(ValueError, match='differs'):
        refine_label_map(image, labels[:-1], refiner)
    with pytest.raises(ValueError, match='uint8'):
        refine_label_map(image.astype(np.float32), labels, refiner)
    with pytest.raises(ValueError, match='refiner'):
        refine_label_map(image, labels, object())
    with pytest.raises(ValueError, match='min_area'):
        refine_label_map(image, labels, refiner, min_area=-1)


class MinSizeRefiner(BlurRefiner):
    """A refiner with a minimum input size (like CRM's reflect padding)."""

    min_input_size = 24

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if min(image.shape[:2]) < self.min_input_size:
            raise ValueError(f'input {image.shape[:2]} below {self.min_input_size} px')
        return super().refine(image, mask)


def test_min_roi_size_grows_small_rois():
    labels = np.zeros((60, 80), dtype=np.uint8)
    labels[30:36, 10:70] = 3                      # a thin strip: its ROI is 7 rows high
    image = paint(labels)
    plain = refine_label_map(image, labels, BlurRefiner(), min_area=50)
    (box,) = [b for c, b in plain.rois if c == 3]
    assert box[1] - box[0] < 24
    refiner = MinSizeRefiner()                    # its min_input_size is used by default
    res = refine_label_map(image, labels, refiner, min_area=50)
    (box,) = [b for c, b in res.rois if c == 3]
    assert box[1] - box[0] == 24 and box[2:] == plain.rois[1][1][2:]
    assert min(min(shape) for shape, _ in refiner.calls) >= 24
    res = refine_label_map(image, labels, BlurRefiner(), min_area=50, min_roi_size=40)
    assert all(b[1] - b[0] >= 40 and b[3] - b[2] >= 40 for _, b in res.rois)
    seg = refine_segments(image, (labels == 3)[None], MinSizeRefiner())
    assert seg.rois[0][1][1] - seg.rois[0][1][0] == 24
    with pytest.raises(ValueError, match='min_roi_size'):
        refine_label_map(image, labels, BlurRefiner(), min_roi_size=0)


def test_rois_of_an_image_below_the_refiner_minimum_pass_through_unrefined():
    """An image side below the refiner's minimum cannot be grown to: its ROIs keep their
    input labels (counted in ``unrefined``) instead of failing the whole call; ROIs the
    refiner can take are still refined. The real CRM (33 px minimum) included."""
    labels = np.zeros((20, 90), dtype=np.uint8)
    labels[4:16, 10:40] = 3
    image = paint(labels)
    for refiner in (MinSizeRefiner(), build_refiner(dict(type='CRM'), device='cpu')):
        res = refine_label_map(image, labels, refiner, min_area=50)
        np.testing.assert_array_equal(res.labels, labels)
        assert res.unrefined == 2 and res.rois == [] and res.gated == 0
        seg = refine_segments(image, (labels == 3)[None], refiner, fuse=False)
        np.testing.assert_array_equal(seg.masks[0], labels == 3)
        assert seg.unrefined == [0] and seg.gated == []
        fused = refine_segments(image, (labels == 3)[None], refiner)
        np.testing.assert_array_equal(fused.masks[0], labels == 3)
    tall = np.zeros((60, 90), dtype=np.uint8)          # tall enough: refined as before
    tall[20:40, 10:40] = 3
    res = refine_label_map(paint(tall), tall, MinSizeRefiner(), min_area=50)
    assert res.unrefined == 0 and len(res.rois) == 2
    # an explicit min_roi_size below the refiner's minimum is the caller's error: the
    # refiner still refuses (the ROI could have been grown), nothing passes silently
    with pytest.raises(ValueError, match='below 24'):
        refine_label_map(paint(tall), tall, MinSizeRefiner(), min_area=50, min_roi_size=8)


# ----------------------------------------------------------------------------- segments
def instances() -> Tuple[np.ndarray, np.ndarray]:
    """True labels with two objects (3, 17) on background 0, and their coarse masks."""
    truth = np.zeros((64, 80), dtype=np.uint8)
    truth[8:30, 10:40] = 3
    truth[30:56, 44:72] = 17
    coarse = shifted(truth, 3, 3)
    return truth, np.stack([coarse == 3, coarse == 17])


def test_segments_fused_into_an_id_map():
    truth, masks = instances()
    image = paint(truth)
    res = refine_segments(image, masks, ColourRefiner(), ids=[7, 9],
                          fallback=np.zeros(truth.shape, np.int64))
    want = np.select([truth == 3, truth == 17], [7, 9], 0)
    before = segments_to_id_map(masks, [7, 9])
    assert res.id_map.dtype == np.int64 and res.ids == [7, 9]
    assert int((res.id_map != want).sum()) <= int((before != want).sum()) // 10
    np.testing.assert_array_equal(res.masks, np.stack([res.id_map == 7, res.id_map == 9]))
    assert [i for i, _ in res.rois] == [0, 1] and res.probs is None
    # the default fallback (the input id map) lets segments grow but not shrink
    grown = refine_segments(image, masks, ColourRefiner(), ids=[7, 9])
    assert (grown.id_map[before == 7] == 7).all()


def test_segments_fused_stuff_scale_matches_naive_fusion():
    truth, masks = instances()
    image = paint(truth)
    res = refine_segments(image, masks, BlurRefiner(), is_stuff=[True, False], roi_padding=0.5)
    pieces = []
    for (i, box), scale in zip(res.rois, (0.51, 1.0)):
        y0, y1, x0, x1 = box
        pieces.append((i + 1, box, BlurRefiner().refine(image[y0:y1, x0:x1],
                                                         masks[i][y0:y1, x0:x1]), scale))
    want_ids, want_conf = naive_fusion(segments_to_id_map(masks, [1, 2]), pieces)
    np.testing.assert_array_equal(res.id_map, want_ids)
    np.testing.assert_allclose(res.confidence, want_conf, atol=1e-6)


def test_segments_separately():
    truth, masks = instances()
    overlap = masks.copy()
    overlap[1, 20:40, 20:50] = True      # instances may overlap when not fused
    res = refine_segments(paint(truth), overlap, ColourRefiner(), fuse=False, return_probs=True)
    assert res.id_map is None and res.masks.shape == overlap.shape
    assert int((res.masks[0] != (truth == 3)).sum()) < int((overlap[0] != (truth == 3)).sum()) // 5
    assert res.probs.shape == overlap.shape and res.probs.dtype == np.float32
    y0, y1, x0, x1 = res.rois[0][1]
    outside = np.ones(truth.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert (res.probs[0][outside] == 0).all()
    # a skipped segment (min_area) keeps its input mask
    res = refine_segments(paint(truth), overlap, ColourRefiner(), fuse=False,
                          min_area=int(overlap[0].sum()))
    np.testing.assert_array_equal(res.masks[0], overlap[0])
    assert [i for i, _ in res.rois] == [1]


def test_segments_default_fallback_earlier_mask_wins():
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 4:8, 4:8] = True
    id_map = segments_to_id_map(masks, [4, 8], background_id=-1)
    assert id_map[5, 5] == 4 and id_map[7, 7] == 8 and id_map[0, 0] == -1


def test_segments_split_components_and_no_segments():
    truth, masks = instances()
    both = np.zeros(truth.shape, dtype=bool)
    both[5:25, 5:30] = True
    both[40:60, 50:75] = True
    res = refine_segments(paint(truth), both[None], ColourRefiner(), split_components=True,
                          kernel_size=11, min_area=20)
    assert len(res.rois) == 2 and {i for i, _ in res.rois} == {0}
    empty = refine_segments(paint(truth), np.zeros((0,) + truth.shape, bool), ColourRefiner())
    assert (empty.id_map == 0).all() and empty.masks.shape == (0,) + truth.shape
    assert empty.rois == []


def test_segments_bad_input():
    truth, masks = instances()
    image = paint(truth)
    refiner = ColourRefiner()
    with pytest.raises(ValueError, match='bool'):
        refine_segments(image, masks.astype(np.uint8), refiner)
    with pytest.raises(ValueError, match=r'\(N, H, W\)'):
        refine_segments(image, masks[0], refiner)
    with pytest.raises(ValueError, match='distinct'):
        refine_segments(image, masks, refiner, ids=[3, 3])
    with pytest.raises(ValueError, match='background_id'):
        refine_segments(image, masks, refiner, ids=[0, 3])
    with pytest.raises(ValueError, match='entries'):
        refine_segments(image, masks, refiner, is_stuff=[True])
    with pytest.raises(ValueError, match='fallback'):
        refine_segments(image, masks, refiner, fallback=np.zeros((5, 5), np.int64))
    with pytest.raises(ValueError, match='differs'):
        refine_segments(image, masks[:, :-1], refiner)
    with pytest.raises(ValueError, match='min_area'):
        refine_segments(image, masks[:0], refiner, min_area=-1)    # checked even with N = 0


# ----------------------------------------------------------------------------- real refiners
class Recorder:
    """Wraps a refiner (duck-typed: only ``.refine`` is needed) and keeps what it returned."""

    def __init__(self, refiner: Refiner) -> None:
        self.refiner = refiner
        self.outputs: List[Tuple[np.ndarray, np.ndarray]] = []

    def refine(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        prob = self.refiner.refine(image, mask)
        self.outputs.append((mask.copy(), prob.copy()))
        return prob


def real_refiner(name: str, request, **kwargs) -> Refiner:
    """The published model with the golden synthetic weights."""
    checkpoint = request.getfixturevalue(f'{name.lower()}_weights')
    return build_refiner(dict(type=name, checkpoint=str(checkpoint), **kwargs))


@pytest.mark.slow
@pytest.mark.parametrize('name,kwargs,min_roi_size', [
    ('CascadePSP', dict(L=80, fast=True), None),
    ('CRM', {}, 33),                         # CRM reflect-pads 32 px: inputs must be > 32 px
])
def test_real_refiner_on_a_two_class_image(name, kwargs, min_roi_size, request):
    recorder = Recorder(real_refiner(name, request, **kwargs))
    truth = np.zeros((40, 48), dtype=np.uint8)
    truth[14:30, 8:40] = 3                   # 16 rows: its ROI is grown for CRM
    coarse = shifted(truth, 2, 2)
    image = paint(truth)
    res = refine_label_map(image, coarse, recorder, min_area=50, return_confidence=True,
                           min_roi_size=min_roi_size)
    assert [c for c, _ in res.rois] == [0, 3] and len(recorder.outputs) == 2
    assert res.labels.shape == truth.shape and res.labels.dtype == np.uint8
    assert set(np.unique(res.labels)) <= {0, 3}
    pieces = []
    for roi, (mask, prob) in zip(label_map_rois(coarse, min_area=50), recorder.outputs):
        roi = ensure_min_size(roi, min_roi_size or 1, truth.shape)
        np.testing.assert_array_equal(mask, roi.mask)
        assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
        assert 0 < prob.mean() < 1                       # a real, non-constant answer
        pieces.append((roi.label, roi.box, prob, 1.0))
    want_labels, want_conf = naive_fusion(coarse, pieces)
    np.testing.assert_array_equal(res.labels, want_labels)
    np.testing.assert_allclose(res.confidence, want_conf, atol=1e-6)


def test_segment_and_class_ids_must_be_int64_integers():
    """Float ids were truncated (1.7 -> 1), ids beyond int64 overflowed with a raw error and
    uint64 label ids >= 2**63 wrapped negative: all are clear ValueErrors now."""
    truth, masks = instances()
    image = paint(truth)
    for ids, match in (([1.7, 2.2], 'must be integers'), ([True, 2], 'must be integers'),
                       (np.array([2 ** 63 + 1, 5], np.uint64), 'fit in int64')):
        with pytest.raises(ValueError, match=match):
            refine_segments(image, masks, BlurRefiner(), ids=ids)
        with pytest.raises(ValueError, match=match):
            segments_to_id_map(masks, ids)
    ok = refine_segments(image, masks, BlurRefiner(), ids=np.array([4, 6], np.uint64))
    assert ok.ids == [4, 6] and set(np.unique(ok.id_map)) <= {0, 4, 6}
    big = truth.astype(np.uint64)
    big[truth == 17] = 2 ** 63 + 5
    with pytest.raises(ValueError, match='beyond int64'):
        refine_label_map(image, big, BlurRefiner())
    with pytest.raises(ValueError, match='entries for 2 masks'):
        segments_to_id_map(masks, [1])


def test_soft_inputs_need_a_soft_refiner():
    """probs= / soft_masks= with a refiner that binarises its input (no soft_input) would
    swap the labels' masks for the probabilities' 0.5 threshold (uniform 0.5 made a class
    vanish): refused, as the adapters do; all-None soft maps are no soft input."""
    labels = scene()
    image = paint(labels)
    probs = np.full((6,) + labels.shape, 0.5, np.float32)
    with pytest.raises(ValueError, match='soft_input=True'):
        refine_label_map(image, labels, BlurRefiner(), probs=probs, min_area=0)
    truth, masks = instances()
    with pytest.raises(ValueError, match='soft_input=True'):
        refine_segments(paint(truth), masks, BlurRefiner(), soft_masks=masks.astype(np.float32))
    with pytest.raises(ValueError, match='soft_input=True'):
        refine_segments(paint(truth), masks, BlurRefiner(),
                        soft_masks=[None, masks[1].astype(np.float32)])
    plain = refine_segments(paint(truth), masks, BlurRefiner())
    none = refine_segments(paint(truth), masks, BlurRefiner(), soft_masks=[None, None])
    np.testing.assert_array_equal(none.id_map, plain.id_map)
