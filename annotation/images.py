"""Import LR images into a project: PNG or JPEG files, a folder, a zip, raw bytes (an upload), or the built-in
MNIST evaluation rows. Every image is validated, converted to the project's channels without guessing, stored as
a canonical PNG and de-duplicated by the SHA-256 of its decoded pixels (the same picture as two files is one
image).

An import is all-or-nothing: every file is decoded and checked before anything is written, so one bad file
(a non-image, a truncated PNG, a 1x1 or a 20000x20000 image, a zip member named ``../x.png``) raises
:class:`~annotation.errors.InvalidInput` naming it and the store is unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import LRImage, Project
from sr_engine.data import load_mnist, mnist_canvas
from sr_engine.degradation import make_lr

from .accounts import check_text
from .audit import record
from .errors import InvalidInput, NotFound
from .projects import get_project

MIN_SIDE = 2  # a 1x1 image has nothing to super-resolve
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_FILE_BYTES = 20 << 20  # per file or zip member
MAX_ZIP_BYTES = 256 << 20  # all members together, uncompressed (zip bombs)
MAX_ZIP_MEMBERS = 20_000
MAX_LABEL = 200


@dataclass
class ImportResult:
    added: list[int] = field(default_factory=list)  # new image ids, in import order
    duplicates: list[str] = field(default_factory=list)  # sources whose pixels were already in the project
    skipped: list[str] = field(default_factory=list)  # files in a folder or zip that are not .png/.jpg/.jpeg


@dataclass
class _Item:
    source: str
    lr: np.ndarray  # uint8 (H, W) or (H, W, 3)
    hr: np.ndarray | None = None
    label: str | None = None
    is_gold: bool = False


# ---- PNG helpers -------------------------------------------------------------------------------------------
def encode_png(arr: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG bytes (no metadata)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise InvalidInput(f"expected uint8 (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode="L" if a.ndim == 2 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes written by :func:`encode_png` -> uint8 (H, W) or (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB")).copy()


def content_hash(arr: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape (not of the file bytes)."""
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    return hashlib.sha256(f"{a.shape}".encode() + b"|" + a.tobytes()).hexdigest()


# ---- validation --------------------------------------------------------------------------------------------
def _to_channels(im: Image.Image, channels: int, name: str) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "RGBA", "PA"):
        if (np.asarray(im.getchannel("A")) != 255).any():
            raise InvalidInput(f"{name}: the image has transparent pixels; give an opaque image")
        im = im.convert("L" if im.mode == "LA" else "RGB")
    if im.mode == "1":
        im = im.convert("L")
    if im.mode not in ("L", "RGB"):
        raise InvalidInput(f"{name}: image mode {im.mode!r} is not supported; give 8-bit grey or RGB")
    arr = np.asarray(im)
    if channels == 1 and arr.ndim == 3:
        if not ((arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()):
            raise InvalidInput(f"{name}: a colour image, but this project's model takes grey images")
        arr = arr[..., 0]
    elif channels == 3 and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)  # grey is exactly representable as RGB
    return np.ascontiguousarray(arr, dtype=np.uint8)


