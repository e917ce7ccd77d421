"""Reading images and masks, writing PNGs atomically, pairing image and mask files by name.

Conversion rules (the only conversions this package makes; the refiners themselves accept
only (H, W, 3) uint8):

* grayscale (H, W) or (H, W, 1): replicated to three channels;
* gray + alpha (H, W, 2) and RGBA (H, W, 4): the alpha channel is dropped (not composited:
  the colour stored under transparent pixels is used as is);
* 16-bit (uint16): scaled to 8 bits by ``>> 8`` (the high byte), as OpenCV does;
* anything else (float, int32, bool, other channel counts) raises ValueError.

Files are decoded with OpenCV as stored: EXIF orientation is not applied, so a mask drawn on
the stored pixels lines up with its image.
"""
from __future__ import annotations

import errno
import os
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import cv2
import numpy as np

PathLike = Union[str, os.PathLike]

#: File extensions treated as images / masks when a folder is given.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(ValueError):
    """An image or mask file is missing, unreadable or corrupt (the message names the file)."""


# --------------------------------------------------------------------------- conversions
def _to_uint8_depth(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    raise ValueError(f'{name} dtype {array.dtype} is not supported: use uint8 or uint16 '
                     f'(16-bit is scaled by >> 8); convert float images yourself')


def to_rgb_uint8(array: np.ndarray, name: str = 'image') -> np.ndarray:
    """Convert an image array to (H, W, 3) uint8 by the module's documented rules.

    Channel order is kept (RGB in, RGB out); only the number of channels and the bit depth
    change. Returns the input itself when it already is (H, W, 3) uint8.
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(array).__name__}')
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f'{name} must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4, got shape '
                         f'{array.shape}')
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f'{name} is empty: shape {array.shape}')
    array = _to_uint8_depth(array, name)
    c = array.shape[2]
    if c in (1, 2):
        return np.ascontiguousarray(np.repeat(array[:, :, :1], 3, axis=2))
    if c == 4:
        return np.ascontiguousarray(array[:, :, :3])
    return array


#: A colour mask file whose channels differ by more than this many levels at some pixel is
#: refused (a colour-coded label, not a gray mask); below it, JPEG chroma noise on a gray mask.
MASK_MAX_CHROMA = 48


def to_mask_uint8(array: np.ndarray, name: str = 'mask') -> np.ndarray:
    """Convert a mask image array to (H, W) uint8 0..255.

    * (H, W) / (H, W, 1): as is;
    * (H, W, 2) gray + alpha and (H, W, 4) colour + alpha: the alpha channel if it is not
      all opaque (a soft mask stored as transparency), else the gray / luminance of the colour;
    * (H, W, 3): luminance (OpenCV's ITU-R 601 weights; equal channels stay unchanged); a
      colour image (channels differing by more than ``MASK_MAX_CHROMA`` levels somewhere, e.g.
      a red-on-black mask, whose red would read as 76) raises ValueError;
    * uint16: ``>> 8``. Channel order of colour input is taken as BGR (OpenCV's).
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f'{name} must be a numpy array, got {type(array).__name__}')
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(f'{name} must be HxW, HxWx2, HxWx3 or HxWx4, got shape {array.shape}')
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f'{name} is empty: shape {array.shape}')
    if array.dtype == np.uint16 and 0 < int(array.max()) <= 255:
        raise ValueError(f'{name} is 16-bit with values only in 0..{int(array.max())}: 16-bit '
                         f'masks are scaled by >> 8, so it would read as empty; store 0..255 '
                         f'masks as 8-bit (or 0..65535 in 16-bit)')
    array = _to_uint8_depth(array, name)
    if array.ndim == 2:
        return array
    c = array.shape[2]
    if c in (2, 4) and array[:, :, -1].min() < 255:
        return np.ascontiguousarray(array[:, :, -1])
    if c == 2:
        return np.ascontiguousarray(array[:, :, 0])
    colour = np.ascontiguousarray(array[:, :, :3])
    spread = int((colour.max(axis=2).astype(np.int16) - colour.min(axis=2)).max())
    if spread > MASK_MAX_CHROMA:
        raise ValueError(f'{name} is a colour image (its channels differ by up to {spread} '
                         f'levels), not a gray mask: its luminance would misread colours (red '
                         f'255,0,0 reads as 76, background). Save the object as a gray 0..255 '
                         f'mask (e.g. 255 where the colour marks it)')
    return cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)


