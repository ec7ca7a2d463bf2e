"""Importing LR images: PNG, JPEG, a folder, a zip, an upload's bytes, the built-in MNIST evaluation rows;
de-duplication by pixel content; and bad input (a non-image, a truncated PNG, a 1x1 or a 20000x20000 image, a zip
with ../ paths, ...) refused with a clear error that changes nothing."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from annotation.errors import InvalidInput, NotFound
from annotation.images import content_hash, decode_png, import_arrays, import_images, import_mnist, lr_array
from annotation.projects import ProjectSettings, create_project
from conftest import make_store, tiny_lr_images
from db.engine import session_scope
from db.models import AuditLog, LRImage


@pytest.fixture
def store():
    eng, factory = make_store("sqlite://")
    with session_scope(factory) as s:
        pid = create_project(s, ProjectSettings(name="imgs", model_name="tiny-x4", scale=4, bank_size=8,
                                                k_picks=2, ensemble_size=2, max_lr_side=64)).id
    yield factory, pid
    eng.dispose()


def _png(arr, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h (no pixel data): enough to be refused before decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _count(factory):
    with session_scope(factory) as s:
        return (s.scalar(select(func.count()).select_from(LRImage)),
                s.scalar(select(func.count()).select_from(AuditLog)))


def test_png_jpeg_folder_zip_and_bytes(store, tmp_path):
    factory, pid = store
    imgs = tiny_lr_images(6, size=(5, 7))
    (tmp_path / "a.png").write_bytes(_png(imgs[0]))
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.png").write_bytes(_png(imgs[1]))
    (folder / "sub" / "c.JPG").write_bytes(_jpeg(imgs[2]))
    (folder / "README.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"ignored")
    z = tmp_path / "set.zip"
    z.write_bytes(_zip({"d.png": _png(imgs[3]), "dir/e.png": _png(imgs[4]), "notes.md": b"x"}))
    with session_scope(factory) as s:
        r1 = import_images(s, pid, tmp_path / "a.png")
        r2 = import_images(s, pid, folder)
        r3 = import_images(s, pid, z)
        r4 = import_images(s, pid, _png(imgs[5]), name="upload.png")
    assert len(r1.added) == 1 and len(r2.added) == 2 and len(r3.added) == 2 and len(r4.added) == 1
    assert sorted(r2.skipped) == [".hidden.png", "README.txt"] and r3.skipped == ["set.zip:notes.md"]
    with session_scope(factory) as s:
        rows = s.scalars(select(LRImage).order_by(LRImage.id)).all()
        assert [r.source for r in rows] == ["a.png", "b.png", "sub/c.JPG", "set.zip:d.png", "set.zip:dir/e.png",
                                            "upload.png"]
        for r, img, lossless in zip(rows, imgs, [1, 1, 0, 1, 1, 1]):
            got = lr_array(r)
            assert got.shape == (5, 7) and (r.height, r.width, r.channels) == (5, 7, 1)
            if lossless:
                np.testing.assert_array_equal(got, img)
                assert r.content_sha256 == content_hash(img)
            else:
                assert np.abs(got.astype(int) - img).max() <= 8  # JPEG
        assert len(s.scalars(select(AuditLog).where(AuditLog.action == "image.imported")).all()) == 6


def test_duplicates_by_content(store, tmp_path):
    factory, pid = store
    img = tiny_lr_images(1)[0]
    rgb_png = _png(np.repeat(img[..., None], 3, -1))  # the same pixels as an RGB file
    with session_scope(factory) as s:
        first = import_images(s, pid, _png(img), name="one.png")
        again = import_images(s, pid, _zip({"x.png": _png(img), "y.png": rgb_png}), name="up.zip")
    assert len(first.added) == 1 and again.added == [] and again.duplicates == ["up.zip:x.png", "up.zip:y.png"]


def test_mnist_evaluation_rows(store):
    factory, pid = store
    with session_scope(factory) as s:
        res = import_mnist(s, pid, 20, gold=3)
        rows = s.scalars(select(LRImage).order_by(LRImage.id)).all()
    assert len(res.added) == 20
    assert sorted(int(r.label) for r in rows) == sorted(list(range(10)) * 2)  # 2 of each digit
    assert all(r.source.startswith("mnist:eval:") and int(r.source.split(":")[-1]) % 500 >= 400 for r in rows)
    assert [r.is_gold for r in rows] == [True] * 3 + [False] * 17
    assert lr_array(rows[0]).shape == (7, 7) and decode_png(rows[0].hr_png).shape == (28, 28)


def _bad_inputs(tmp_path):
    ok = tiny_lr_images(1)[0]
    truncated = _png(tiny_lr_images(1, size=(16, 16))[0])
    colour = np.zeros((6, 6, 3), np.uint8)
    colour[..., 0] = 200
    rgba = np.zeros((6, 6, 4), np.uint8)
    evil = zipfile.ZipInfo("../evil.png")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("good.png", _png(ok))
        zf.writestr(evil, _png(tiny_lr_images(1, seed=3)[0]))
    (tmp_path / "text.png").write_text("hello, not a PNG")
    gif = io.BytesIO()
    Image.fromarray(ok).save(gif, format="GIF")
    return {
        "non-image": (b"just some text", "a.png"),
        "non-image-file": (tmp_path / "text.png", None),
        "missing-file": (tmp_path / "nope.png", None),
        "truncated-png": (truncated[: len(truncated) // 2], "t.png"),
        "1x1": (_png(np.zeros((1, 1), np.uint8)), "tiny.png"),
        "1x9": (_png(np.zeros((1, 9), np.uint8)), "thin.png"),
        "20000x20000": (_png_header_only(20000, 20000), "huge.png"),
        "larger-than-the-project-limit": (_png(np.zeros((65, 8), np.uint8)), "big.png"),
        "gif": (gif.getvalue(), "x.gif"),
        "colour-for-a-grey-model": (_png(colour), "c.png"),
        "transparent": (_png(rgba, "RGBA"), "alpha.png"),
        "zip-slip": (buf.getvalue(), "slip.zip"),
        "zip-absolute": (_zip({"/etc/passwd.png": _png(ok)}), "abs.zip"),
        "zip-backslash": (_zip({"..\\evil.png": _png(ok)}), "bs.zip"),
        "bad-zip": (b"PK\x03\x04 this is no zip", "broken.zip"),
        "one-bad-member": (_zip({"good.png": _png(ok), "bad.png": b"garbage"}), "mixed.zip"),
    }


def test_bad_input_changes_nothing(store, tmp_path):
    factory, pid = store
    before = _count(factory)
    for case, (source, name) in _bad_inputs(tmp_path).items():
        with session_scope(factory) as s, pytest.raises(InvalidInput) as err:
            import_images(s, pid, source, name=name)
        assert str(err.value), case
        assert _count(factory) == before, case
    with session_scope(factory) as s, pytest.raises(NotFound):
        import_images(s, 999, _png(tiny_lr_images(1)[0]))
    with session_scope(factory) as s, pytest.raises(InvalidInput):
        import_images(s, pid, _png(tiny_lr_images(1)[0]), gold=True)  # a gold item needs its label
    with session_scope(factory) as s, pytest.raises(InvalidInput):
        import_arrays(s, pid, [np.zeros((4, 4), np.float32)], ["f"])
    assert _count(factory) == before


def test_text_is_stored_verbatim(store):
    factory, pid = store
    label = "\"8B\" <script>alert('x')</script>'; DROP TABLE lr_images;--"
    with session_scope(factory) as s:
        (img,) = import_images(s, pid, _png(tiny_lr_images(1)[0]), name="Robert'); DROP TABLE x;--.png",
                               label=label, gold=True).added
    with session_scope(factory) as s:
        row = s.get(LRImage, img)
        assert row.label == label and row.source == "Robert'); DROP TABLE x;--.png" and row.is_gold
