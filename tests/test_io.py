"""segrefine_plugins.io: conversions, corrupt files, atomic PNG writes, pairing by name."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from segrefine_plugins import SAMPLES_DIR, io as sio
from segrefine_plugins.io import (ImageReadError, pair_files, read_image, read_label_map,
                                  read_mask, to_mask_uint8, to_rgb_uint8, write_png_atomic)


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)


def _imwrite(path, array):
    assert cv2.imwrite(str(path), array)
    return path


# ------------------------------------------------------------------ reading images
def test_read_image_gives_rgb(tmp_path, rgb):
    path = _imwrite(tmp_path / 'a.png', rgb[:, :, ::-1])      # OpenCV stores BGR
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3) and out.flags['C_CONTIGUOUS']
    assert np.array_equal(out, rgb)


def test_read_image_gray_is_replicated(tmp_path, rgb):
    gray = rgb[:, :, 0]
    out = read_image(_imwrite(tmp_path / 'g.png', gray))
    assert out.shape == (7, 9, 3)
    assert all(np.array_equal(out[:, :, c], gray) for c in range(3))


def test_read_image_rgba_drops_alpha(tmp_path, rgb):
    bgra = np.dstack([rgb[:, :, ::-1], np.full((7, 9), 40, np.uint8)])
    out = read_image(_imwrite(tmp_path / 'a.png', bgra))
    assert np.array_equal(out, rgb)                          # not composited


def test_read_image_16bit_takes_the_high_byte(tmp_path, rgb):
    deep = rgb.astype(np.uint16) * 257 + 3                    # high byte = rgb
    out = read_image(_imwrite(tmp_path / 'd.png', deep[:, :, ::-1].copy()))
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    out = read_image(_imwrite(tmp_path / 'dg.png', deep[:, :, 0].copy()))
    assert np.array_equal(out[:, :, 2], rgb[:, :, 0])


def test_real_jpeg_reads(data_root):
    img = read_image(data_root / 'ecssd' / 'images' / '0001.jpg')
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


# ------------------------------------------------------------------ bad files
@pytest.mark.parametrize('content', [b'', b'not an image at all' * 20, b'\x89PNG\r\n\x1a\n' + b'\0' * 50])
def test_corrupt_files_raise_naming_the_file(tmp_path, content):
    path = tmp_path / 'broken.png'
    path.write_bytes(content)
    for reader in (read_image, read_mask):
        with pytest.raises(ImageReadError, match='broken.png'):
            reader(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ImageReadError, match='nope.jpg'):
        read_image(tmp_path / 'nope.jpg')
    assert issubclass(ImageReadError, ValueError)


def test_truncated_jpeg_is_rejected(tmp_path, data_root):
    data = (data_root / 'ecssd' / 'images' / '0002.jpg').read_bytes()
    assert not sio._jpeg_is_truncated(data)
    assert not sio._jpeg_is_truncated(data + b'trailing bytes after the end marker')
    for frac in (0.3, 0.8, 0.999):
        cut = data[:int(len(data) * frac)]
        # OpenCV builds differ on whether they decode a truncated JPEG; the reader does not
        assert sio._jpeg_is_truncated(cut)
        path = tmp_path / f'cut{frac}.jpg'
        path.write_bytes(cut)
        with pytest.raises(ImageReadError, match=f'cut{frac}.jpg'):
            read_image(path)


def test_unsupported_depth_file_raises(tmp_path):
    path = tmp_path / 'f.tiff'
    assert cv2.imwrite(str(path), np.full((4, 4), 0.5, np.float32))
    with pytest.raises(ImageReadError, match='float32'):
        read_image(path)


# ------------------------------------------------------------------ array conversions
def test_to_rgb_uint8_rules(rgb):
    assert to_rgb_uint8(rgb) is rgb
    assert np.array_equal(to_rgb_uint8(rgb[:, :, :1]), np.repeat(rgb[:, :, :1], 3, 2))
    assert np.array_equal(to_rgb_uint8(np.dstack([rgb, rgb[:, :, :1]])), rgb)
    assert np.array_equal(to_rgb_uint8(np.dstack([rgb[:, :, 0], rgb[:, :, 1]])),
                          np.repeat(rgb[:, :, :1], 3, 2))
    assert np.array_equal(to_rgb_uint8(rgb.astype(np.uint16) << 8), rgb)
    for bad, match in [(rgb.astype(np.float32), 'float32'), (rgb > 5, 'bool'),
                       (np.zeros((4, 4, 5), np.uint8), 'shape'), (np.zeros((0, 4, 3), np.uint8), 'empty'),
                       ('image.png', 'numpy')]:
        with pytest.raises(ValueError, match=match):
            to_rgb_uint8(bad)


def test_to_mask_uint8_rules():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    assert to_mask_uint8(gray) is gray
    opaque = np.full((5, 6), 255, np.uint8)
    soft = rng.integers(0, 255, (5, 6), dtype=np.uint8)
    bgr = np.dstack([gray, gray, gray])
    assert np.array_equal(to_mask_uint8(np.dstack([bgr, soft])), soft)      # alpha in use
    assert np.array_equal(to_mask_uint8(np.dstack([bgr, opaque])), gray)    # opaque: gray
    assert np.array_equal(to_mask_uint8(bgr), gray)
    assert np.array_equal(to_mask_uint8(np.dstack([gray, soft])), soft)
    assert np.array_equal(to_mask_uint8(np.dstack([gray, opaque])), gray)
    assert np.array_equal(to_mask_uint8(gray.astype(np.uint16) * 256), gray)
    with pytest.raises(ValueError, match='float'):
        to_mask_uint8(gray / 255.0)


def test_read_mask_rgba_and_16bit(tmp_path):
    gray = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (3, 1))
    alpha = gray[::-1, ::-1].copy()
    assert np.array_equal(read_mask(_imwrite(tmp_path / 'a.png', np.dstack([gray] * 3 + [alpha]))),
                          alpha)
    opaque = np.full_like(gray, 255)
    assert np.array_equal(read_mask(_imwrite(tmp_path / 'o.png', np.dstack([gray] * 3 + [opaque]))),
                          gray)
    assert np.array_equal(read_mask(_imwrite(tmp_path / 'd.png', gray.astype(np.uint16) * 256 + 255)),
                          gray)


def test_read_mask_shipped_rgba_soft_mask():
    path = SAMPLES_DIR / 'motorbike_coarse.png'
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 3 and raw.shape[2] == 4 and raw[:, :, 3].min() == 255  # alpha unused
    mask = read_mask(path)
    assert mask.shape == (480, 640) and mask.dtype == np.uint8
    assert np.array_equal(mask, raw[:, :, 0])                 # the soft gray levels
    assert len(np.unique(mask)) > 2


# ------------------------------------------------------------------ atomic writes
def test_write_png_atomic_round_trip(tmp_path, rgb):
    write_png_atomic(tmp_path / 'rgb.png', rgb)
    write_png_atomic(tmp_path / 'gray.png', rgb[:, :, 1].copy())
    assert np.array_equal(read_image(tmp_path / 'rgb.png'), rgb)
    assert np.array_equal(read_mask(tmp_path / 'gray.png'), rgb[:, :, 1])
    assert sorted(os.listdir(tmp_path)) == ['gray.png', 'rgb.png']        # no temp files


def test_png_text_chunks_round_trip_and_keep_the_pixels(tmp_path, rgb):
    from segrefine_plugins.io import png_text, png_with_text
    path = tmp_path / 'stamped.png'
    write_png_atomic(path, rgb, text={'segrefine-settings': 'abc123', 'note': 'x y'})
    assert png_text(path) == {'segrefine-settings': 'abc123', 'note': 'x y'}
    np.testing.assert_array_equal(read_image(path), rgb)
    assert cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED) is not None
    plain = tmp_path / 'plain.png'
    write_png_atomic(plain, rgb)
    assert png_text(plain) == {} and png_text(tmp_path / 'missing.png') == {}
    (tmp_path / 'not.png').write_bytes(b'hello')
    assert png_text(tmp_path / 'not.png') == {}
    with pytest.raises(ValueError, match='not a PNG'):
        png_with_text(b'hello', {'k': 'v'})
    with pytest.raises(ValueError, match='1-79'):
        png_with_text(plain.read_bytes(), {'': 'v'})


def test_write_png_atomic_replaces_whole_file(tmp_path, rgb):
    path = tmp_path / 'out.png'
    write_png_atomic(path, rgb)
    write_png_atomic(path, rgb[:, :, 0].copy())
    assert read_mask(path).shape == (7, 9)
    assert os.listdir(tmp_path) == ['out.png']


def test_write_png_atomic_failure_leaves_old_file_and_no_temp(tmp_path, rgb, monkeypatch):
    path = tmp_path / 'out.png'
    write_png_atomic(path, rgb)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(sio.os, 'replace', broken_replace)
    with pytest.raises(OSError, match='disk full'):
        write_png_atomic(path, np.zeros((7, 9), np.uint8))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['out.png']


def test_write_png_atomic_refuses_inputs_and_bad_arrays(tmp_path, rgb):
    src = _imwrite(tmp_path / 'in.png', rgb)
    before = src.read_bytes()
    link = tmp_path / 'link.png'
    link.symlink_to(src)
    for target in (src, tmp_path / '.' / 'in.png', link):
        with pytest.raises(ValueError, match='input'):
            write_png_atomic(target, rgb[:, :, 0].copy(), protect=[src])
    assert src.read_bytes() == before
    for bad in (rgb.astype(np.float32), np.zeros((3, 3, 4), np.uint8), [[0]]):
        with pytest.raises(ValueError):
            write_png_atomic(tmp_path / 'x.png', bad)
    assert sorted(os.listdir(tmp_path)) == ['in.png', 'link.png']


# ------------------------------------------------------------------ pairing
def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b'x')
    return folder


def test_pair_folders_by_stem(tmp_path):
    imgs = _touch(tmp_path / 'img', 'a.jpg', 'b.jpg', 'c.png', '.hidden.jpg', 'notes.txt')
    masks = _touch(tmp_path / 'mask', 'a.png', 'c.png', 'z.png', '.a.png.1234.tmp')
    r = pair_files(imgs, masks)
    assert [(s, i.name, m.name) for s, i, m in r.pairs] == [('a', 'a.jpg', 'a.png'),
                                                         ('c', 'c.png', 'c.png')]
    assert [p.name for p in r.unpaired_images] == ['b.jpg']
    assert [p.name for p in r.unpaired_masks] == ['z.png']


def test_pair_same_folder_with_suffix():
    r = pair_files(SAMPLES_DIR, SAMPLES_DIR, mask_suffix='_coarse')   # LICENSE, README.md ignored
    assert [(s, i.name, m.name) for s, i, m in r.pairs] == [
        ('aeroplane', 'aeroplane.jpg', 'aeroplane_coarse.png'),
        ('motorbike', 'motorbike.jpg', 'motorbike_coarse.png')]
    assert not r.unpaired_images and not r.unpaired_masks


def test_pair_files_and_mixed(tmp_path):
    imgs = _touch(tmp_path / 'img', 'a.jpg', 'b.jpg')
    masks = _touch(tmp_path / 'mask', 'a.png', 'other.png')
    r = pair_files(imgs / 'b.jpg', masks / 'other.png')       # two files: paired as given
    assert [(s, i.name, m.name) for s, i, m in r.pairs] == [('b', 'b.jpg', 'other.png')]
    r = pair_files(imgs / 'a.jpg', masks)
    assert [m.name for _, _, m in r.pairs] == ['a.png']
    r = pair_files(imgs / 'b.jpg', masks)
    assert not r.pairs and [p.name for p in r.unpaired_images] == ['b.jpg']
    with pytest.raises(ValueError, match='single file'):
        pair_files(imgs, masks / 'a.png')
    with pytest.raises(ValueError, match='does not exist'):
        pair_files(tmp_path / 'missing', masks)


def test_pair_duplicate_stems_raise(tmp_path):
    imgs = _touch(tmp_path / 'img', 'a.jpg', 'a.png')
    masks = _touch(tmp_path / 'mask', 'a.png')
    with pytest.raises(ValueError, match="'a'"):
        pair_files(imgs, masks)


def test_colour_masks_are_refused_gray_looking_ones_read(tmp_path):
    """A red-on-black mask would read as luminance 76 (background): refused with a clear
    error; a gray mask stored in colour with JPEG-like chroma noise still reads."""
    red = np.zeros((20, 30, 3), np.uint8)
    red[5:15, 5:25, 2] = 255                                   # BGR: red
    with pytest.raises(ValueError, match='colour image'):
        to_mask_uint8(red)
    with pytest.raises(ValueError, match='colour image'):
        to_mask_uint8(np.dstack([red, np.full((20, 30), 255, np.uint8)]))   # opaque RGBA
    path = tmp_path / 'red.png'
    cv2.imwrite(str(path), red)
    with pytest.raises(ImageReadError, match='red.png.*colour image'):
        read_mask(path)
    gray = np.zeros((20, 30), np.uint8)
    gray[5:15, 5:25] = 255
    noisy = np.dstack([gray, gray, gray]).astype(np.int16)
    noisy[..., 0] += np.random.default_rng(0).integers(-12, 13, gray.shape)
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert ((to_mask_uint8(noisy) > 127) == (gray > 127)).all()


def test_an_image_opencv_refuses_to_decode_is_an_image_read_error(tmp_path):
    """A PNG whose header claims 65535 x 65535 px makes OpenCV raise cv2.error: read_image /
    read_mask turn it into an ImageReadError naming the file."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack('>IIBBBBB', 65535, 65535, 8, 0, 0, 0, 0)
    png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
           + chunk(b'IDAT', zlib.compress(b'\0' * 16)) + chunk(b'IEND', b''))
    path = tmp_path / 'bomb.png'
    path.write_bytes(png)
    for reader in (read_image, read_mask, read_label_map):
        with pytest.raises(ImageReadError, match='bomb.png'):
            reader(path)


