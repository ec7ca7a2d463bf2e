"""The simulated-rater study's pipeline (sr_engine.bench.study) end to end on cached bank readings made up for the
test (the real banks take minutes): calibration on training rows writes settings that evaluation reads, the
figures are in range, the plots are written, and evaluation rows are refused for calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sr_engine.bench.study import StudyConfig, adaptive, calibrate, evaluate, simulate_project
from sr_engine.calibration import load_calibration
from sr_engine.consensus import ConsensusConfig
from sr_engine.raters_sim import mixed_panel

CFG = StudyConfig(bank_n=8, train_per_digit=3, eval_per_digit=3, gold_per_digit=1, panels=2,
                  betas=(0.0, 1.0), follows=("off",))


def _cache(path, rows, seed, n=8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), len(rows) // 10)
    # a bank mostly shows its digit, sometimes a neighbour
    readings = np.where(rng.random((len(rows), n)) < 0.8, labels[:, None], (labels[:, None] + 1) % 10)
    np.savez_compressed(path, rows=rows, labels=labels, readings=readings, confidence=np.full((len(rows), n), 0.9))


@pytest.fixture()
def banks(tmp_path):
    train_rows = np.arange(30)  # rows < 400: training
    gold_rows = np.arange(100, 110)
    eval_rows = np.arange(400, 430)  # i % 500 >= 400: evaluation
    _cache(tmp_path / "banks-train.npz", train_rows, 0)
    _cache(tmp_path / "banks-gold.npz", gold_rows, 1)
    _cache(tmp_path / "banks-eval.npz", eval_rows, 2)
    return tmp_path


def test_calibrate_then_evaluate(banks):
    out = calibrate(banks, CFG, data_path=banks / "cal.json")
    saved = json.loads((banks / "cal.json").read_text())
    assert saved["rows"]["calibration_rows"] == list(range(30)) and len(saved["grid"]) == 2
    cfg = load_calibration(banks / "cal.json")
    assert cfg.beta == out["chosen"]["beta"] and cfg.temperature == pytest.approx(out["chosen"]["temperature"])
    res = evaluate(banks, CFG, data_path=banks / "cal.json")
    m = res["summary"]["mean"]
    assert 0 <= m["ece_posterior"] <= 1 and 0 <= m["acc_posterior"] <= 1 and 0 <= m["vote_saving"] < 1
    for f in ("study.md", "study.csv", "study.json", "reliability.png", "risk_coverage.png"):
        assert (banks / f).stat().st_size > 0


def test_calibration_refuses_evaluation_rows(banks):
    _cache(banks / "banks-train.npz", np.arange(400, 430), 0)
    with pytest.raises(AssertionError):
        calibrate(banks, CFG, data_path=banks / "cal.json")


def test_adaptive_overlap_spends_between_min_and_max(banks):
    from sr_engine.bench.study import bank_readings

    ev = bank_readings("eval", 3, CFG, banks / "banks-eval.npz")
    gold = bank_readings("train", 1, CFG, banks / "banks-gold.npz")
    p = simulate_project(ev, gold, CFG, 0)
    post, spent = adaptive(p, ConsensusConfig(), CFG, [r.name for r in mixed_panel(10)])
    assert CFG.min_raters * p.n_scored <= spent <= CFG.max_raters * p.n_scored
    assert post.shape == (p.n_scored, 10)
