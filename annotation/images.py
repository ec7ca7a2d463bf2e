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
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import Assignment, AssignmentStatus, Bank, LRImage, Project
from sr_engine import SREngine
from sr_engine.data import load_mnist, mnist_canvas
from sr_engine.degradation import make_lr

from .accounts import check_text, require_role
from .audit import record
from .errors import InvalidInput, NotFound
from .projects import get_project, normalize_reading
from .text import escape_for_message, scrub_addresses
from .uploads import is_regular_file_inside, read_upload, read_zip_members

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


def decode_image(data: bytes, name: str, channels: int, max_side: int, min_side: int = MIN_SIDE, *,
                 rules: ImageRules | None = None) -> np.ndarray:
    """Validate one PNG or JPEG file's bytes and return uint8 (H, W) (channels=1) or (H, W, 3) (channels=3).

    The size is checked from the header before any pixel is decoded (a 20000x20000 file is refused cheaply),
    and so is the model's LR shape where ``rules`` carry one. ``name`` may be anything (a file name from an
    upload): messages escape it.
    """
    raw, name = name, escape_for_message(name)
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
            if rules is not None:
                rules.check_shape(raw, h, w)
            if getattr(im, "n_frames", 1) != 1:
                raise InvalidInput(f"{name}: animated images are not supported")
            im.load()  # decodes every pixel: a truncated file fails here
            return _to_channels(im, channels, name)
    except InvalidInput:
        raise
    except Image.DecompressionBombError as err:
        raise InvalidInput(f"{name}: the image is far larger than any LR image") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise InvalidInput(f"{name}: not a readable PNG or JPEG image ({type(err).__name__}: "
                           f"{escape_for_message(scrub_addresses(str(err)))})") from err


# ---- sources -----------------------------------------------------------------------------------------------
def _wanted(name: str) -> bool:
    base = PurePosixPath(name.replace("\\", "/")).name
    return (not base.startswith(".") and "__MACOSX" not in name and base.lower().endswith(IMAGE_SUFFIXES))


def read_zip(data_or_path: bytes | str | Path, label: str = "zip") -> tuple[list[tuple[str, bytes]], list[str]]:
    """(member name, bytes) of the image members, and the names skipped. All or nothing
    (:func:`annotation.uploads.read_zip_members`): a member with an absolute path, a ``..`` part or a link, a
    member that inflates past its limit whatever its header says, or an archive past the limits refuses it."""
    return tuple(read_zip_members(data_or_path, max_member_bytes=MAX_FILE_BYTES, max_total_bytes=MAX_ZIP_BYTES,
                                  max_members=MAX_ZIP_MEMBERS, wanted=_wanted, label=label))


