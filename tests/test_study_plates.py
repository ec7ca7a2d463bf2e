"""The plates' simulated-rater study (sr_engine.bench.study_plates) end to end on cached bank readings made up for
the test (the real banks take minutes; one test makes two real banks of two samples): calibration on training
plates writes settings that evaluation and the annotation services read, the figures are in range, the plots are
written, and evaluation plates are refused for calibration."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from annotation.consensus import consensus_config
from sr_engine.bench.study_plates import (
    PANEL_NAMES,
    PlateStudyConfig,
    adaptive,
    bank_readings,
    calibrate,
    evaluate,
    fit_plate_temperature,
    fit_project,
    plate_probabilities,
    simulate_project,
)
from sr_engine.bench.study import engine_settings
from sr_engine import load_engine
from sr_engine.calibration import calibration_path, load_calibration, save_calibration
from sr_engine.consensus import PLATE_CONFIG, ConsensusConfig
from sr_engine.plates import ALPHABET, EVAL_FONTS, TRAIN_FONTS, is_eval_string, random_string
from sr_engine.raters_sim import careful, confuser, simulate_strings

CFG = PlateStudyConfig(bank_n=8, train_plates=12, gold_plates=3, eval_plates=12, panels=2, betas=(0.0, 1.0),
                       follows=("off",))
SWAP = {"8": "B", "B": "8", "0": "O", "O": "0", "1": "I", "I": "1", "5": "S", "S": "5"}


@functools.cache
def _engine_sha() -> str:
    return load_engine("plates-x4").config["checkpoint_sha256"]


def _cache(path, n, split, seed, bank_n=8, wrong=0.0):
    """Made-up readings: a bank mostly shows the plate's string, sometimes one confusable character swapped; a
    share ``wrong`` of the banks mostly show another first character. Recorded as the shipped engine's banks (its
    SHA-256), so that ``bank_readings`` takes them from the cache."""
    rng = np.random.default_rng(seed)
    texts = [random_string(rng, "eval" if split == "eval" else "train") for _ in range(n)]
    readings = []
    for t in texts:
        row = []
        shown = t
        if rng.random() < wrong:
            shown = ALPHABET[(ALPHABET.index(t[0]) + 1) % len(ALPHABET)] + t[1:]
        for _ in range(bank_n):
            s = list(shown if rng.random() < 0.8 else t)
            if rng.random() < 0.3:
                j = int(rng.integers(len(s)))
                s[j] = SWAP.get(s[j], s[j])
            row.append("".join(s))
        readings.append(row)
    fonts = (EVAL_FONTS if split == "eval" else TRAIN_FONTS)[:1] * n
    np.savez_compressed(path, texts=np.array(texts), fonts=np.array(fonts),
                        split=np.array("eval" if split == "eval" else "train"), readings=np.array(readings),
                        confidence=np.full((n, bank_n), 0.9), engine_sha256=np.array(_engine_sha()),
                        engine_strict=np.array(engine_settings(load_engine("plates-x4"))))


@pytest.fixture()
def banks(tmp_path):
    _cache(tmp_path / "banks-train.npz", CFG.train_plates, "train", 0, wrong=0.2)
    _cache(tmp_path / "banks-gold.npz", CFG.gold_plates, "gold", 1)
    _cache(tmp_path / "banks-eval.npz", CFG.eval_plates, "eval", 2, wrong=0.2)
    return tmp_path


def test_calibrate_then_evaluate(banks):
    out = calibrate(banks, CFG, data_path=banks / "cal.json")
    saved = json.loads((banks / "cal.json").read_text())
    train = [str(t) for t in np.load(banks / "banks-train.npz")["texts"]]
    assert saved["rows"]["calibration_plates"]["texts"] == train and len(saved["grid"]) == 2
    assert not any(is_eval_string(t) for t in train + saved["rows"]["gold_plates"]["texts"])
    cfg = load_calibration(banks / "cal.json", kind="plates")
    assert cfg.beta == out["chosen"]["beta"] and cfg.temperature == pytest.approx(out["chosen"]["temperature"])
    assert cfg.confusion == "one-coin"  # the plates' model
    assert 1 <= saved["adaptive"]["min_raters"] <= CFG.min_raters
    res = evaluate(banks, CFG, data_path=banks / "cal.json")
    m = res["summary"]["mean"]
    assert 0 <= m["ece_posterior"] <= 1 and 0 <= m["acc_posterior"] <= 1 and 0 <= m["vote_saving"] < 1
    assert 0 <= m["acc_majority"] <= 1 and res["summary"]["plates"] == CFG.eval_plates
    for f in ("study.md", "study.csv", "study.json", "reliability.png", "risk_coverage.png"):
        assert (banks / f).stat().st_size > 0


@pytest.mark.parametrize("what", ["split", "string", "font"])
def test_calibration_refuses_evaluation_plates(banks, what):
    d = dict(np.load(banks / "banks-train.npz"))
    if what == "split":
        d["split"] = np.array("eval")
    elif what == "string":
        rng = np.random.default_rng(5)
        d["texts"] = np.array([random_string(rng, "eval")] + [str(t) for t in d["texts"][1:]])
    else:
        d["fonts"] = np.array([EVAL_FONTS[0]] + [str(f) for f in d["fonts"][1:]])
    np.savez_compressed(banks / "banks-train.npz", **d)
    with pytest.raises(AssertionError):
        calibrate(banks, CFG, data_path=banks / "cal.json")
    assert not (banks / "cal.json").exists()


def test_adaptive_overlap_spends_between_min_and_max(banks):
    ev = bank_readings("eval", CFG, banks / "banks-eval.npz")
    gold = bank_readings("gold", CFG, banks / "banks-gold.npz")
    p = simulate_project(ev, gold, CFG, 0)
    assert {r.rater for r in p.ratings} == set(PANEL_NAMES) and len(p.ratings) == 7 * len(p.truth)
    plates, spent = adaptive(p, ConsensusConfig(confusion="one-coin"), CFG)
    assert CFG.min_raters * p.n_scored <= spent <= CFG.max_raters * p.n_scored
    assert len(plates) == p.n_scored


def test_the_temperature_fixes_overconfident_plates(banks):
    sloppy = PlateStudyConfig(**{**CFG.__dict__, "careful": 0.8, "careless": 0.6})  # some plates read wrong
    _cache(banks / "banks-train.npz", CFG.train_plates, "train", 0, wrong=0.5)
    ev = bank_readings("train", sloppy, banks / "banks-train.npz")
    gold = bank_readings("gold", sloppy, banks / "banks-gold.npz")
    plates, truth = [], []
    for s in range(3):
        p = simulate_project(ev, gold, sloppy, s)
        plates += fit_project(p, PLATE_CONFIG)
        truth += p.truth[: p.n_scored]
    right = np.array([c.reading == t for c, t in zip(plates, truth)])
    assert 0 < right.mean() < 1
    t, loss = fit_plate_temperature(plates, right)
    p1 = plate_probabilities(plates)
    assert np.allclose(p1, [c.probability for c in plates])  # T = 1 is the fit's own probability
    loss1 = float(-np.where(right, np.log(np.clip(p1, 1e-9, 1)), np.log1p(-np.clip(p1, 0, 1 - 1e-9))).mean())
    assert loss <= loss1 + 1e-9


def test_a_follower_types_what_the_bank_shows_and_a_confuser_its_confusion():
    rng = np.random.default_rng(0)
    K = len(ALPHABET)
    r = careful(K, 0.99, "f", follow=1.0)
    out = simulate_strings(["AB8", "XYZW"], [r], rng, alphabet=ALPHABET, shown=[{"AB8": 0.25, "ABB": 0.75},
                                                                                  {"XYZ1": 1.0}])
    assert out[0].reading in ("AB8", "ABB") and out[1].reading == "XYZ1"
    with pytest.raises(ValueError, match="pass shown"):
        simulate_strings(["AB8"], [r], rng, alphabet=ALPHABET)
    b = confuser(K, ALPHABET.index("8"), ALPHABET.index("B"), rate=0.5)
    assert np.allclose(b.confusion.sum(1), 1) and b.confusion[ALPHABET.index("8"), ALPHABET.index("B")] > 0.5
    typed = simulate_strings(["8" * 400], [b], rng, alphabet=ALPHABET)[0].reading
    assert 0.4 < typed.count("B") / 400 < 0.65


def test_real_banks_are_read_and_cached(tmp_path):
    cfg = PlateStudyConfig(bank_n=2, steps=2, train_plates=2)
    got = bank_readings("train", cfg, tmp_path / "banks-train.npz")
    assert got["readings"].shape == (2, 2) and str(got["split"]) == "train"
    assert set(map(str, got["fonts"])) <= set(TRAIN_FONTS)
    again = bank_readings("train", cfg, tmp_path / "banks-train.npz")  # from the cache
    assert (again["readings"] == got["readings"]).all()
    assert str(again["engine_sha256"]) == load_engine("plates-x4").config["checkpoint_sha256"]

    # a cache made with other engine weights is not used: the banks are sampled again and the cache rewritten
    stale = dict(got, readings=np.full_like(got["readings"], "ZZZ"), engine_sha256=np.array("0" * 64))
    np.savez_compressed(tmp_path / "banks-train.npz", **stale)
    fresh = bank_readings("train", cfg, tmp_path / "banks-train.npz")
    assert (fresh["readings"] == got["readings"]).all()
    assert str(np.load(tmp_path / "banks-train.npz")["engine_sha256"]) == str(got["engine_sha256"])
    # and so is one sampled with other strict-mode settings (a shrink threshold, a de-clip amount)
    np.savez_compressed(tmp_path / "banks-train.npz", **dict(got, readings=np.full_like(got["readings"], "ZZZ"),
                                                              engine_strict=np.array("{}")))
    assert (bank_readings("train", cfg, tmp_path / "banks-train.npz")["readings"] == got["readings"]).all()


def test_the_app_loads_each_kinds_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_ENGINE_DATA", str(tmp_path))
    assert consensus_config("plates") == PLATE_CONFIG  # no file: the per-position default
    plates = ConsensusConfig(confusion="one-coin", beta=0.5, follow="fit", temperature=1.7)
    save_calibration(calibration_path(kind="plates"), plates)
    assert calibration_path(kind="plates").name == "plates-x4.json"
    assert consensus_config("plates") == plates
    assert consensus_config("digits") == ConsensusConfig()  # digits read their own file (absent here)
    with pytest.raises(ValueError, match="kind"):
        load_calibration(kind="words")
