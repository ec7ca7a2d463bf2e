"""Bank generation as a resumable job with a real tiny FlowEngine: complete banks carry every sample and its
figures; a crash part-way leaves no visible half-bank and the next run finishes it; a worker that died mid-write
(a stale claim with some samples) is reclaimed and its samples discarded; `python -m annotation generate`."""

from __future__ import annotations


import numpy as np
import pytest
from sqlalchemy import func, select

from annotation.audit import history
from annotation.banks import bank_seed, claim_next, complete_bank, progress, run_bank_jobs, store_bank
from annotation.errors import Conflict, InvalidInput
from annotation.images import decode_png, encode_png, import_arrays, lr_array
from annotation.projects import create_project, settings_for_engine
from annotation.tasks import next_task
from annotation.accounts import create_rater
from conftest import make_store, tiny_flow_engine, tiny_lr_images
from db.engine import session_scope
from db.models import Bank, BankStatus, LRImage, Sample, utcnow
from sr_engine import FlowEngine, sample_seeds
from sr_engine.metrics import CONSISTENT_DB


class CrashingEngine(FlowEngine):
    """The real tiny engine, except that it dies after producing part of a bank (the first ``crashes`` calls)."""

    crashes = 1

    def sample_bank(self, lr, n=64, steps=8, seed=0, **kwargs):
        if self.crashes > 0:
            self.crashes -= 1
            super().sample_bank(lr, n=max(1, n // 2), steps=steps, seed=seed, **kwargs)  # some samples...
            raise RuntimeError("simulated crash after some samples")
        return super().sample_bank(lr, n=n, steps=steps, seed=seed, **kwargs)


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine()


@pytest.fixture
def factory(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'banks.sqlite'}")
    yield factory
    eng.dispose()


def _project(factory, engine, n_images=2, **kw):
    opts = dict(bank_size=8, k_picks=2, raters_per_image=2, ensemble_size=2, steps=2, seed=3)
    opts.update(kw)
    with session_scope(factory) as s:
        pid = create_project(s, settings_for_engine(engine, "banks", **opts)).id
        ids = import_arrays(s, pid, tiny_lr_images(n_images, seed=5), [f"i{i}" for i in range(n_images)]).added
    return pid, ids


def test_complete_banks(factory, engine):
    pid, ids = _project(factory, engine)
    seen = []
    rep = run_bank_jobs(factory, engine, pid, on_progress=lambda r: seen.append(len(r.completed)))
    assert len(rep.completed) == 2 and not rep.failed and seen == [1, 2]
    with session_scope(factory) as s:
        assert progress(s, pid).complete == 2 and progress(s, pid).pending == 0
        for image_id in ids:
            bank = complete_bank(s, image_id)
            assert bank.n == 8 and bank.seed == bank_seed(3, image_id) and bank.steps == 2
            assert bank.engine_config["name"] == "tiny-x4" and bank.engine_config["scale"] == 4
            assert bank.engine_config["ddpm"] == engine.config["ddpm"] and bank.attempts == 1
            samples = bank.samples
            assert [x.index for x in samples] == list(range(8))
            np.testing.assert_array_equal([x.seed for x in samples], sample_seeds(bank.seed, 8))
            assert min(x.lr_psnr for x in samples) >= CONSISTENT_DB
            assert all(x.flow_consistency is not None and x.projection_residual <= 1e-6 for x in samples)
            image = s.get(LRImage, image_id)
            # the stored samples are the engine's own bank, and one sample is reproduced from its seed alone
            direct = engine.sample_bank(lr_array(image), n=8, steps=2, seed=bank.seed)
            np.testing.assert_array_equal(np.stack([decode_png(x.png) for x in samples]), direct.images)
            one = engine.sample_bank(lr_array(image), n=1, steps=2, seed=samples[5].seed)
            assert np.abs(one.images[0].astype(int) - decode_png(samples[5].png).astype(int)).max() <= 1
        assert len({x.seed for x in s.scalars(select(Sample))}) == 16  # banks share no sample
    assert run_bank_jobs(factory, engine, pid).completed == []  # nothing left: resumable, not repeated


def test_a_crash_leaves_no_visible_half_bank_and_the_next_run_finishes_it(factory):
    crashing = tiny_flow_engine(cls=CrashingEngine)
    pid, ids = _project(factory, crashing)
    with session_scope(factory) as s:
        rater = create_rater(s, "r").id
    rep = run_bank_jobs(factory, crashing, pid)
    assert len(rep.failed) == 1 and "simulated crash" in next(iter(rep.failed.values()))
    assert len(rep.completed) == 1
    failed_bank = next(iter(rep.failed))
    with session_scope(factory) as s:
        bank = s.get(Bank, failed_bank)
        assert bank.status == BankStatus.failed and "simulated crash" in bank.error
        assert s.scalar(select(func.count()).select_from(Sample).where(Sample.bank_id == failed_bank)) == 0
        assert complete_bank(s, bank.image_id) is None
        served = {next_task(s, rater, pid).image_id}
        assert bank.image_id not in served  # raters only ever see complete banks
    rep2 = run_bank_jobs(factory, crashing, pid)  # the next run retries it
    assert rep2.completed == [failed_bank] and not rep2.failed
    with session_scope(factory) as s:
        bank = s.get(Bank, failed_bank)
        assert bank.status == BankStatus.complete and bank.attempts == 2 and len(bank.samples) == 8
        actions = [e.action for e in history(s, entity="bank", entity_id=failed_bank)]
        assert actions == ["bank.queued", "bank.claimed", "bank.failed", "bank.claimed", "bank.completed"]


def test_a_dead_worker_half_bank_is_discarded_and_regenerated(factory, engine):
    pid, ids = _project(factory, engine, n_images=1)
    t0 = utcnow()
    with session_scope(factory) as s:
        from annotation.banks import enqueue_missing

        enqueue_missing(s, pid)
        claim = claim_next(s, [pid], worker="gpu-box:1", now=t0)
    # the worker wrote some samples, committed, and died before finishing (e.g. an older, non-atomic writer)
    half = engine.sample_bank(claim.lr, n=3, steps=2, seed=claim.seed)
    with session_scope(factory) as s:
        for i in range(3):
            s.add(Sample(bank_id=claim.bank_id, index=i, seed=int(half.seeds[i]), png=encode_png(half.images[i]),
                         lr_psnr=float(half.lr_psnr[i])))
    with session_scope(factory) as s:
        assert complete_bank(s, claim.image_id) is None
        assert progress(s, pid).running == 1
    # while the claim is fresh, another worker leaves it alone
    assert run_bank_jobs(factory, engine, pid, stale_after_s=3600).completed == []
    rep = run_bank_jobs(factory, engine, pid, stale_after_s=0)
    assert rep.completed == [claim.bank_id] and rep.discarded == {claim.bank_id: 3}
    with session_scope(factory) as s:
        bank = complete_bank(s, claim.image_id)
        assert bank is not None and len(bank.samples) == 8 and bank.attempts == 2
        assert history(s, entity="bank", entity_id=bank.id, action="bank.discarded")[0].details["samples"] == 3
    # the dead worker comes back and tries to store its result: refused, nothing changes
    full = engine.sample_bank(claim.lr, n=8, steps=2, seed=claim.seed)
    with session_scope(factory) as s, pytest.raises(Conflict):
        store_bank(s, claim, full, engine.config, engine.scale)


def test_a_result_that_does_not_fit_is_refused(factory, engine):
    pid, _ = _project(factory, engine, n_images=1)
    with session_scope(factory) as s:
        from annotation.banks import enqueue_missing

        enqueue_missing(s, pid)
        claim = claim_next(s, [pid])
    short = engine.sample_bank(claim.lr, n=5, steps=2, seed=claim.seed)
    with session_scope(factory) as s, pytest.raises(InvalidInput):
        store_bank(s, claim, short, engine.config, engine.scale)
    with session_scope(factory) as s:
        assert s.scalar(select(func.count()).select_from(Sample)) == 0


def test_the_wrong_engine_is_refused(factory, engine):
    pid, _ = _project(factory, engine, n_images=1)
    other = tiny_flow_engine(name="other-x4")
    with pytest.raises(InvalidInput):
        run_bank_jobs(factory, other, pid)
    with session_scope(factory) as s:
        p = create_project(s, settings_for_engine(engine, "flowmode", bank_size=4, k_picks=1, ensemble_size=1,
                                                  mode="guided"))
        pid2 = p.id
    with pytest.raises(InvalidInput):
        run_bank_jobs(factory, engine, pid2)  # the flow engine has no guided mode


def test_cli_generate_against_a_db_url(tmp_path, engine):
    import torch
    from dataclasses import asdict

    from annotation.__main__ import main

    ckpt = tmp_path / "tiny.pt"
    torch.save({"format": 1, "engine": "flow", "name": "tiny-x4", "flow_config": asdict(engine.flow.config),
                "flow_state": engine.flow.state_dict(), "ddpm_config": engine.ddpm_config.to_dict(),
                "unet_state": engine.unet.state_dict()}, ckpt)
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    folder = tmp_path / "lr"
    folder.mkdir()
    from PIL import Image

    for i, img in enumerate(tiny_lr_images(2, seed=9)):
        Image.fromarray(img).save(folder / f"{i}.png")
    assert main(["init", "--db-url", url, "--admin-password", "pw"]) == 0
    assert main(["create-project", "--db-url", url, "--name", "cli", "--model", str(ckpt), "--bank-size", "4",
                 "--k", "2", "--ensemble-size", "2", "--steps", "2"]) == 0
    assert main(["import", "--db-url", url, "--project", "cli", "--path", str(folder), "--model", str(ckpt)]) == 0
    assert main(["generate", "--db-url", url, "--project", "cli", "--model", str(ckpt)]) == 0
    eng2, factory = make_store(url)
    with session_scope(factory) as s:
        banks = s.scalars(select(Bank)).all()
        assert len(banks) == 2 and all(b.status == BankStatus.complete and len(b.samples) == 4 for b in banks)
        assert banks[0].checkpoint_sha256 and len(banks[0].checkpoint_sha256) == 64
    eng2.dispose()
    assert main(["generate", "--db-url", url, "--project", "nope"]) == 2  # a clear error, not a traceback
