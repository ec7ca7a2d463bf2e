"""Issue 18, findings 2 and 6 (imports): each test replays what the probe of main found and fails there.

- a wrong-size image was accepted at import and failed only at generation, named by bank id;
- such an image could never be removed, so the project never reached 100%;
- a file name reached an error message as HTML;
- an import stuck on a FIFO froze the store (the file was opened inside the write transaction).
"""

from __future__ import annotations

import io
import os
import signal
import threading
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from annotation.audit import history
from annotation.banks import progress, run_bank_jobs
from annotation.errors import InvalidInput, NotFound
from annotation.images import import_arrays, import_images, remove_image
from annotation.projects import create_project, settings_for_engine
from annotation.tasks import next_task, submit
from annotation.accounts import create_rater
from conftest import make_store, tiny_flow_engine, tiny_lr_images
from db.engine import session_scope

HOSTILE = '<img src=x onerror="alert(1)">.png'


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine(lr_shape=(4, 4))  # like the MNIST models: one LR shape


@pytest.fixture
def factory(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'imports.sqlite'}")
    yield factory
    eng.dispose()


def _project(factory, engine, name="imp", **kw) -> int:
    opts = dict(bank_size=4, k_picks=2, raters_per_image=1, ensemble_size=2, steps=2)
    opts.update(kw)
    with session_scope(factory) as s:
        return create_project(s, settings_for_engine(engine, name, **opts)).id


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def no_hang(seconds: int = 5):
    """Fail instead of hanging should anything open a FIFO for reading."""
    def fail(*_):
        raise TimeoutError("blocked on a FIFO")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_wrong_size_image_is_refused_at_import_naming_the_file(factory, engine, tmp_path):
    pid = _project(factory, engine)
    folder = tmp_path / "lr"
    folder.mkdir()
    good = tiny_lr_images(2, seed=1)
    (folder / "a.png").write_bytes(_png(good[0]))
    (folder / "b<wide>.png").write_bytes(_png(np.zeros((4, 6), np.uint8)))  # 6x4: the model takes 4x4
    with session_scope(factory) as s, pytest.raises(InvalidInput) as err:
        import_images(s, pid, folder, engine=engine)
    msg = str(err.value)
    assert "b&lt;wide&gt;.png: 6x4 pixels" in msg and "takes LR images of 4x4 pixels" in msg, msg
    with session_scope(factory) as s, pytest.raises(InvalidInput, match="x.png: 5x5 pixels"):
        import_arrays(s, pid, [np.zeros((5, 5), np.uint8)], ["x.png"], engine=engine)
    with session_scope(factory) as s:
        assert progress(s, pid).images == 0  # all or nothing
        assert len(import_images(s, pid, _png(good[1]), name="ok.png", engine=engine).added) == 1


def test_removing_an_image_lets_the_project_reach_100_percent(factory, engine):
    pid = _project(factory, engine, name="finish")
    with session_scope(factory) as s:  # imported without the engine (as main did): one image the model refuses
        ids = import_arrays(s, pid, tiny_lr_images(1, seed=2) + [np.full((5, 5), 128, np.uint8)],
                            ["good.png", "wrong-size.png"]).added
        rid = create_rater(s, "r", "rater", "pw").id
        admin = create_rater(s, "boss", "admin", "pw").id
    rep = run_bank_jobs(factory, engine, pid)
    assert len(rep.completed) == 1 and len(rep.failed) == 1
    assert [u.source for u in rep.unfinished] == ["wrong-size.png"]  # named by its file, not only its bank
    with session_scope(factory) as s:
        t = next_task(s, rid, pid)
        submit(s, rid, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id])
        assert next_task(s, rid, pid) is None
        b = progress(s, pid)
        assert (b.complete, b.images) == (1, 2)  # stuck below 100%
    with session_scope(factory) as s, pytest.raises(NotFound):
        remove_image(s, pid + 1000, ids[1], actor_id=admin)
    with session_scope(factory) as s:
        r = remove_image(s, pid, ids[1], actor_id=admin, reason="the model takes 4x4")
        assert (r.source, r.banks, r.submissions) == ("wrong-size.png", 1, 0)
    with session_scope(factory) as s:
        b = progress(s, pid)
        assert (b.complete, b.images, b.failed) == (1, 1, 0)  # 100%
        (entry,) = history(s, action="image.removed")
        assert entry.actor_id == admin and entry.details["source"] == "wrong-size.png"
        assert entry.details["reason"] == "the model takes 4x4"
    assert run_bank_jobs(factory, engine, pid).unfinished == []