def test_label_maps_refuse_jpeg_and_name_palette_pngs(tmp_path):
    """A JPEG label map would gain invented class ids at its boundaries: refused; a palette
    PNG is named as such (OpenCV reads its colours), a gray PNG reads as stored."""
    from PIL import Image

    labels = np.zeros((24, 32), np.uint8)
    labels[4:20, 6:16], labels[4:20, 16:28] = 3, 9
    cv2.imwrite(str(tmp_path / 'l.jpg'), labels)
    with pytest.raises(ImageReadError, match='is a JPEG'):
        read_label_map(tmp_path / 'l.jpg')
    pal = Image.fromarray(labels, mode='P')
    pal.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    pal.save(tmp_path / 'p.png')
    with pytest.raises(ImageReadError, match='palette'):
        read_label_map(tmp_path / 'p.png')
    cv2.imwrite(str(tmp_path / 'g.png'), labels)
    np.testing.assert_array_equal(read_label_map(tmp_path / 'g.png'), labels)


def test_colour_mask_threshold_is_a_channel_spread_of_48():
    """Channels differing by at most MASK_MAX_CHROMA (48) levels read as gray (luminance);
    49 is refused."""
    from segrefine_plugins.io import MASK_MAX_CHROMA

    assert MASK_MAX_CHROMA == 48
    base = np.full((4, 4, 3), 200, np.uint8)
    ok = base.copy()
    ok[0, 0] = (200, 200, 152)                               # spread 48
    assert to_mask_uint8(ok).shape == (4, 4)
    bad = base.copy()
    bad[0, 0] = (200, 200, 151)                              # spread 49
    with pytest.raises(ValueError, match='up to 49 levels'):
        to_mask_uint8(bad)
