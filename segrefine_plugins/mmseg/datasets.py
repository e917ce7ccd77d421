"""Binary (salient-object) segmentation sets in MMSegmentation's folder layout.

Salient-object sets (ECSSD, DUTS, BIG, ...) store ``images/NAME.jpg`` and ``masks/NAME.png``
with masks in 0..255. mmseg reads annotation PNGs as class ids (255 = ignore), so
:func:`convert_salient_pairs` writes a copy in mmseg's layout with 0/1 labels::

    OUT/img_dir/SPLIT/NAME.png    RGB image (PNG, lossless)
    OUT/ann_dir/SPLIT/NAME.png    uint8 labels: 0 background, 1 object (mask > threshold)

which mmseg's own ``BaseSegDataset`` reads (no custom dataset class needed)::

    dict(type='BaseSegDataset', data_root=OUT, img_suffix='.png', seg_map_suffix='.png',
         data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
         metainfo=dict(classes=('background', 'object')), pipeline=[...])

Command line::

    python -m segrefine_plugins.mmseg.datasets ../shared/data/ecssd work_dirs/ecssd_mmseg --limit 20
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np

from ..io import pair_files, read_image, read_mask, write_png_atomic

PathLike = Union[str, os.PathLike]


def _resize(img: np.ndarray, long_side: Optional[int], interpolation: int) -> np.ndarray:
    if long_side is None:
        return img
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=interpolation)


def convert_salient_pairs(src: PathLike, out: PathLike, split: str = 'val',
                          limit: Optional[int] = None, long_side: Optional[int] = None,
                          threshold: int = 128) -> List[str]:
    """Write ``src/images`` + ``src/masks`` pairs in mmseg's layout under ``out``.

    Args:
        src: folder with ``images/`` and ``masks/`` (paired by file stem).
        out: destination root (``img_dir/<split>``, ``ann_dir/<split>`` are created).
        split: split folder name.
        limit: keep the first ``limit`` pairs (sorted by name).
        long_side: resize so the longer side has this many pixels (image bilinear, mask
            nearest), e.g. for tiny test sets; None keeps the size.
        threshold: mask values > threshold are the object (published rule: 128 of 255).

    Returns:
        The names (stems) written, in order.

    Raises:
        ValueError: ``src`` lacks the folders or pairs, or a bad ``limit`` / ``long_side``.
    """
    src, out = Path(src), Path(out)
    if not (src / 'images').is_dir() or not (src / 'masks').is_dir():
        raise ValueError(f'{src} must contain images/ and masks/ folders')
    for name, value in (('limit', limit), ('long_side', long_side)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f'{name} must be a positive int or None, got {value!r}')
    pairs = pair_files(src / 'images', src / 'masks').pairs
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise ValueError(f'no image / mask pairs in {src}')
    img_dir, ann_dir = out / 'img_dir' / split, out / 'ann_dir' / split
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for stem, image_path, mask_path in pairs:
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f'{mask_path} is {mask.shape} but {image_path} is {image.shape[:2]}')
        labels = (mask > threshold).astype(np.uint8)
        write_png_atomic(img_dir / f'{stem}.png', _resize(image, long_side, cv2.INTER_LINEAR))
        write_png_atomic(ann_dir / f'{stem}.png', _resize(labels, long_side, cv2.INTER_NEAREST))
        names.append(stem)
    return names


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='folder with images/ and masks/')
    parser.add_argument('out', help='output root (img_dir/, ann_dir/)')
    parser.add_argument('--split', default='val')
    parser.add_argument('--limit', type=int, default=None)
    parser.add_argument('--long-side', type=int, default=None)
    args = parser.parse_args(argv)
    names = convert_salient_pairs(args.src, args.out, args.split, args.limit, args.long_side)
    print(f'wrote {len(names)} pairs to {args.out}')


if __name__ == '__main__':
    main()
