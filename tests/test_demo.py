"""The demo that opens on first start: mnist-x8 digits chosen where a probe bank disagrees, read by the digit judge.

The demo's own banks (16 samples, 8 steps, seeds the probe never used) must still split: for most of its non-gold
images the judge reads at least two different digits across the bank; its gold items are read as their label.
Needs the shipped mnist-x8 and the digit judge (skipped otherwise).
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import make_store
from sqlalchemy import select

from annotation.demo import DEMO_MODEL, FAIR_SHARE, ProbedDigit, ambiguous_digits, bootstrap_demo
from annotation.images import decode_png
from db.engine import session_scope
from db.models import Bank, BankStatus, LRImage, Project, Sample
from sr_engine import list_models, load_engine
from sr_engine.data import data_dir
from sr_engine.eval.judge import load_classifier, predict_digits

JUDGE = data_dir() / "classifiers" / "mnist-cnn.pt"


def test_the_choice_rule():
    """Fair share: two readings with >= 25% each; gold: every probe sample read as the true digit."""
    probes = [ProbedDigit(0, 400, 5, ((5, 5), (6, 3)), 8), ProbedDigit(1, 900, 8, ((8, 4), (9, 4)), 8),
              ProbedDigit(2, 1400, 0, ((0, 8),), 8), ProbedDigit(3, 1900, 3, ((3, 7), (8, 1)), 8),
              ProbedDigit(4, 2400, 1, ((1, 8),), 8), ProbedDigit(5, 2900, 0, ((0, 8),), 8)]
    assert FAIR_SHARE == 0.25 and [p.ambiguous for p in probes] == [True, True, False, False, False, False]
    amb, gold = ambiguous_digits(probes, count=2, gold=2)
    assert [p.index for p in amb] == [1, 0]  # the larger second share first
    assert [p.index for p in gold] == [2, 4]  # clear, distinct digits
    amb, _ = ambiguous_digits(probes, count=3)
    assert [p.index for p in amb] == [1, 0, 3]  # too few qualify: the next read two ways at all


@pytest.mark.slow
@pytest.mark.skipif(DEMO_MODEL not in list_models() or not JUDGE.is_file(),
                    reason="the shipped mnist-x8 or the digit judge is not installed")
def test_the_demo_banks_split_the_reader():
    eng, factory = make_store("sqlite://")
    engine = load_engine(DEMO_MODEL)
    accounts = bootstrap_demo(factory, [DEMO_MODEL], lambda name: engine, plates=False)
    assert accounts is not None
    judge = load_classifier(JUDGE)
    with session_scope(factory) as s:
        project = s.scalars(select(Project)).one()
        assert project.model_name == "mnist-x8" and project.bank_size == 16
        rows = s.execute(select(LRImage, Bank).join(Bank, Bank.image_id == LRImage.id)
                         .where(Bank.status == BankStatus.complete)).all()
        readings = {}
        for image, bank in rows:
            samples = s.scalars(select(Sample).where(Sample.bank_id == bank.id).order_by(Sample.index)).all()
            read = predict_digits(judge, [decode_png(x.png) for x in samples]).argmax(1)
            readings[image.id] = (image.is_gold, image.label, Counter(int(d) for d in read))
    eng.dispose()
    regular = [c for gold, _, c in readings.values() if not gold]
    gold = [(label, c) for is_gold, label, c in readings.values() if is_gold]
    assert len(regular) == 8 and len(gold) == 2
    split = sum(len(c) >= 2 for c in regular)
    assert split >= 5, readings  # most of the non-gold banks hold at least two readings by the reader
    for label, c in gold:
        assert c.most_common(1)[0][0] == int(label), readings