# --------------------------------------------------------------------------- reading
def _jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG stream has no end-of-image marker after its first scan.

    OpenCV decodes truncated JPEGs without failing (grey fill), so this is checked here.
    Segments before the scan (EXIF thumbnails included) are skipped by their lengths; inside
    the entropy-coded data 0xFF is always stuffed, so 0xFFD9 only occurs as the real marker.
    """
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return True
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
        elif marker == 0xDA:
            return data.find(b'\xff\xd9', i) < 0
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
    return True


def _decode(path: PathLike) -> np.ndarray:
    """Decode a file as stored (IMREAD_UNCHANGED); ImageReadError naming it on failure."""
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f'cannot read {path!r}: {e.strerror or e}') from None
    if not data:
        raise ImageReadError(f'cannot read {path!r}: the file is empty')
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:   # e.g. a header claiming more pixels than OpenCV's limit
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ImageReadError(f'cannot decode {path!r}: OpenCV refused it ({reason})') from None
    if array is None or array.size == 0:
        raise ImageReadError(f'cannot decode {path!r}: not an image OpenCV can read, or corrupt')
    if data[:2] == b'\xff\xd8' and _jpeg_is_truncated(data):
        raise ImageReadError(f'{path!r} is a truncated or corrupt JPEG (no end-of-image marker)')
    return array


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 **RGB**.

    Grayscale, gray + alpha, RGBA and 16-bit files are converted by the module's rules
    (alpha dropped, gray replicated, ``>> 8``). Raises :class:`ImageReadError` naming the file
    when it is missing, empty, corrupt (truncated JPEGs included) or of an unsupported kind.
    """
    array = _decode(path)
    try:
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = array[:, :, 2::-1]  # BGR(A) -> RGB; the alpha is dropped anyway
        return np.ascontiguousarray(to_rgb_uint8(array))
    except ValueError as e:
        raise ImageReadError(f'{os.fspath(path)!r}: {e}') from None


def read_mask(path: PathLike) -> np.ndarray:
    """Read a mask file as (H, W) uint8 0..255 (see :func:`to_mask_uint8` for the rules).

    An RGBA file whose alpha is not all opaque gives its alpha channel (a soft mask stored as
    transparency); otherwise a gray-looking colour file gives its luminance, and a colour one
    (e.g. red on black) is refused (``MASK_MAX_CHROMA``). A palette PNG whose colours
    are not gray (a label map such as VOC's) and a 16-bit mask holding only 0..255 are
    refused (they would read as wrong or empty masks). 0/1 label files are returned
    as they are (values 0 and 1): the refiners and metrics reject those with a clear message.
    Raises :class:`ImageReadError` naming the file when it cannot be read.
    """
    array = _decode(path)
    if array.ndim == 3 and _is_palette_png(path) and not (
            (array[:, :, 0] == array[:, :, 1]).all() and (array[:, :, 1] == array[:, :, 2]).all()):
        raise ImageReadError(
            f'{os.fspath(path)!r} is a palette (indexed-colour) PNG with colours: a label map '
            f'(e.g. VOC), whose colours would be read as gray levels. Save the object as an '
            f'8-bit 0/255 mask (e.g. with PIL: (np.array(Image.open(path)) == k) * 255)')
    try:
        return to_mask_uint8(array)
    except ValueError as e:
        raise ImageReadError(f'{os.fspath(path)!r}: {e}') from None


#: The 8 bytes every PNG file starts with.
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _is_jpeg(path: PathLike) -> bool:
    """True for a file that starts with the JPEG start-of-image marker."""
    try:
        with open(path, 'rb') as f:
            return f.read(3) == b'\xff\xd8\xff'
    except OSError:
        return False


def _is_palette_png(path: PathLike) -> bool:
    """True for a PNG whose IHDR colour type is 3 (indexed colour)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(26)
    except OSError:
        return False
    return head[:8] == _PNG_SIGNATURE and head[12:16] == b'IHDR' and head[25] == 3


# --------------------------------------------------------------------------- writing
def _same_file(a: PathLike, b: PathLike) -> bool:
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_label_map(path: PathLike) -> np.ndarray:
    """Read a label map (an 8- or 16-bit single-channel PNG of class ids) as (H, W) uint8 /
    uint16, values as stored. Colour files (including palette PNGs, which OpenCV expands to
    colours) are refused: convert them to class ids first. Raises :class:`ImageReadError`
    naming the file when it cannot be read."""
    if _is_jpeg(path):
        raise ImageReadError(f'{os.fspath(path)!r} is a JPEG: lossy compression invents class '
                             f'ids along the class boundaries; store label maps as PNG')
    array = _decode(path)
    if array.ndim == 3 and _is_palette_png(path):
        raise ImageReadError(f'{os.fspath(path)!r} is a palette (indexed-colour) PNG, which '
                             f'OpenCV reads as colours: save the class ids themselves as an '
                             f'8- or 16-bit gray PNG (e.g. with PIL: '
                             f'Image.fromarray(np.array(Image.open(path))).save(out), whose '
                             f'array holds the palette indices)')
    if array.ndim != 2:
        raise ImageReadError(f'{os.fspath(path)!r} is not a single-channel label map (shape '
                             f'{array.shape}); write class ids as an 8- or 16-bit gray PNG')
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f'{os.fspath(path)!r} has dtype {array.dtype}; label maps are 8- '
                             f'or 16-bit class ids')
    return array


def label_edges(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has another label (class
    boundaries, for pictures)."""
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edges[:-1] |= labels[1:] != labels[:-1]
    return edges


