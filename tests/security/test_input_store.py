"""Issue 18, findings 2 and 7 (the store and bank generation): each test replays what the probe of main found.

- every transaction, reads included, began with ``BEGIN IMMEDIATE`` and waited up to 30 s for the write lock;
- a killed ``generate`` left its bank ``running`` for 600 s (its heartbeat was written only at the claim);
- a rerun exited 0 with the bank unfinished.

A second SQLite connection holding ``BEGIN IMMEDIATE`` stands for a slow writer.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict
from datetime import timedelta

import pytest
import torch
from sqlalchemy import select

from annotation.accounts import create_rater
from annotation.banks import claim_next, enqueue_missing, run_bank_jobs
from annotation.images import import_arrays
from annotation.projects import create_project, get_project, settings_for_engine
from conftest import make_store, tiny_flow_engine, tiny_lr_images
from db.engine import is_busy, make_engine, make_session_factory, session_scope
from db.models import Bank, BankStatus, utcnow
from sr_engine import FlowEngine


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "store.sqlite"
    eng, factory = make_store(f"sqlite:///{path}")
    yield path, factory
    eng.dispose()


def _project(factory, engine, n_images=1, name="store") -> int:
    with session_scope(factory) as s:
        pid = create_project(s, settings_for_engine(engine, name, bank_size=4, k_picks=2, raters_per_image=1,
                                                    ensemble_size=2, steps=2)).id
        import_arrays(s, pid, tiny_lr_images(n_images, seed=11), [f"img-{i}.png" for i in range(n_images)])
    return pid


def _hold_write_lock(path):
    """Another connection (another process, as far as SQLite can tell) holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_read_only_requests_proceed_while_a_writer_holds_the_lock(db, engine):
    path, _ = db
    eng = make_engine(f"sqlite:///{path}", busy_timeout_ms=500)  # as the app: interactive requests wait briefly
    factory = make_session_factory(eng)
    pid = _project(factory, engine, n_images=1)
    other = _hold_write_lock(path)
    try:
        t = time.perf_counter()
        with session_scope(factory, write=False) as s:
            assert get_project(s, pid).name == "store"
        assert time.perf_counter() - t < 0.4  # no wait for the lock at all
        t = time.perf_counter()
        with pytest.raises(Exception) as err, session_scope(factory) as s:
            create_rater(s, "blocked", "rater", "pw")
        assert is_busy(err.value) and time.perf_counter() - t < 3  # the engine's 0.5 s, not 30 s
    finally:
        other.execute("ROLLBACK")
        other.close()
    with session_scope(factory) as s:
        create_rater(s, "now-fine", "rater", "pw")
    eng.dispose()


def test_the_app_answers_busy_try_again(db, engine):
    import gradio as gr

    from ui import AppContext, EngineRegistry

    path, _ = db
    eng = make_engine(f"sqlite:///{path}", busy_timeout_ms=300)
    factory = make_session_factory(eng)
    with session_scope(factory) as s:
        create_rater(s, "rita", "rater", "pw")
    ctx = AppContext(factory, EngineRegistry({}), None, path.parent)

    class Req:
        username = "rita"

    other = _hold_write_lock(path)
    try:
        assert ctx.actor(Req(), "rater").name == "rita"  # the role check only reads
        with pytest.raises(gr.Error, match="busy; try again"), ctx.tx() as s:
            create_rater(s, "x", "rater", "pw")
    finally:
        other.execute("ROLLBACK")
        other.close()
    eng.dispose()


class SlowEngine(FlowEngine):
    """The real tiny engine, slowed down: a bank takes about ``seconds``."""

    seconds = 1.2

    def sample_bank(self, lr, n=64, steps=8, seed=0, **kwargs):
        time.sleep(self.seconds)
        return super().sample_bank(lr, n=n, steps=steps, seed=seed, **kwargs)


def test_generate_refreshes_its_heartbeat_while_it_works(db):
    _, factory = db
    slow = tiny_flow_engine(cls=SlowEngine)
    pid = _project(factory, slow, n_images=1)
    seen = []

    class Watching(SlowEngine):
        def sample_bank(self, lr, **kwargs):
            out = super().sample_bank(lr, **kwargs)
            with session_scope(factory, write=False) as s:
                b = s.scalars(select(Bank)).one()
                seen.append((b.started_at, b.heartbeat_at))
            return out

    watching = tiny_flow_engine(cls=Watching)
    rep = run_bank_jobs(factory, watching, pid, heartbeat_s=0.2)
    assert len(rep.completed) == 1 and rep.unfinished == []
    (started, beat), = seen
    assert (beat - started).total_seconds() >= 0.8  # refreshed during the 1.2 s of work, not only at the claim


def test_a_killed_generates_bank_is_reclaimed_within_a_minute(db, engine):
    _, factory = db
    pid = _project(factory, engine, n_images=1)
    with session_scope(factory) as s:  # a worker claimed the bank 61 s ago and was killed (no heartbeat since)
        enqueue_missing(s, pid)
        claim = claim_next(s, [pid], worker="killed:1", now=utcnow() - timedelta(seconds=61))
    rep = run_bank_jobs(factory, engine, pid)  # the defaults: reclaimed after 60 s without a heartbeat
    assert rep.completed == [claim.bank_id] and rep.unfinished == []
    with session_scope(factory) as s:
        assert s.get(Bank, claim.bank_id).status == BankStatus.complete


def test_generate_exits_non_zero_naming_the_unfinished_banks(tmp_path, engine, capsys):
    from annotation.__main__ import main

    ckpt = tmp_path / "tiny.pt"
    torch.save({"format": 1, "engine": "flow", "name": "tiny-x4", "flow_config": asdict(engine.flow.config),
                "flow_state": engine.flow.state_dict(), "ddpm_config": engine.ddpm_config.to_dict(),
                "unet_state": engine.unet.state_dict()}, ckpt)
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    eng, factory = make_store(url)
    pid = _project(factory, engine, n_images=2, name="cli")
    with session_scope(factory) as s:  # another worker is generating bank 1 right now (fresh heartbeat)
        enqueue_missing(s, pid)
        busy = claim_next(s, [pid], worker="gpu-box:7")
    eng.dispose()
    capsys.readouterr()
    assert main(["generate", "--db-url", url, "--project", "cli", "--model", str(ckpt)]) == 1
    err = capsys.readouterr().err
    assert f"bank {busy.bank_id} (image {busy.image_id}, img-0.png): running on gpu-box:7" in err, err
    assert "1 bank(s) unfinished" in err
