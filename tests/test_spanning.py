"""A displayed bank that spans the hypotheses (issue 16): every reading with enough of the pool is shown,
near-duplicates are dropped first, the pool shares sum to 1; in the store, a pool project keeps bank_size samples
with their pool shares and the pool's evidence, and the votes export carries each picked sample's share."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from annotation.accounts import create_rater
from annotation.exports import votes_frame
from annotation.tasks import next_task, submit
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import Bank, LRImage, Sample
from sr_engine.spanning import spanning_subset


def _pool(counts: dict[str, int]):
    imgs, reads = [], []
    for j, (r, c) in enumerate(counts.items()):
        base = np.zeros((6, 6), np.uint8)
        base[j % 6, :] = 200
        for i in range(c):
            x = base.copy()
            x[(i % 5) + 1, 0] = 50 + 3 * i  # a small difference per sample
            imgs.append(x)
            reads.append(r)
    return np.stack(imgs), reads


def test_every_reading_with_enough_of_the_pool_is_shown():
    imgs, reads = _pool({"5": 50, "6": 10, "8": 3, "0": 1})  # 64: 78%, 16%, 5%, 2%
    idx, share = spanning_subset(imgs, reads, n=16, min_share=0.04)
    shown = [reads[i] for i in idx]
    assert len(idx) == len(set(idx)) == 16 and set(shown) == {"5", "6", "8"}  # "0" holds 2% < 4%
    assert share.sum() == pytest.approx(1.0) and (share > 0).all()
    assert shown.count("5") > shown.count("6") >= 1


def test_farthest_points_drop_near_duplicates_first():
    a = np.zeros((8, 4, 4), np.uint8)
    a[4:] = 255  # two tight clusters of four within one reading
    idx, share = spanning_subset(a, ["5"] * 8, n=2)
    assert {int(i) // 4 for i in idx} == {0, 1} and list(share) == [0.5, 0.5]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        spanning_subset(np.zeros((3, 2, 2), np.uint8), None, n=4)
    with pytest.raises(ValueError):
        spanning_subset(np.zeros((3, 2, 2), np.uint8), ["1"], n=2)


def test_a_pool_project_shows_bank_size_samples_with_their_shares(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'pool.sqlite'}")
    engine = tiny_flow_engine(name="mnist-tiny-x4", domain="mnist")
    pid = seeded_project(factory, engine, n_images=1, bank_size=4, pool_factor=4)
    with session_scope(factory) as s:
        bank = s.scalar(select(Bank).join(LRImage).where(LRImage.project_id == pid))
        samples = s.scalars(select(Sample).where(Sample.bank_id == bank.id).order_by(Sample.index)).all()
        assert bank.n == len(samples) == 4 and sum(bank.evidence.values()) == 16  # the pool's evidence
        assert sum(x.pool_share for x in samples) == pytest.approx(1.0)
        rid = create_rater(s, "r").id
        t = next_task(s, rid, pid)
        submit(s, rid, t.assignment_id, [x.sample_id for x in t.samples[:2]])
        df = votes_frame(s, pid)
        share = {x.id: x.pool_share for x in samples}
    assert list(df["pool_share"]) == pytest.approx([share[i] for i in df["sample_id"]])
    eng.dispose()