def png_with_text(png: bytes, text: Mapping[str, str]) -> bytes:
    """``png`` (the bytes of a PNG) with one ``tEXt`` chunk per ``key: value`` inserted right
    after the header (readers ignore them; :func:`png_text` reads them back without decoding
    the pixels). Keys: 1-79 Latin-1 characters; values: Latin-1."""
    if not png.startswith(_PNG_SIGNATURE) or png[12:16] != b'IHDR':
        raise ValueError('not a PNG (no signature / IHDR)')
    end = 8 + 12 + int.from_bytes(png[8:12], 'big')       # signature + IHDR chunk
    chunks = []
    for key, value in text.items():
        if not 1 <= len(key) <= 79 or '\0' in key or '\0' in str(value):
            raise ValueError(f'PNG text keys have 1-79 characters and neither key nor value a '
                             f'NUL, got {key!r}')
        data = key.encode('latin-1') + b'\0' + str(value).encode('latin-1')
        crc = zlib.crc32(b'tEXt' + data) & 0xFFFFFFFF
        chunks.append(len(data).to_bytes(4, 'big') + b'tEXt' + data + crc.to_bytes(4, 'big'))
    return png[:end] + b''.join(chunks) + png[end:]


def png_text(path: PathLike) -> Dict[str, str]:
    """The ``tEXt`` chunks before the pixel data of the PNG at ``path`` (``{}`` if it has
    none, or is not a readable PNG); reads only the file's head."""
    out: Dict[str, str] = {}
    try:
        with open(path, 'rb') as f:
            if f.read(8) != _PNG_SIGNATURE:
                return out
            while True:
                head = f.read(8)
                if len(head) < 8 or head[4:8] in (b'IDAT', b'IEND'):
                    return out
                size = int.from_bytes(head[:4], 'big')
                if size > 1 << 20:
                    return out
                data = f.read(size)
                f.read(4)   # crc
                if head[4:8] == b'tEXt' and b'\0' in data:
                    key, _, value = data.partition(b'\0')
                    out[key.decode('latin-1')] = value.decode('latin-1')
    except OSError:
        return out


def write_png_atomic(path: PathLike, array: np.ndarray, protect: Iterable[PathLike] = (),
                     text: Optional[Mapping[str, str]] = None) -> None:
    """Write (H, W) uint8 gray, (H, W) uint16 (label maps) or (H, W, 3) uint8 **RGB** as a
    PNG, atomically.

    The PNG is written to a hidden temporary file in the same folder and moved over ``path``
    with ``os.replace``: readers see the old file or the complete new one, never a partial
    file, and an interrupted run leaves no half-written output. The folder must exist.

    Args:
        path: destination (any extension; the content is PNG).
        array: the pixels.
        protect: paths that must never be written (the inputs); ValueError if ``path`` is
            one of them.
        text: ``tEXt`` chunks to store (see :func:`png_with_text`), e.g. what made the file.
    """
    path = os.fspath(path)
    if not isinstance(array, np.ndarray) or not (
            (array.dtype == np.uint8 and (array.ndim == 2 or (
                array.ndim == 3 and array.shape[2] in (1, 3))))
            or (array.dtype == np.uint16 and array.ndim == 2)):
        raise ValueError(f'write_png_atomic takes (H, W) or (H, W, 3) uint8 or (H, W) uint16, got '
                         f'{getattr(array, "dtype", type(array).__name__)} '
                         f'{getattr(array, "shape", "")}')
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f'could not encode a PNG for {path!r}')
    data = buf.tobytes()
    write_bytes_atomic(path, png_with_text(data, text) if text else data, protect)