def test_removal_is_for_admins_and_takes_the_votes_along(factory, engine):
    pid = _project(factory, engine, name="votes")
    with session_scope(factory) as s:
        (iid,) = import_arrays(s, pid, tiny_lr_images(1, seed=3), ["one.png"]).added
        rid = create_rater(s, "r2", "rater", "pw").id
    run_bank_jobs(factory, engine, pid)
    with session_scope(factory) as s:
        t = next_task(s, rid, pid)
        submit(s, rid, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id], "7")
    with session_scope(factory) as s, pytest.raises(Exception, match="may not do this"):
        remove_image(s, pid, iid, actor_id=rid)
    with session_scope(factory) as s:
        r = remove_image(s, pid, iid)
        assert (r.assignments, r.submissions) == (1, 1)
    with session_scope(factory) as s:
        assert progress(s, pid).images == 0 and next_task(s, rid, pid) is None
        # the vote itself stays in the audit log; the same file may be imported again
        assert history(s, action="assignment.submitted")[0].details["reading"] == "7"
        assert len(import_arrays(s, pid, tiny_lr_images(1, seed=3), ["one.png"]).added) == 1


def test_a_file_name_reaches_an_error_as_escaped_text(factory, engine):
    pid = _project(factory, engine, name="names")
    with session_scope(factory) as s, pytest.raises(InvalidInput) as err:
        import_images(s, pid, b"not an image at all", name=HOSTILE, engine=engine)
    msg = str(err.value)
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.png" in msg and "<img" not in msg, msg


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_in_an_import_does_not_freeze_the_store(factory, engine, tmp_path):
    pid = _project(factory, engine, name="fifo")
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(tiny_lr_images(1, seed=4)[0]))
    fifo = folder / "b.png"
    os.mkfifo(fifo)  # nothing will ever write to it
    outcome: list[BaseException | None] = []

    def importer():  # the import runs as a request would, in its own write transaction
        try:
            with session_scope(factory) as s:
                import_images(s, pid, folder, engine=engine)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    th = threading.Thread(target=importer, daemon=True)
    th.start()
    th.join(5)
    try:
        # meanwhile other requests write (a 2 s busy timeout: on main they waited for the stuck import's lock)
        with session_scope(factory, busy_timeout_ms=2000) as s:
            create_rater(s, "still-served", "rater", "pw")
    finally:
        if th.is_alive():  # unblock an importer stuck in open() (main): a writer appears and leaves at once
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert outcome and isinstance(outcome[0], InvalidInput), outcome
    assert "b.png: not a regular file" in str(outcome[0])
    with no_hang(), session_scope(factory) as s, pytest.raises(InvalidInput, match="is a FIFO"):
        import_images(s, pid, fifo, engine=engine)
    os.unlink(fifo)
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png(tiny_lr_images(1, seed=5)[0]))
    os.symlink(outside, folder / "c.png")  # a link leading out of the folder
    with session_scope(factory) as s, pytest.raises(InvalidInput, match=r"c\.png: not a regular file inside"):
        import_images(s, pid, folder, engine=engine)
    os.unlink(folder / "c.png")
    with session_scope(factory) as s:
        assert len(import_images(s, pid, folder, engine=engine).added) == 1