def decode_image(data: bytes, name: str, channels: int, max_side: int, min_side: int = MIN_SIDE) -> np.ndarray:
    """Validate one PNG or JPEG file's bytes and return uint8 (H, W) (channels=1) or (H, W, 3) (channels=3).

    The size is checked from the header before any pixel is decoded (a 20000x20000 file is refused cheaply).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput(f"{name}: expected the file's bytes, got {type(data).__name__}")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"{name}: {len(data)} bytes is more than the limit of {MAX_FILE_BYTES}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ("PNG", "JPEG"):
                raise InvalidInput(f"{name}: a {im.format} file; give PNG or JPEG")
            w, h = im.size
            if min(w, h) < min_side:
                raise InvalidInput(f"{name}: {w}x{h} pixels is too small (at least {min_side} a side)")
            if max(w, h) > max_side:
                raise InvalidInput(f"{name}: {w}x{h} pixels is larger than this project's limit of {max_side} "
                                   "a side")
            if getattr(im, "n_frames", 1) != 1:
                raise InvalidInput(f"{name}: animated images are not supported")
            im.load()  # decodes every pixel: a truncated file fails here
            return _to_channels(im, channels, name)
    except InvalidInput:
        raise
    except Image.DecompressionBombError as err:
        raise InvalidInput(f"{name}: the image is far larger than any LR image ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise InvalidInput(f"{name}: not a readable PNG or JPEG image ({type(err).__name__}: {err})") from err


# ---- sources -----------------------------------------------------------------------------------------------
def _unsafe_member(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    mode = info.external_attr >> 16
    return (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts
            or "\x00" in name or stat.S_ISLNK(mode))


def _wanted(name: str) -> bool:
    base = PurePosixPath(name.replace("\\", "/")).name
    return (not base.startswith(".") and "__MACOSX" not in name and base.lower().endswith(IMAGE_SUFFIXES))


def read_zip(data_or_path: bytes | str | Path, label: str = "zip") -> tuple[list[tuple[str, bytes]], list[str]]:
    """(member name, bytes) of the image members, and the names skipped. Refuses the whole archive if any member
    has an absolute path, a ``..`` component or is a link, or if it would unpack to more than the limits."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray))
                             else data_or_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InvalidInput(f"{label}: not a readable zip archive ({err})") from err
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        bad = [i.filename for i in zf.infolist() if _unsafe_member(i)]
        if bad:
            raise InvalidInput(f"{label}: unsafe member path(s) {bad[:3]}; nothing was imported")
        if len(infos) > MAX_ZIP_MEMBERS:
            raise InvalidInput(f"{label}: {len(infos)} members is more than the limit of {MAX_ZIP_MEMBERS}")
        wanted = [i for i in infos if _wanted(i.filename)]
        if sum(i.file_size for i in wanted) > MAX_ZIP_BYTES or any(i.file_size > MAX_FILE_BYTES for i in wanted):
            raise InvalidInput(f"{label}: unpacks to more than the limits ({MAX_FILE_BYTES} bytes a file, "
                               f"{MAX_ZIP_BYTES} in all)")
        try:
            files = [(f"{label}:{i.filename}", zf.read(i)) for i in wanted]
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise InvalidInput(f"{label}: a member cannot be read ({err})") from err
        skipped = [f"{label}:{i.filename}" for i in infos if not _wanted(i.filename)]
    return files, skipped