def write_bytes_atomic(path: PathLike, data: bytes, protect: Iterable[PathLike] = ()) -> None:
    """Write ``data`` to ``path`` atomically (hidden temporary file in the same folder, fsync,
    ``os.replace``): readers see the old file or the complete new one. The folder must exist.

    Raises:
        ValueError: ``path`` is one of ``protect`` (the inputs).
        OSError: the folder is missing or not writable, ``path`` is a folder, ... (the
            message names ``path``).
    """
    path = os.fspath(path)
    for p in protect:
        if _same_file(path, p):
            raise ValueError(f'refusing to write {path!r}: it is an input file')
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, 'is a folder, cannot write a file there', path)
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f'.{base}.{uuid.uuid4().hex[:8]}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def unwritable_reason(path: PathLike, folder: bool = False) -> Optional[str]:
    """Why a file (or, with ``folder``, a folder) cannot be created at ``path``, or None.

    Checked without writing anything: the nearest existing ancestor must be a writable
    folder (no regular file on the way, not a read-only file system), and ``path`` itself,
    if it exists, a folder (``folder``) or a regular file. Permission bits do not stop root,
    so a caller still handles OSError when it writes.
    """
    path = Path(os.path.abspath(os.fspath(path)))
    if path.exists():
        if folder and not path.is_dir():
            return f'{str(path)!r} exists and is not a folder'
        if not folder and path.is_dir():
            return f'{str(path)!r} is a folder'
        target = path if folder else path.parent
        if not os.access(target, os.W_OK | os.X_OK):
            return f'{str(target)!r} is not writable'
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f'{str(parent)!r} is a file, not a folder: cannot create {str(path)!r}'
    if not os.access(parent, os.W_OK | os.X_OK):
        return f'{str(parent)!r} is not writable: cannot create {str(path)!r}'
    return None


def image_size(path: PathLike) -> Tuple[int, int]:
    """(H, W) of an image file: read from the header of a PNG, else by decoding it.

    Raises:
        ImageReadError: the file cannot be read or decoded.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(24)
    except OSError as e:
        raise ImageReadError(f'cannot read {path!r}: {e.strerror or e}') from None
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b'IHDR':
        return int.from_bytes(head[20:24], 'big'), int.from_bytes(head[16:20], 'big')
    return tuple(_decode(path).shape[:2])  # type: ignore[return-value]


def is_complete_png(path: PathLike, shape: Optional[Tuple[int, ...]] = None) -> bool:
    """True when ``path`` is a file that decodes as an image (of (H, W) ``shape``, if
    given): how a resumed run tells a finished output from one an earlier crash left empty,
    truncated or of another size."""
    try:
        array = _decode(path)
    except ImageReadError:
        return False
    return shape is None or tuple(array.shape[:2]) == tuple(shape[:2])


# --------------------------------------------------------------------------- pairing
@dataclass
class Pairing:
    """Result of :func:`pair_files`: ``pairs`` of (stem, image path, mask path), sorted by
    stem, and the files that found no partner."""

    pairs: List[Tuple[str, Path, Path]] = field(default_factory=list)
    unpaired_images: List[Path] = field(default_factory=list)
    unpaired_masks: List[Path] = field(default_factory=list)


def list_images(folder: PathLike) -> List[Path]:
    """Image files directly inside ``folder`` (by extension, hidden files skipped), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith('.')
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def _by_stem(files: List[Path], suffix: str, what: str) -> dict:
    index: dict = {}
    for p in files:
        stem = p.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[:-len(suffix)]
        if stem in index:
            raise ValueError(f'two {what} files have the name {stem!r}: {index[stem]} and {p}')
        index[stem] = p
    return index


def pair_files(images: PathLike, masks: PathLike, mask_suffix: str = '') -> Pairing:
    """Pair image and mask files by name.

    Args:
        images: an image file or a folder of images.
        masks: a mask file or a folder of masks.
        mask_suffix: the mask of ``NAME.jpg`` is ``NAME<mask_suffix>.<ext>`` (e.g.
            ``'_coarse'`` for ``aeroplane_coarse.png``); default: the same stem.

    Two files are paired as given. A file and a folder: the folder's file with the matching
    name. Two folders: every stem present in both (non-recursive; hidden files ignored; in
    the images folder, files that end with ``mask_suffix`` are taken as masks, so images and
    masks may share one folder). Raises ValueError on missing paths, on an image folder with
    a single mask file, and on two files of one folder with the same stem.
    """
    images, masks = Path(images), Path(masks)
    for p, what in ((images, 'image'), (masks, 'mask')):
        if not p.exists():
            raise ValueError(f'{what} path {str(p)!r} does not exist')
    if images.is_file() and masks.is_file():
        return Pairing(pairs=[(images.stem, images, masks)])
    if images.is_dir() and masks.is_file():
        raise ValueError(f'{images} is a folder but {masks} is a single file: give a folder '
                         f'of masks (or one image file)')
    mask_index = _by_stem(list_images(masks), mask_suffix, 'mask')
    if images.is_file():
        m = mask_index.get(images.stem)
        if m is None:
            return Pairing(unpaired_images=[images])
        return Pairing(pairs=[(images.stem, images, m)])
    image_files = [p for p in list_images(images)
                   if not (mask_suffix and p.stem.endswith(mask_suffix))]
    image_index = _by_stem(image_files, '', 'image')
    result = Pairing()
    for stem in sorted(image_index):
        if stem in mask_index:
            result.pairs.append((stem, image_index[stem], mask_index[stem]))
        else:
            result.unpaired_images.append(image_index[stem])
    result.unpaired_masks = [mask_index[s] for s in sorted(mask_index) if s not in image_index]
    return result
