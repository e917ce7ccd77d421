"""Salient-object pairs converted to mmseg's folder layout and read by mmseg's BaseSegDataset."""
from __future__ import annotations

import numpy as np
import pytest

from _mmseg_support import build_dataset

from segrefine_plugins.io import read_image, read_mask  # noqa: E402
from segrefine_plugins.mmseg.datasets import convert_salient_pairs, main  # noqa: E402

pytestmark = pytest.mark.mmseg


def test_converted_pairs_load_in_mmseg(data_root, tmp_path):
    src = data_root / 'ecssd'
    names = convert_salient_pairs(src, tmp_path / 'set', limit=3)
    assert names == ['0001', '0002', '0003']
    for name in names:
        image = read_image(tmp_path / 'set' / 'img_dir' / 'val' / f'{name}.png')
        labels = read_mask(tmp_path / 'set' / 'ann_dir' / 'val' / f'{name}.png')
        np.testing.assert_array_equal(image, read_image(src / 'images' / f'{name}.jpg'))
        np.testing.assert_array_equal(labels, read_mask(src / 'masks' / f'{name}.png') > 128)
    dataset = build_dataset(dict(
        type='BaseSegDataset', data_root=str(tmp_path / 'set'), img_suffix='.png',
        seg_map_suffix='.png', metainfo=dict(classes=('background', 'object')),
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')]))
    assert len(dataset) == 3
    sample = dataset[0]['data_samples']
    gt = sample.gt_sem_seg.data.squeeze(0).numpy()
    assert set(np.unique(gt)) == {0, 1}
    assert gt.shape == tuple(sample.metainfo['ori_shape'])


def test_resized_copy_and_command_line(data_root, tmp_path, capsys):
    main([str(data_root / 'ecssd'), str(tmp_path / 'small'), '--limit', '2', '--long-side', '64',
          '--split', 'test'])
    assert 'wrote 2 pairs' in capsys.readouterr().out
    image = read_image(tmp_path / 'small' / 'img_dir' / 'test' / '0001.png')
    labels = read_mask(tmp_path / 'small' / 'ann_dir' / 'test' / '0001.png')
    assert max(image.shape[:2]) == 64 and labels.shape == image.shape[:2]
    assert set(np.unique(labels)) <= {0, 1}


@pytest.mark.parametrize('kwargs, match', [(dict(limit=0), 'limit'),
                                           (dict(long_side=-5), 'long_side')])
def test_bad_arguments(data_root, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        convert_salient_pairs(data_root / 'ecssd', tmp_path / 'x', **kwargs)
    with pytest.raises(ValueError, match='images/ and masks/'):
        convert_salient_pairs(tmp_path, tmp_path / 'y')
