"""Issue 18, finding 6 through the app's HTTP API (gradio_client), as a browser tab or a script calls it: an
account named ``..`` wrote exports outside ``exports/``; an upload's file name reached the error toast as HTML;
a wrong-size image was accepted; nothing could remove an image; no upload had a size limit. The app runs
in-process on a free port with a tiny engine that takes 4x4 LR images, and a throwaway data directory."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import serve_app, tiny_flow_engine, tiny_lr_images  # noqa: E402

PASSWORDS = {"admin": "admin-pw-1", "..": "dots-pw-1", "rita": "rater-pw-1"}
MAX_UPLOAD_MB = 0.05  # 51,200 bytes: tiny PNGs pass, a padded file does not


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("app-input")
    (data / "tmp").mkdir()
    (data / "tmp" / "left-over.png").write_bytes(b"from an earlier run")
    accounts = {"..": ("analyst", PASSWORDS[".."]), "rita": ("rater", PASSWORDS["rita"])}
    with serve_app(data, PASSWORDS["admin"], accounts, engine=tiny_flow_engine(lr_shape=(4, 4)), project="input",
                   max_upload_mb=MAX_UPLOAD_MB) as (url, ctx, pid):
        yield url, ctx, pid, data


def client(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False)


def test_the_temp_folder_is_private_and_cleaned(served):
    _, _, _, data = served
    tmp = data / "tmp"
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o700
    assert not (tmp / "left-over.png").exists()


def test_an_account_named_dot_dot_exports_inside_the_exports_folder(served):
    url, ctx, pid, data = served
    html, _ = client(url, "..").predict(pid, "votes", "csv", api_name="/export")
    assert "private-download/" in html
    root = Path(ctx.downloads.root).resolve()
    written = sorted(p for p in data.rglob("project-*-votes*") if not p.is_relative_to(data / "tmp"))
    assert written and all(p.resolve().is_relative_to(root) for p in written), written
    assert all(".." not in p.relative_to(root).parts for p in written)


def test_an_upload_error_shows_the_file_name_as_text(served, tmp_path):
    url, _, pid, _ = served
    import zipfile

    bad = tmp_path / "set.zip"  # Gradio cleans an uploaded file's own name; a zip member's name is the sender's
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("<img src=x onerror=alert(1)>.png", b"not an image")
    msg, _ = client(url, "admin").predict(pid, [handle_file(str(bad))], api_name="/upload_images")
    assert "sr-error" in msg, msg  # the refusal is the message beside the button
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in msg and "<img" not in msg, msg


def test_a_wrong_size_upload_is_refused_and_an_image_can_be_removed(served, tmp_path):
    url, ctx, pid, _ = served
    from annotation.banks import progress
    from db.engine import session_scope

    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(wide)
    good = tmp_path / "good.png"
    Image.fromarray(tiny_lr_images(1, seed=99)[0]).save(good)
    admin = client(url, "admin")
    msg, _ = admin.predict(pid, [handle_file(str(good)), handle_file(str(wide))], api_name="/upload_images")
    assert re.search(r"sr-error.*wide\.png: 6x4 pixels, but model tiny-x4 takes LR images of 4x4", msg), msg
    msg, _ = admin.predict(pid, [handle_file(str(good))], api_name="/upload_images")
    assert "Imported 1 image(s)" in msg
    with session_scope(ctx.factory) as s:
        before = progress(s, pid).images
    with pytest.raises(AppError, match="Not allowed"):
        client(url, "rita").predict(pid, 1, api_name="/remove_image")
    msg, _ = admin.predict(pid, 1, api_name="/remove_image")
    assert re.search(r"Removed image 1 \(img-0\.png\) with 1 bank\(s\)", msg), msg
    with session_scope(ctx.factory) as s:
        assert progress(s, pid).images == before - 1


def test_only_an_admin_removes_a_bank_and_the_image_stays(served):
    url, ctx, pid, _ = served
    from annotation.audit import history
    from annotation.banks import progress
    from db.engine import session_scope

    with session_scope(ctx.factory) as s:
        before = progress(s, pid)
    with pytest.raises(AppError, match="Not allowed"):
        client(url, "rita").predict(pid, 2, api_name="/remove_bank")
    with pytest.raises(AppError, match="Not allowed"):
        client(url, "..").predict(pid, 2, api_name="/remove_bank")
    with session_scope(ctx.factory) as s:
        assert progress(s, pid) == before and not history(s, action="bank.removed")
    msg, _ = client(url, "admin").predict(pid, 2, api_name="/remove_bank")
    assert re.search(r"Removed bank \d+ \(complete\) of image 2 \(img-1\.png\) with 8 sample\(s\)", msg), msg
    with session_scope(ctx.factory) as s:
        after = progress(s, pid)
        assert (after.images, after.complete) == (before.images, before.complete - 1)
        (entry,) = history(s, action="bank.removed")
        assert entry.details["image_id"] == 2 and entry.actor_id is not None
    msg, _ = client(url, "admin").predict(pid, 2, api_name="/remove_bank")  # no bank left: said beside the button
    assert "sr-error" in msg and "has no bank" in msg, msg


def test_uploads_past_the_limit_are_refused(served, tmp_path):
    url, ctx, pid, data = served
    big = tmp_path / "big.png"
    Image.fromarray(tiny_lr_images(1, seed=5)[0]).save(big)
    with open(big, "ab") as f:  # a valid PNG padded past the limit
        f.write(b"\0" * int(MAX_UPLOAD_MB * (1 << 20)))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 52428 bytes"):
        client(url, "admin").predict(pid, [handle_file(str(big))], api_name="/upload_images")  # the client checks
    import httpx  # and so does the server, for a client that does not

    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("login", data={"username": "rita", "password": PASSWORDS["rita"]}).status_code in (200, 303)
        r = http.post("gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")})
        assert r.status_code == 413, r.text
    assert not any(p.name == "big.png" for p in (data / "tmp").rglob("*"))
