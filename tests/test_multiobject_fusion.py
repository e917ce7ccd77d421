"""The modified argmax (segrefine_plugins.multiobject.fusion)."""
from __future__ import annotations

import numpy as np
import pytest

from segrefine_plugins.multiobject.fusion import ModifiedArgmax


def test_nothing_added_keeps_labels_and_base_confidence():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    fusion = ModifiedArgmax(labels)
    out, conf = fusion.result()
    np.testing.assert_array_equal(out, labels)
    assert out is not labels and out.dtype == np.int32
    assert conf.dtype == np.float32 and (conf == 0.5).all()


def test_probability_must_exceed_running_confidence():
    labels = np.zeros((4, 4), dtype=np.uint8)
    fusion = ModifiedArgmax(labels)
    prob = np.array([[0.4, 0.5], [0.51, 1.0]], dtype=np.float32)
    fusion.add(prob, (1, 3, 1, 3), 7)
    out, conf = fusion.result()
    assert out[1:3, 1:3].tolist() == [[0, 0], [7, 7]]          # 0.5 is not > 0.5
    np.testing.assert_allclose(conf[1:3, 1:3], [[0.5, 0.5], [0.51, 1.0]])
    assert (out[0] == 0).all() and (conf[0] == 0.5).all()      # outside the box untouched
    assert labels.sum() == 0                                   # input not modified


def test_overlapping_rois_highest_wins_ties_go_to_first():
    fusion = ModifiedArgmax(np.zeros((1, 6), dtype=np.int64))
    fusion.add(np.array([[0.9, 0.7, 0.6, 0.6]], np.float32), (0, 1, 0, 4), 1)
    fusion.add(np.array([[0.8, 0.6, 0.9, 0.3]], np.float32), (0, 1, 2, 6), 2)
    out, conf = fusion.result()
    assert out.tolist() == [[1, 1, 2, 1, 2, 0]]
    np.testing.assert_allclose(conf, [[0.9, 0.7, 0.8, 0.6, 0.9, 0.5]])
    # the same ROIs in the other order: the same result except the 0.6 / 0.6 tie at pixel 3
    fusion = ModifiedArgmax(np.zeros((1, 6), dtype=np.int64))
    fusion.add(np.array([[0.8, 0.6, 0.9, 0.3]], np.float32), (0, 1, 2, 6), 2)
    fusion.add(np.array([[0.9, 0.7, 0.6, 0.6]], np.float32), (0, 1, 0, 4), 1)
    assert fusion.result()[0].tolist() == [[1, 1, 2, 2, 2, 0]]


def test_stuff_scale():
    fusion = ModifiedArgmax(np.zeros((1, 3), dtype=np.int16))
    fusion.add(np.array([[0.9, 0.99, 1.0]], np.float32), (0, 1, 0, 3), 4, scale=0.51)
    out, conf = fusion.result()
    assert out.tolist() == [[0, 4, 4]]          # 0.459 < 0.5, 0.5049 and 0.51 > 0.5
    fusion.add(np.array([[0.505, 0.505, 0.505]], np.float32), (0, 1, 0, 3), 9)
    assert fusion.result()[0].tolist() == [[9, 9, 4]]   # a thing at 0.505 beats stuff below it


def test_bad_input_raises():
    fusion = ModifiedArgmax(np.zeros((4, 4), dtype=np.uint8))
    ok = np.full((2, 2), 0.9, np.float32)
    with pytest.raises(ValueError, match='box'):
        fusion.add(ok, (3, 5, 0, 2), 1)
    with pytest.raises(ValueError, match='box size'):
        fusion.add(ok, (0, 2, 0, 3), 1)
    with pytest.raises(ValueError, match='dtype'):
        fusion.add(ok, (0, 2, 0, 2), 300)
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        fusion.add(np.full((2, 2), np.nan, np.float32), (0, 2, 0, 2), 1)
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        fusion.add(np.full((2, 2), 1.5, np.float32), (0, 2, 0, 2), 1)
    with pytest.raises(ValueError, match='float'):
        fusion.add(np.ones((2, 2), np.uint8), (0, 2, 0, 2), 1)
    with pytest.raises(ValueError, match='scale'):
        fusion.add(ok, (0, 2, 0, 2), 1, scale=0.0)
    with pytest.raises(ValueError, match='integer'):
        ModifiedArgmax(np.zeros((4, 4), dtype=np.float32))
    assert (fusion.result()[0] == 0).all()      # failed adds changed nothing
