"""Aggregation and agreement on hand-computed examples: approval, Borda, Plackett-Luce, ties, the consensus
reading and its share, Krippendorff's alpha (known values), Jaccard, rater vs consensus, gold accuracy, time."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.aggregate import (Vote, aggregate_image, approval_counts, borda_scores, consensus_reading,
                                  plackett_luce, ranking, top_m)
from annotation.agreement import (agreement_report, alpha_on_picks, alpha_on_readings, jaccard, pairwise_jaccard,
                                  picks_table)

# three raters, a bank of 4 samples, k = 2
VOTES = [Vote(1, 0, (0, 1), "5", 10.0), Vote(2, 0, (1, 0), "5", 20.0), Vote(3, 0, (0, 2), "6", 40.0)]


def test_approval_and_borda():
    np.testing.assert_array_equal(approval_counts(VOTES, 4), [3, 2, 1, 0])
    # rank 1 earns k = 2 points, rank 2 earns 1: s0 = 2 + 1 + 2, s1 = 1 + 2, s2 = 1
    np.testing.assert_array_equal(borda_scores(VOTES, 4, 2), [5, 3, 1, 0])
    assert top_m(VOTES, 4, 2, 2) == [0, 1]
    assert top_m(VOTES, 4, 2, 4) == [0, 1, 2]  # never a sample nobody picked


def test_ties_by_borda_then_index():
    # s0 and s1 both approved twice; s1 has the higher Borda score; s2 and s3 tie on both: lower index first
    votes = [Vote(1, 0, (1, 0)), Vote(2, 0, (1, 2)), Vote(3, 0, (0, 3))]
    a, b = approval_counts(votes, 4), borda_scores(votes, 4, 2)
    np.testing.assert_array_equal(a, [2, 2, 1, 1])
    np.testing.assert_array_equal(b, [3, 4, 1, 1])
    assert ranking(a, b) == [1, 0, 2, 3]
    assert ranking([1, 1, 1], [2, 2, 2]) == [0, 1, 2]


def test_plackett_luce():
    # k = 1 of n = 2 is Bradley-Terry: 3 wins to 1 gives worths 3 : 1 (maximum likelihood, no prior)
    votes = [Vote(i, 0, (0,)) for i in range(3)] + [Vote(9, 0, (1,))]
    np.testing.assert_allclose(plackett_luce(votes, 2, prior=0.0), [0.75, 0.25], atol=1e-8)
    w = plackett_luce(VOTES, 4)
    assert w.sum() == pytest.approx(1) and (w > 0).all()
    assert list(np.argsort(-w)) == [0, 1, 2, 3]  # the same order as approval and Borda here
    np.testing.assert_allclose(plackett_luce([], 3), [1 / 3] * 3)


def test_bad_votes_raise():
    with pytest.raises(ValueError):
        approval_counts([Vote(1, 0, (0, 0))], 4)
    with pytest.raises(ValueError):
        approval_counts([Vote(1, 0, (4,))], 4)
    with pytest.raises(ValueError):
        borda_scores([Vote(1, 0, (0, 1, 2))], 4, 2)


def test_consensus_reading_and_share():
    c = consensus_reading(["5"] * 22 + ["6"] * 8)
    assert (c.text, c.count, c.total, c.tied) == ("5", 22, 30, False)
    assert c.share == pytest.approx(22 / 30)
    c = consensus_reading([" 5", "5 ", None, "", "6"])  # trimmed; blanks and None are not readings
    assert (c.text, c.count, c.total) == ("5", 2, 3)
    c = consensus_reading(["8B", "BB"])
    assert c.tied and c.text == "8B" and c.share == 0.5
    assert consensus_reading([]).text is None and consensus_reading([]).share == 0.0
    agg = aggregate_image(VOTES, 0, 4, 2, 2)
    assert agg.top == [0, 1] and agg.consensus.text == "5" and agg.consensus.share == pytest.approx(2 / 3)


def test_alpha_on_picks_hand_computed():
    """k = 1, three raters pick s0, s0, s1 of three samples. Values per unit (rank or 0): s0 (1, 1, 0),
    s1 (0, 0, 1), s2 (0, 0, 0). Coincidences (each unit weighted 1 / (m_u - 1) = 1/2): o00 = 1 + 3 = 4,
    o11 = 1, o01 = o10 = 2; n0 = 6, n1 = 3, n = 9. alpha = 1 - (n - 1) * (o01 + o10) / (2 n0 n1)
    = 1 - 8 * 4 / 36 = 1/9."""
    votes = [Vote(1, 0, (0,)), Vote(2, 0, (0,)), Vote(3, 0, (1,))]
    np.testing.assert_array_equal(picks_table(votes, 3), [[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert alpha_on_picks(votes, 3) == pytest.approx(1 / 9)
    same = [Vote(1, 0, (2, 0)), Vote(2, 0, (2, 0))]
    assert alpha_on_picks(same, 4) == pytest.approx(1.0)  # perfect agreement
    assert alpha_on_picks(same[:1], 4) is None  # one rater: undefined


def test_alpha_on_readings_hand_computed():
    """Two raters, four images: A reads 1 1 2 2, B reads 1 1 2 1. o11 = 4, o22 = 2, o12 = o21 = 1; n1 = 5,
    n2 = 3, n = 8: alpha = 1 - 7 * 2 / (2 * 5 * 3) = 8/15."""
    a = [Vote(1, i, (0,), r) for i, r in enumerate("1122")]
    b = [Vote(2, i, (0,), r) for i, r in enumerate("1121")]
    assert alpha_on_readings(a + b) == pytest.approx(8 / 15)


def test_alpha_on_readings_krippendorff_reference():
    """Krippendorff's own example (nominal alpha 0.691), with missing readings."""
    table = [[None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
             [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
             [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4]]
    votes = [Vote(r, u, (0,), f"digit {v}") for r, row in enumerate(table) for u, v in enumerate(row)
             if v is not None]
    assert alpha_on_readings(votes) == pytest.approx(0.691358, abs=1e-6)
    assert alpha_on_readings([Vote(1, 0, (0,), "5"), Vote(2, 0, (0,), "5")]) is None  # one value: undefined


def test_jaccard():
    assert jaccard({0, 1}, {1, 2}) == pytest.approx(1 / 3)
    # pairs: {0,1}-{0,1} = 1, {0,1}-{0,2} = 1/3, {0,1}-{0,2} = 1/3
    assert pairwise_jaccard(VOTES) == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert pairwise_jaccard(VOTES[:1]) is None


def test_agreement_report():
    votes = VOTES + [Vote(1, 1, (3, 2), "7", 30.0), Vote(2, 1, (3, 2), "1", 50.0)]
    rep = agreement_report(votes, {0: 4, 1: 4}, k=2, labels={1: "7"})
    assert [i.image for i in rep.images] == [0, 1]
    assert rep.images[1].alpha_picks == pytest.approx(1.0) and rep.images[1].jaccard_mean == 1.0
    assert rep.images[0].reading_share == pytest.approx(2 / 3)
    r1, r2, r3 = rep.raters
    # rater 3 vs the others' top-2 on image 0: {0, 1} vs {0, 2}: 1/3; reading "6" vs the others' "5": no
    assert r3.jaccard_vs_consensus == pytest.approx(1 / 3) and r3.reading_agreement == 0.0
    # rater 1: image 0, others (2, 3) have approval s0 2, s1 1, s2 1; Borda s1 2 > s2 1: top-2 {0, 1}: J = 1;
    # image 1: the other rater picked the same: J = 1. Readings: "5" == "5", "7" vs "1": 1/2
    assert r1.jaccard_vs_consensus == 1.0 and r1.reading_agreement == 0.5
    assert (r1.gold_total, r1.gold_correct, r1.gold_accuracy) == (1, 1, 1.0)
    assert (r2.gold_total, r2.gold_correct, r2.gold_accuracy) == (1, 0, 0.0)
    assert r3.gold_accuracy is None and r3.n_tasks == 1
    assert r1.median_seconds == 20.0 and r2.median_seconds == 35.0
    assert rep.median_seconds == 30.0  # of 10, 20, 40, 30, 50
    # readings alpha across the project (units = images): "5" "5" "6" on image 0, "7" "1" on image 1
    assert rep.alpha_readings == pytest.approx(alpha_on_readings(votes))