def _read_folder(path: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    files, skipped = [], []
    for root, dirs, names in os.walk(path, followlinks=False):
        dirs.sort()
        for n in sorted(names):
            p = Path(root) / n
            rel = str(p.relative_to(path))
            if p.is_symlink() or not _wanted(rel):
                skipped.append(rel)
                continue
            if p.stat().st_size > MAX_FILE_BYTES:
                raise InvalidInput(f"{rel}: larger than the limit of {MAX_FILE_BYTES} bytes")
            files.append((rel, p.read_bytes()))
    return files, skipped


def _collect(source: str | Path | bytes, name: str | None) -> tuple[list[tuple[str, bytes]], list[str]]:
    if isinstance(source, (bytes, bytearray)):
        label = name or "upload"
        if label.lower().endswith(".zip") or bytes(source[:4]) == b"PK\x03\x04":
            return read_zip(bytes(source), label)
        return [(label, bytes(source))], []
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise InvalidInput(f"{source}: no such file or folder")
    if path.suffix.lower() == ".zip":
        return read_zip(path, path.name)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InvalidInput(f"{path.name}: larger than the limit of {MAX_FILE_BYTES} bytes")
    return [(path.name, path.read_bytes())], []


# ---- the services ------------------------------------------------------------------------------------------
def get_image(session: Session, image_id: int) -> LRImage:
    """An LR image by id; :class:`~annotation.errors.NotFound` if there is none."""
    valid = isinstance(image_id, int) and not isinstance(image_id, bool)
    image = session.get(LRImage, image_id) if valid else None
    if image is None:
        raise NotFound(f"unknown image id {image_id!r}")
    return image


def _store(session: Session, project: Project, items: list[_Item], actor_id: int | None,
           result: ImportResult) -> ImportResult:
    seen = set(session.scalars(select(LRImage.content_sha256).where(LRImage.project_id == project.id)))
    for it in items:
        h = content_hash(it.lr)
        if h in seen:
            result.duplicates.append(it.source)
            continue
        seen.add(h)
        row = LRImage(project_id=project.id, content_sha256=h, source=it.source, png=encode_png(it.lr),
                      height=int(it.lr.shape[0]), width=int(it.lr.shape[1]), channels=project.channels,
                      hr_png=encode_png(it.hr) if it.hr is not None else None, label=it.label,
                      is_gold=bool(it.is_gold))
        session.add(row)
        session.flush()
        result.added.append(row.id)
        record(session, "image.imported", "image", row.id, actor_id=actor_id, project_id=project.id,
               source=it.source, sha256=h, gold=bool(it.is_gold))
    return result


def import_images(session: Session, project_id: int, source: str | Path | bytes, *, name: str | None = None,
                  label: str | None = None, gold: bool = False, actor_id: int | None = None) -> ImportResult:
    """Import a PNG/JPEG file, a folder (recursively, links not followed), a ``.zip``, or raw bytes of an upload
    (``name`` is its file name). ``label`` / ``gold`` apply to every image of this call (a gold item must have a
    label). Nothing is written unless every image file is valid."""
    project = get_project(session, project_id)
    if label is not None:
        check_text(label, "label", MAX_LABEL)
    if gold and label is None:
        raise InvalidInput("a gold item needs its known label")
    files, skipped = _collect(source, name)
    items = [_Item(src, decode_image(data, src, project.channels, project.max_lr_side), label=label,
                   is_gold=gold) for src, data in files]
    return _store(session, project, items, actor_id, ImportResult(skipped=skipped))


def import_arrays(session: Session, project_id: int, images: list[np.ndarray], sources: list[str], *,
                  hr: list[np.ndarray | None] | None = None, labels: list[str | None] | None = None,
                  gold: list[bool] | None = None, actor_id: int | None = None) -> ImportResult:
    """Import uint8 arrays (H, W) / (H, W, 3) directly, with optional known HR images and labels."""
    project = get_project(session, project_id)
    n = len(images)
    hr = hr or [None] * n
    labels = labels or [None] * n
    gold = gold or [False] * n
    if not (len(sources) == len(hr) == len(labels) == len(gold) == n):
        raise InvalidInput("images, sources, hr, labels and gold must have the same length")
    items = []
    for img, src, h, lab, g in zip(images, sources, hr, labels, gold):
        check_text(src, "source", 1000)
        a = np.asarray(img)
        if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
            raise InvalidInput(f"{src}: expected uint8 (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
        a = _to_channels(Image.fromarray(a), project.channels, src)
        if min(a.shape[:2]) < MIN_SIDE or max(a.shape[:2]) > project.max_lr_side:
            raise InvalidInput(f"{src}: shape {a.shape} is outside [{MIN_SIDE}, {project.max_lr_side}] a side")
        if lab is not None:
            check_text(lab, "label", MAX_LABEL)
        if g and lab is None:
            raise InvalidInput(f"{src}: a gold item needs its known label")
        if h is not None and (np.asarray(h).dtype != np.uint8
                              or np.asarray(h).shape[:2] != (a.shape[0] * project.scale, a.shape[1] * project.scale)):
            raise InvalidInput(f"{src}: the HR image must be uint8 of {project.scale}x the LR size")
        items.append(_Item(src, a, None if h is None else np.asarray(h), lab, bool(g)))
    return _store(session, project, items, actor_id, ImportResult())


def mnist_lr(count: int, scale: int, start: int = 0):
    """The built-in MNIST evaluation rows, round-robin over digits (so 20 rows = 2 of each digit).

    Returns (lr uint8 (n, h, w), hr uint8 (n, H, W), labels (n,), rows (n,)). 28x28 digits are centred on the
    smallest even-padded canvas the scale divides (x4: 28, x8: 32)."""
    try:
        pad_to = mnist_canvas(scale)
    except ValueError as err:
        raise InvalidInput(str(err)) from err
    d = load_mnist("eval", pad_to=pad_to)
    per_digit = [np.flatnonzero(d.labels == k) for k in range(10)]
    order = [idx[j] for j in range(max(map(len, per_digit))) for idx in per_digit if j < len(idx)]
    if not 0 <= start < len(order) or count < 1:
        raise InvalidInput(f"choose 1 or more of the {len(order)} evaluation rows from a start in range")
    pick = np.asarray(order[start : start + count])
    hr = d.images[pick]
    return make_lr(hr, scale), hr, d.labels[pick], d.rows[pick]


def import_mnist(session: Session, project_id: int, count: int = 20, *, start: int = 0, gold: int = 0,
                 actor_id: int | None = None) -> ImportResult:
    """Import ``count`` MNIST evaluation rows as LR images (``make_lr`` of the HR digit at the project's scale),
    each with its HR image and digit label; the first ``gold`` of them are gold items."""
    project = get_project(session, project_id)
    if project.channels != 1:
        raise InvalidInput("MNIST digits are grey; this project's model takes RGB images")
    lr, hr, labels, rows = mnist_lr(count, project.scale, start)
    n = len(lr)
    return import_arrays(session, project_id, list(lr), [f"mnist:eval:{int(r)}" for r in rows], hr=list(hr),
                         labels=[str(int(v)) for v in labels], gold=[i < gold for i in range(n)],
                         actor_id=actor_id)


def lr_array(image: LRImage) -> np.ndarray:
    """The stored LR image as uint8 (H, W) or (H, W, 3)."""
    return decode_png(image.png)
