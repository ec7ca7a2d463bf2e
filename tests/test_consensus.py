"""The calibrated consensus (sr_engine.consensus): Dawid-Skene by EM with gold anchors and the bank's evidence,
calibration numbers, and the per-position variant for plates. Synthetic, seeded votes from sr_engine.raters_sim."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sr_engine.consensus import (
    DIGITS,
    OTHER,
    ConsensusConfig,
    Rating,
    dawid_skene,
    fit_consensus,
    fit_plate_consensus,
)
from sr_engine.reliability import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
    resolved,
    risk_coverage,
)
from sr_engine.raters_sim import (
    biased,
    careful,
    careless,
    mixed_panel,
    permuted,
    simulate_ratings,
    simulate_strings,
    spammer,
)

K = 10
ACCURACIES = (0.95, 0.85, 0.75, 0.65, 0.55)


def _panel_votes(n: int, seed: int):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K, n)
    panel = [careful(K, a, name=f"r{a}") for a in ACCURACIES]
    return truth, simulate_ratings(truth, panel, rng)


def _empirical_confusion(ratings, truth, rater):
    c = np.zeros((K, K))
    for r in ratings:
        if r.rater == rater:
            c[truth[r.image], int(r.reading)] += 1
    return c / c.sum(1, keepdims=True)


def test_em_recovers_known_accuracies_on_400_items():
    truth, ratings = _panel_votes(400, seed=0)
    res = fit_consensus(ratings)
    assert res.converged
    for a in ACCURACIES:
        r = res.rater(f"r{a}")
        assert abs(r.accuracy - a) < 0.05, (a, r.accuracy)
        assert r.n_votes == 400
        assert np.allclose(r.confusion.sum(1), 1)
    pred = np.array([int(c.reading) for c in res.images])
    assert (pred == truth).mean() > 0.95  # better than the best rater alone


def test_em_recovers_known_confusion_matrices_on_2000_items():
    truth, ratings = _panel_votes(2000, seed=1)
    res = fit_consensus(ratings)
    for a in ACCURACIES:
        r = res.rater(f"r{a}")
        assert np.abs(np.diag(r.confusion) - a).mean() < 0.05
        # what an oracle that knows the truth would count from the same votes
        assert np.abs(r.confusion - _empirical_confusion(ratings, truth, r.rater)).max() < 0.03


def test_em_recovers_a_biased_raters_off_diagonal():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, K, 1500)
    b = biased(K, toward=3, accuracy=0.7, strength=0.9, name="biased")
    ratings = simulate_ratings(truth, [careful(K, 0.9, name=f"c{i}") for i in range(3)] + [b], rng)
    est = fit_consensus(ratings).rater("biased").confusion
    assert np.abs(est - _empirical_confusion(ratings, truth, "biased")).max() < 0.03
    assert np.abs(np.diag(est) - 0.7).mean() < 0.05
    off3 = [est[k, 3] for k in range(K) if k != 3]
    assert min(off3) > 0.15  # the pull toward 3 is found on every row


def test_one_coin_and_uniform_class_prior_options():
    truth, ratings = _panel_votes(400, seed=0)
    coin = fit_consensus(ratings, config=ConsensusConfig(confusion="one-coin", class_prior="uniform"))
    assert np.allclose(coin.class_prior, 1 / K)
    for a in ACCURACIES:  # the simulated errors are uniform, so one-coin is the true model here
        c = coin.rater(f"r{a}").confusion
        assert abs(c[0, 0] - a) < 0.04 and np.allclose(np.diag(c), c[0, 0])
        assert np.allclose(c[~np.eye(K, dtype=bool)], (1 - c[0, 0]) / (K - 1))
    assert (coin.posteriors.argmax(1) == truth).mean() > 0.95
    shrunk = fit_consensus(ratings, config=ConsensusConfig(shrinkage=50.0))
    plain = fit_consensus(ratings)
    off = ~np.eye(K, dtype=bool)
    spread = [np.std(r.confusion[off]) for r in (shrunk.rater("r0.55"), plain.rater("r0.55"))]
    assert spread[0] < spread[1]  # pulled toward the even spread of errors
    with pytest.raises(ValueError):
        ConsensusConfig(confusion="two-coin")


def test_result_does_not_depend_on_rating_order_or_rater_names():
    _, ratings = _panel_votes(150, seed=11)
    rng = np.random.default_rng(12)
    shuffled = [ratings[i] for i in rng.permutation(len(ratings))]
    renamed = [Rating(r.image, "x" + str(r.rater), r.reading) for r in shuffled]
    a = fit_consensus(ratings, images=range(150))
    b = fit_consensus(renamed, images=range(150))
    assert np.allclose(a.posteriors, b.posteriors, atol=1e-6)
    assert b.rater("xr0.95").accuracy == pytest.approx(a.rater("r0.95").accuracy, abs=1e-6)


def test_spammer_influence_goes_to_near_zero():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, K, 400)
    panel = [careful(K, a, name=f"r{a}") for a in ACCURACIES[:4]] + [spammer(K)]
    ratings = simulate_ratings(truth, panel, rng)
    with_spam = fit_consensus(ratings, images=range(400))
    without = fit_consensus([r for r in ratings if r.rater != "spammer"], images=range(400))
    assert abs(with_spam.rater("spammer").accuracy - 1 / K) < 0.05
    tv = 0.5 * np.abs(with_spam.posteriors - without.posteriors).sum(1)  # total variation per image
    assert tv.mean() < 0.02
    assert (with_spam.posteriors.argmax(1) == without.posteriors.argmax(1)).mean() >= 0.98


def test_gold_items_anchor_a_systematically_wrong_majority():
    rng = np.random.default_rng(4)
    n, n_gold = 400, 60
    truth = rng.integers(0, K, n)
    panel = [permuted(K, 1, 0.95, name="perm-a"), permuted(K, 1, 0.9, name="perm-b"), careful(K, 0.8, name="honest")]
    ratings = simulate_ratings(truth, panel, rng)
    gold = {i: str(truth[i]) for i in range(n_gold)}
    free = np.arange(n) >= n_gold

    unanchored = fit_consensus(ratings)
    assert (unanchored.posteriors.argmax(1)[free] == truth[free]).mean() < 0.1  # the wrong majority wins

    res = fit_consensus(ratings, gold=gold)
    assert (res.posteriors.argmax(1)[free] == truth[free]).mean() > 0.95
    for name in ("perm-a", "perm-b"):
        r = res.rater(name)
        assert [int(np.argmax(r.confusion[k])) for k in range(K)] == [(k + 1) % K for k in range(K)]
        assert r.accuracy < 0.1 and r.gold_accuracy is not None and r.gold_accuracy < 0.2
        assert r.gold_votes == n_gold
    assert res.rater("honest").accuracy > 0.7
    g = res.image(0)
    assert g.gold and g.reading == str(truth[0]) and g.probability == 1.0


def _tied_panel():
    """20 well-rated images (two good raters agree) and image 'x', where they split 5 against 6."""
    ratings = []
    for i in range(20):
        ratings += [Rating(i, "a", str(i % K)), Rating(i, "b", str(i % K))]
    ratings += [Rating("x", "a", "5"), Rating("x", "b", "6")]
    return ratings


def test_evidence_prior_moves_the_posterior_and_beta_zero_has_no_effect():
    ratings = _tied_panel()
    five, six = DIGITS.index("5"), DIGITS.index("6")
    plain = fit_consensus(ratings).image("x")
    towards5 = fit_consensus(ratings, evidence={"x": {"5": 48, "6": 16}}).image("x")
    towards6 = fit_consensus(ratings, evidence={"x": {"5": 0.2, "6": 0.8}}).image("x")
    assert abs(plain.posterior[five] - plain.posterior[six]) < 0.05
    assert towards5.reading == "5" and towards5.posterior[five] > plain.posterior[five] + 0.1
    assert towards6.reading == "6" and towards6.posterior[six] > plain.posterior[six] + 0.1
    assert towards5.evidence[five] == pytest.approx(0.75)
    stronger = fit_consensus(ratings, evidence={"x": {"5": 48, "6": 16}}, config=ConsensusConfig(beta=2.0))
    assert stronger.image("x").posterior[five] > towards5.posterior[five]

    rng = np.random.default_rng(5)
    truth = rng.integers(0, K, 200)
    votes = simulate_ratings(truth, mixed_panel(K), rng, coverage=0.6)
    evidence = {i: {str((t + 1) % K): 0.7, str(t): 0.3} for i, t in enumerate(truth)}  # misleading on purpose
    a = fit_consensus(votes, images=range(200))
    b = fit_consensus(votes, images=range(200), evidence=evidence, config=ConsensusConfig(beta=0.0))
    assert np.allclose(a.posteriors, b.posteriors, atol=1e-12)


def _bank_evidence(truth, rng):
    """Reading shares of simulated banks: 60% nearly unanimous and right, 30% split, 10% mostly wrong."""
    ev = np.zeros((len(truth), K))
    kind = rng.random(len(truth))
    for i, t in enumerate(truth):
        other = (t + rng.integers(1, K)) % K
        if kind[i] < 0.6:
            s = rng.uniform(0.9, 1.0)
        elif kind[i] < 0.9:
            s = rng.uniform(0.3, 0.8)
        else:
            s = 1 - rng.uniform(0.6, 1.0)
        ev[i, t], ev[i, other] = s, 1 - s
    return ev


def test_modelling_raters_who_follow_the_bank_improves_calibration():
    rng = np.random.default_rng(6)
    n, n_gold = 600, 50
    truth = rng.integers(0, K, n)
    ev = _bank_evidence(truth, rng)
    ratings = simulate_ratings(truth, mixed_panel(K, follow=0.4), rng, shown=ev)
    evidence = {i: {str(k): ev[i, k] for k in range(K) if ev[i, k] > 0} for i in range(n)}
    gold = {i: str(truth[i]) for i in range(n_gold)}
    free = np.arange(n) >= n_gold

    def ece(cfg):
        res = fit_consensus(ratings, gold=gold, evidence=evidence, images=range(n), config=cfg)
        ok = res.posteriors.argmax(1) == truth
        return expected_calibration_error(res.posteriors.max(1)[free], ok[free]), res

    e_off, _ = ece(ConsensusConfig())
    e_fit, res = ece(ConsensusConfig(follow="fit"))
    assert e_fit < e_off - 0.015
    assert 0.1 < res.follow_rate < 0.6
    e_fixed, fixed = ece(ConsensusConfig(follow="fixed", follow_rate=res.follow_rate))
    assert fixed.follow_rate == res.follow_rate and e_fixed < e_off


def test_fitting_the_follow_rate_without_evidence_warns(caplog):
    ratings = _tied_panel()
    with caplog.at_level("WARNING", logger="sr_engine.consensus"):
        fit_consensus(ratings, config=ConsensusConfig(follow="fit"), shown={"x": {"5": 1.0}})
    assert "not identified" in caplog.text


def test_unknown_readings_are_refused_or_bucketed_and_blanks_are_no_votes():
    ratings = [Rating(0, "a", "5"), Rating(0, "b", " 5 "), Rating(0, "c", "S"), Rating(1, "a", None),
               Rating(1, "b", "?"), Rating(1, "c", "  ")]
    with pytest.raises(ValueError, match="not in the label set"):
        fit_consensus(ratings)
    res = fit_consensus(ratings, config=ConsensusConfig(unknown="other"))
    assert res.labels == DIGITS + (OTHER,) and res.posteriors.shape == (2, K + 1)
    assert res.image(0).reading == "5" and res.image(0).n_votes == 3
    assert res.image(1).n_votes == 0
    assert res.rater("c").confusion.shape == (K + 1, K + 1)
    with pytest.raises(ValueError, match="more than one reading"):
        fit_consensus(ratings[:1] * 2, config=ConsensusConfig(unknown="other"))
    with pytest.raises(ValueError):
        ConsensusConfig(unknown="drop")
    cfg = ConsensusConfig(beta=0.5, follow="fit", follow_pseudocounts=(2.0, 8.0), unknown="other")
    assert ConsensusConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown consensus settings"):
        ConsensusConfig.from_dict({"betta": 1.0})
    with pytest.raises(ValueError):
        ConsensusConfig(follow="sometimes")


def test_posteriors_are_distributions_on_random_panels():
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        n, R, k = int(rng.integers(1, 40)), int(rng.integers(1, 6)), int(rng.integers(2, 6))
        V = int(rng.integers(0, 80))
        cfg = ConsensusConfig(follow=("off", "fixed", "fit")[seed % 3], confusion=("full", "one-coin")[seed % 2])
        fit = dawid_skene(rng.integers(0, n, V), rng.integers(0, R, V), rng.integers(0, k, V), n, R, k,
                          gold=np.where(rng.random(n) < 0.2, rng.integers(0, k, n), -1),
                          log_prior=rng.normal(size=(n, k)), shown=rng.dirichlet(np.ones(k), n), config=cfg)
        assert np.allclose(fit.posteriors.sum(1), 1) and (fit.posteriors >= 0).all()
        assert np.allclose(fit.confusion.sum(2), 1) and np.isclose(fit.class_prior.sum(), 1)
        assert 0 <= fit.follow_rate < 1 and (fit.follow_rate == 0) == (cfg.follow == "off")


# ---- calibration ----------------------------------------------------------------------------------------------
def test_ece_of_calibrated_and_overconfident_probabilities():
    rng = np.random.default_rng(7)
    p = rng.uniform(0.1, 1.0, 20000)
    correct = rng.random(20000) < p
    assert expected_calibration_error(p, correct) < 0.02
    assert expected_calibration_error(p ** 0.2, correct) > 0.15
    diag = reliability_diagram(p, correct, bins=10)
    assert diag.count.sum() == 20000 and len(diag.edges) == 11
    assert np.nanmax(np.abs(diag.accuracy - diag.confidence)) < 0.05
    assert diag.ece == pytest.approx(expected_calibration_error(p, correct))
    assert expected_calibration_error([1.0, 1.0], [True, False]) == pytest.approx(0.5)
    assert np.isnan(reliability_diagram([0.95], [True]).accuracy[0])


def test_fit_temperature_reduces_ece_on_held_out_data():
    rng = np.random.default_rng(8)
    n, k = 40000, 10
    logits = rng.normal(size=(n, k)) * 2.0
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = (rng.random((n, 1)) > np.cumsum(true_p, 1)).sum(1)  # one draw from each row
    over = apply_temperature(true_p, 1 / 3)  # three times too sharp
    cal, held = slice(0, n // 2), slice(n // 2, n)
    T = fit_temperature(over[cal], truth[cal])
    assert 2.7 < T < 3.3
    fixed = apply_temperature(over[held], T)

    def ece(p):
        return expected_calibration_error(p.max(1), p.argmax(1) == truth[held])

    assert ece(over[held]) > 0.1 and ece(fixed) < 0.02
    assert abs(ece(fixed) - ece(true_p[held])) < 0.01  # as good as the true probabilities
    assert (fixed.argmax(1) == over[held].argmax(1)).all()


def test_temperature_in_the_config_softens_posteriors_but_not_gold():
    rng = np.random.default_rng(9)
    truth = rng.integers(0, K, 100)
    ratings = simulate_ratings(truth, mixed_panel(K), rng)
    gold = {0: str(truth[0])}
    a = fit_consensus(ratings, gold=gold)
    b = fit_consensus(ratings, gold=gold, config=ConsensusConfig(temperature=2.0))
    assert np.allclose(b.posteriors[1:], apply_temperature(a.posteriors[1:], 2.0))
    assert b.image(0).probability == 1.0 and b.temperature == 2.0
    assert all(x.probability <= y.probability + 1e-12 for x, y in zip(b.images, a.images))


def test_risk_coverage_and_resolved():
    probs = np.array([0.99, 0.9, 0.9, 0.6, 0.3])
    correct = np.array([True, True, False, True, False])
    rc = risk_coverage(probs, correct)
    assert np.allclose(rc.threshold, [0.99, 0.9, 0.6, 0.3])
    assert np.allclose(rc.coverage, [0.2, 0.6, 0.8, 1.0])
    assert np.allclose(rc.risk, [0.0, 1 / 3, 0.25, 0.4])
    assert rc.aurc == pytest.approx(0.2 * 0 + 0.4 / 3 + 0.2 * 0.25 + 0.2 * 0.4)
    assert rc.accuracy_at(0.9) == pytest.approx((0.6, 2 / 3))
    assert resolved(0.9, 0.9) and not resolved(0.89, 0.9)
    assert resolved(probs, 0.9).tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError):
        resolved(0.5, 0.0)


# ---- plates ---------------------------------------------------------------------------------------------------
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def test_plate_consensus_per_position_on_a_small_example():
    ratings = [
        Rating("p1", "a", "8B0D12"), Rating("p1", "b", "8B0D12"), Rating("p1", "c", "BB0D12"),
        Rating("p1", "d", "8B?D12"), Rating("p1", "e", "8B0D1"),  # one unreadable character, one short reading
        Rating("p2", "a", "AX7"), Rating("p2", "b", "AX7"), Rating("p2", "c", "AX7"), Rating("p2", "d", "AY7"),
    ]
    res = fit_plate_consensus(ratings, ALPHABET)
    p1, p2 = res.image("p1"), res.image("p2")
    assert p1.reading == "8B0D12" and p1.length == 6 and p1.n_readings == 5 and p1.dropped == 1
    assert [p.n_votes for p in p1.positions] == [4, 4, 3, 4, 4, 4]
    assert p1.probability == pytest.approx(math.prod(p.probability for p in p1.positions))
    assert p1.positions[0].probability < p1.positions[1].probability  # position 1 was contested
    assert p2.reading == "AX7" and p2.dropped == 0
    assert 0 < p1.probability < 1 and p1.is_resolved(p1.probability) and not p1.is_resolved(min(1.0, p1.probability
                                                                                               + 1e-9))
    # the bank's evidence decides a split position
    split = [Rating("s", "a", "8B"), Rating("s", "b", "BB")]
    to_b = fit_plate_consensus(ratings + split, ALPHABET, evidence={"s": {"BB": 30, "8B": 2, "BBB": 5}})
    to_8 = fit_plate_consensus(ratings + split, ALPHABET, evidence={"s": {"8B": 30, "BB": 2}})
    assert to_b.image("s").reading == "BB" and to_8.image("s").reading == "8B"
    # gold fixes the length and the characters
    g = fit_plate_consensus(ratings, ALPHABET, gold={"p2": "AY7"}).image("p2")
    assert g.gold and g.reading == "AY7" and g.probability == 1.0


def test_plate_length_ties_and_unknown_characters():
    ratings = [Rating(0, "a", "AB"), Rating(0, "b", "ABC")]
    assert fit_plate_consensus(ratings, ALPHABET).image(0).length == 3  # tie, no evidence: the longer
    assert fit_plate_consensus(ratings, ALPHABET, evidence={0: {"AB": 1.0}}).image(0).length == 2
    no_reading = fit_plate_consensus(ratings, ALPHABET, images=[0, 1]).image(1)
    assert no_reading.reading is None and no_reading.probability == 0.0
    with pytest.raises(ValueError, match="not in the label set"):
        fit_plate_consensus([Rating(0, "a", "A*")], ALPHABET)
    other = fit_plate_consensus([Rating(0, "a", "A*")], ALPHABET, config=ConsensusConfig(unknown="other"))
    assert other.image(0).positions[1].character == OTHER


def test_plate_consensus_outweighs_a_spammer_and_finds_reliabilities():
    rng = np.random.default_rng(10)
    truth = ["".join(rng.choice(list(ALPHABET), size=int(rng.integers(5, 9)))) for _ in range(80)]
    k = len(ALPHABET)
    panel = [careful(k, 0.95, "c1"), careful(k, 0.9, "c2"), careless(k, 0.75, "sloppy"), spammer(k, "spam")]
    ratings = simulate_strings(truth, panel, rng, alphabet=ALPHABET)
    res = fit_plate_consensus(ratings, ALPHABET)
    right = np.mean([c.reading == t for c, t in zip(res.images, truth)])
    assert right > 0.85
    full = fit_plate_consensus(ratings, ALPHABET, config=ConsensusConfig(confusion="full"))
    assert right >= np.mean([c.reading == t for c, t in zip(full.images, truth)])  # why plates default to one-coin
    assert res.image(0).length == len(truth[0])
    assert abs(res.rater("spam").accuracy - 1 / k) < 0.06
    assert res.rater("c1").accuracy > 0.85
    # the probabilities are informative: right strings are more probable than wrong ones
    probs = np.array([c.probability for c in res.images])
    ok = np.array([c.reading == t for c, t in zip(res.images, truth)])
    if (~ok).any():
        assert probs[ok].mean() > probs[~ok].mean()