def _read_folder(path: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Every image file under ``path`` (links not followed into other folders). A FIFO, device, socket, or a link
    that leads out of the folder refuses the import, named, before anything is read."""
    files, skipped = [], []
    for root, dirs, names in os.walk(path, followlinks=False):
        dirs.sort()
        for n in sorted(names):
            p = Path(root) / n
            rel = str(p.relative_to(path))
            if not _wanted(rel):
                skipped.append(rel)
                continue
            if not is_regular_file_inside(p, path):
                raise InvalidInput(f"{escape_for_message(rel)}: not a regular file inside the folder (a FIFO, a "
                                   "device, a socket or a link leading out of it); nothing was imported")
            files.append((rel, read_upload(os.path.realpath(p), max_bytes=MAX_FILE_BYTES, name=rel)))
    return files, skipped


def _collect(source: str | Path | bytes, name: str | None,
             max_bytes: int = MAX_FILE_BYTES) -> tuple[list[tuple[str, bytes]], list[str]]:
    if isinstance(source, (bytes, bytearray)):
        label = name or "upload"
        data = read_upload(source, max_bytes=max_bytes, name=label)
        if label.lower().endswith(".zip") or data[:4] == b"PK\x03\x04":
            return read_zip(data, label)
        return [(label, data)], []
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if not os.path.lexists(path):
        raise InvalidInput(f"{escape_for_message(source)}: no such file or folder")
    if path.suffix.lower() == ".zip":
        return read_zip(path, path.name)
    return [(path.name, read_upload(path, max_bytes=max_bytes))], []


# ---- the services ------------------------------------------------------------------------------------------
def get_image(session: Session, image_id: int) -> LRImage:
    """An LR image by id; :class:`~annotation.errors.NotFound` if there is none."""
    valid = isinstance(image_id, int) and not isinstance(image_id, bool)
    image = session.get(LRImage, image_id) if valid else None
    if image is None:
        raise NotFound(f"unknown image id {image_id!r}")
    return image


@dataclass(frozen=True)
class ImageRules:
    """What a project accepts: its channels, its LR size limit, and the one LR shape its model takes (the
    engine's ``lr_shape``: the MNIST models take 7x7 at x4), which needs the engine (:meth:`for_project`)."""

    channels: int
    max_side: int
    scale: int
    model_name: str
    lr_shape: tuple[int | None, int | None] | None = None

    @classmethod
    def for_project(cls, project: Project, engine: SREngine | None = None) -> ImageRules:
        """The project's rules; with its loaded ``engine``, also the engine's LR shape and size limit."""
        max_side, lr_shape = int(project.max_lr_side), None
        if engine is not None:
            max_side = min(max_side, int(engine.max_lr_side))
            lr_shape = tuple(engine.lr_shape) if engine.lr_shape is not None else None
        return cls(int(project.channels), max_side, int(project.scale), project.model_name, lr_shape)

    def check_shape(self, name: str, h: int, w: int) -> None:
        """Refuse an LR size the model does not take, naming the file (before any bank is queued for it)."""
        if self.lr_shape is None:
            return
        want_h, want_w = self.lr_shape
        if (want_h is not None and h != want_h) or (want_w is not None and w != want_w):
            shown = f"{want_w if want_w is not None else 'any'}x{want_h if want_h is not None else 'any'}"
            raise InvalidInput(f"{escape_for_message(name)}: {w}x{h} pixels, but model "
                               f"{escape_for_message(self.model_name)} takes LR images of {shown} pixels "
                               "(width x height); nothing was imported")


@dataclass
class PreparedImport:
    """Files read, decoded and checked (:func:`prepare_import`), ready for :func:`store_import`."""

    project_id: int
    items: list[_Item]
    skipped: list[str]


def prepare_import(project: Project, source: str | Path | bytes, *, name: str | None = None,
                   label: str | None = None, gold: bool = False, engine: SREngine | None = None,
                   max_bytes: int = MAX_FILE_BYTES) -> PreparedImport:
    """Read and validate every file of an import, outside any write transaction (``project`` may come from a
    read-only one): the slow part of an import never holds the store's write lock."""
    rules = ImageRules.for_project(project, engine)
    if label is not None:
        label = normalize_reading(label, project.model_name, what="label", max_len=MAX_LABEL)
    if gold and label is None:
        raise InvalidInput("a gold item needs its known label")
    files, skipped = _collect(source, name, max_bytes)
    items = [_Item(src, decode_image(data, src, rules.channels, rules.max_side, rules=rules), label=label,
                   is_gold=gold) for src, data in files]
    return PreparedImport(project.id, items, skipped)


def store_import(session: Session, prepared: PreparedImport, *, actor_id: int | None = None) -> ImportResult:
    """Write a prepared import (one short write transaction: the caller's)."""
    project = get_project(session, prepared.project_id)
    return _store(session, project, prepared.items, actor_id, ImportResult(skipped=list(prepared.skipped)))


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
                  label: str | None = None, gold: bool = False, actor_id: int | None = None,
                  engine: SREngine | None = None) -> ImportResult:
    """Import a PNG/JPEG file, a folder (recursively, links not followed), a ``.zip``, or raw bytes of an upload
    (``name`` is its file name). ``label`` / ``gold`` apply to every image of this call (a gold item must have a
    label). With the project's ``engine``, every image must have the LR shape it takes. Nothing is written
    unless every image file is valid. (The app and the command line call :func:`prepare_import` outside the
    write transaction and :func:`store_import` in it.)"""
    prepared = prepare_import(get_project(session, project_id), source, name=name, label=label, gold=gold,
                              engine=engine)
    return store_import(session, prepared, actor_id=actor_id)


def import_arrays(session: Session, project_id: int, images: list[np.ndarray], sources: list[str], *,
                  hr: list[np.ndarray | None] | None = None, labels: list[str | None] | None = None,
                  gold: list[bool] | None = None, actor_id: int | None = None,
                  engine: SREngine | None = None) -> ImportResult:
    """Import uint8 arrays (H, W) / (H, W, 3) directly, with optional known HR images and labels (normalised
    like readings); with the project's ``engine``, every image must have the LR shape it takes."""
    project = get_project(session, project_id)
    rules = ImageRules.for_project(project, engine)
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
        if min(a.shape[:2]) < MIN_SIDE or max(a.shape[:2]) > rules.max_side:
            raise InvalidInput(f"{src}: shape {a.shape} is outside [{MIN_SIDE}, {rules.max_side}] a side")
        rules.check_shape(src, int(a.shape[0]), int(a.shape[1]))
        if lab is not None:
            lab = normalize_reading(lab, project.model_name, what="label", max_len=MAX_LABEL)
        if g and lab is None:
            raise InvalidInput(f"{src}: a gold item needs its known label")
        if h is not None and (np.asarray(h).dtype != np.uint8
                              or np.asarray(h).shape[:2] != (a.shape[0] * project.scale, a.shape[1] * project.scale)):
            raise InvalidInput(f"{src}: the HR image must be uint8 of {project.scale}x the LR size")
        items.append(_Item(src, a, None if h is None else np.asarray(h), lab, bool(g)))
    return _store(session, project, items, actor_id, ImportResult())


@dataclass(frozen=True)
class RemovedImage:
    image_id: int
    project_id: int
    source: str
    banks: int  # banks (with their samples and ensembles) deleted with it
    assignments: int  # assignments of every status deleted with it
    submissions: int  # of which submitted: their picks and readings stay in the audit log only


def removal_target(session: Session, project_id: int, image_id: int, actor_id: int | None,
                   reason: str) -> tuple[Project, LRImage, str]:
    """What a removal (of an image, or of its bank) checks first: the actor is an admin (when given), the image is
    in the project; returns (project, image, the reason checked as text)."""
    if actor_id is not None:
        require_role(session, actor_id, "admin")
    project = get_project(session, project_id)
    image = get_image(session, image_id)
    if image.project_id != project.id:
        raise NotFound(f"image {image_id} is not in project {escape_for_message(project.name)}")
    return project, image, check_text(reason, "reason", 2000, allow_newlines=True) if reason else ""


def remove_image(session: Session, project_id: int, image_id: int, *, actor_id: int | None = None,
                 reason: str = "") -> RemovedImage:
    """Remove an image from its project, with its bank, samples, ensembles, assignments and votes, so that what
    is left can reach 100% (an image the model cannot take, a broken or wrongly imported file). Audited: the
    entry names the file, its SHA-256 and what was deleted; the submitted picks and readings stay in the audit
    log's earlier entries. ``actor_id``, when given, must be an admin's. The same file may be imported again."""
    project, image, reason = removal_target(session, project_id, image_id, actor_id, reason)
    banks = int(session.scalar(select(func.count(Bank.id)).where(Bank.image_id == image.id)) or 0)
    counts = session.execute(select(func.count(Assignment.id), func.count(Assignment.id).filter(
        Assignment.status == AssignmentStatus.submitted)).where(Assignment.image_id == image.id)).one()
    removed = RemovedImage(image.id, project.id, image.source, banks, int(counts[0]), int(counts[1]))
    # the database cascades (ON DELETE CASCADE): banks, samples, ensembles, assignments, picks, readings
    session.execute(delete(LRImage).where(LRImage.id == image.id).execution_options(synchronize_session=False))
    session.expunge(image)
    record(session, "image.removed", "image", removed.image_id, actor_id=actor_id, project_id=project.id,
           source=removed.source, sha256=image.content_sha256, gold=bool(image.is_gold), banks=removed.banks,
           assignments=removed.assignments, submissions=removed.submissions, reason=reason)
    return removed


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
