"""Readings per position (issue 7, item 4): alignment of readings with '?' and different lengths on hand-made
examples, the consensus string and the "pos i" text, Krippendorff's alpha over positions (hand-computed and
against the package on an independently written table), single characters unchanged; through the store: the
image aggregates, exclusions, the summary export in CSV / JSON / Parquet with provenance; the analyst's HTML."""

from __future__ import annotations

import json

import krippendorff
import numpy as np
import pytest
from sqlalchemy import select

from annotation.aggregate import Vote, aggregate_image
from annotation.positions import (GAP, align, align_pair, alpha_over_positions, distance, normalise,
                                  positional_reading, reference_index)

PLATES = ["8B0D12", "8B0D1", "88OD12", "8?0D12"]


def test_normalise():
    assert normalise("  8b-0d 12\t") == "8B0D12"
    assert normalise("ab\u2013c") == "ABC"  # an en dash is a hyphen too
    assert normalise(" - ") == "" and normalise(None) == ""
    assert normalise("5") == "5"


def test_distance_with_the_wildcard():
    assert distance("8?0D12", "8B0D12") == 0
    assert distance("8?0D12", "8B0D12", wildcard=False) == 1
    assert distance("8B0D1", "8B0D12") == 1 and distance("", "ABC") == 3
    assert distance("88OD12", "8B0D12") == 2


def test_align_pair_places_gaps_by_content_then_at_the_end():
    assert align_pair("8B0D1", "8B0D12")[-1] == (None, "2")
    assert align_pair("ABXC", "ABC") == [("A", "A"), ("B", "B"), ("X", None), ("C", "C")]
    assert align_pair("BCD", "ABCD") == [(None, "A"), ("B", "B"), ("C", "C"), ("D", "D")]
    assert align_pair("??", "ABC") == [("?", "A"), ("?", "B"), (None, "C")]  # nothing to place it by: the end


def test_reference_is_the_medoid_and_question_marks_do_not_win_it():
    # plain Levenshtein sums: 8B0D12 4 (+6 to ??????), 8?0D12 5 (+5) -> tie at 10, fewer '?' wins
    assert reference_index(PLATES + ["??????"]) == 0
    # with the wildcard the all-'?' reading would be at distance <= 1 from everything
    assert reference_index(["????", "ABCD", "ABCE"]) == 1
    assert reference_index(["AB", "ABC"]) == 0  # tie on everything but the text: lexically first


def test_alignment_of_different_lengths_and_question_marks():
    ref, rows = align(PLATES)
    assert ref == 0 and rows == ["8B0D12", "8B0D1" + GAP, "88OD12", "8?0D12"]
    p = positional_reading(PLATES)
    assert p.consensus == "8B0D12" and p.reference == "8B0D12" and p.n_readings == 4
    pos2, pos3, pos6 = p.positions[1], p.positions[2], p.positions[5]
    assert (pos2.counts, pos2.unreadable, pos2.gaps, pos2.consensus, pos2.count) == ({"B": 2, "8": 1}, 1, 0, "B", 2)
    assert pos2.text == "pos 2: B 2 of 4, 8 1 of 4, ? 1 of 4"
    assert pos3.text == "pos 3: 0 3 of 4, O 1 of 4"
    assert pos6.text == "pos 6: 2 3 of 4, gap 1 of 4" and pos6.consensus == "2"
    assert p.lines[0] == "pos 1: 8 4 of 4"
    assert p.text.startswith("pos 1: 8 4 of 4; pos 2: B 2 of 4")


def test_an_extra_character_is_a_dropped_column():
    p = positional_reading(["ABC", "abc", "AB-X-C"])  # normalised: ABC, ABC, ABXC
    assert p.aligned == ("AB-C", "AB-C", "ABXC")
    assert p.consensus == "ABC"
    labels = [x.label for x in p.positions]
    assert labels == ["pos 1", "pos 2", "after pos 2", "pos 3"]
    assert p.positions[2].consensus is None and p.positions[2].text == "after pos 2: X 1 of 3, gap 2 of 3"
    p = positional_reading(["XABC", "ABC", "ABC"])
    assert p.positions[0].label == "before pos 1" and p.consensus == "ABC"


def test_ties_and_unreadable_positions():
    # presence tie (one rater saw a third character, one did not): kept and flagged; no character vote: '?'
    p = positional_reading(["AB", "AB?"])
    assert p.consensus == "AB?" and p.positions[2].tied and p.positions[2].consensus == "?"
    # character tie: the lexically first (code point order: digits before letters), flagged
    p = positional_reading(["8B", "BB"])
    assert p.consensus == "8B" and p.positions[0].tied and p.positions[0].count == 1
    assert not p.positions[1].tied


def test_all_question_marks_empty_and_single_characters():
    p = positional_reading(["????", "????"])
    assert p.consensus == "????" and all(x.unreadable == 2 and not x.counts for x in p.positions)
    assert p.alpha is None  # no values at all
    empty = positional_reading([None, "", "  ", "-"])
    assert (empty.consensus, empty.positions, empty.alpha, empty.n_readings) == (None, (), None, 0)
    assert positional_reading([]).consensus is None
    digits = positional_reading(["5", "5 ", "6", None])
    assert digits.consensus == "5" and not digits.multi_character and len(digits.positions) == 1
    assert digits.positions[0].text == "pos 1: 5 2 of 3, 6 1 of 3"
    assert digits.alpha is None  # one unit: nominal alpha would be 0 whatever the raters did
    assert positional_reading(["?"]).consensus == "?"


def test_alpha_hand_computed():
    """Rows AB, AB, AC: unit 1 (A, A, A), unit 2 (B, B, C). Coincidences (each unit weighted 1 / (m_u - 1) =
    1/2): o_AA = 3, o_BB = 1, o_BC = o_CB = 1; n_A = 3, n_B = 2, n_C = 1, n = 6.
    alpha = 1 - (n - 1) * (o_BC + o_CB) / sum_{c != k} n_c n_k = 1 - 5 * 2 / (2 * (6 + 3 + 2)) = 6/11."""
    assert positional_reading(["AB", "AB", "AC"]).alpha == pytest.approx(6 / 11)
    assert alpha_over_positions(["AB", "AB", "AC"]) == pytest.approx(6 / 11)
    assert positional_reading(["8B0D12"] * 3).alpha == pytest.approx(1.0)  # full agreement, values vary
    assert positional_reading(["8B0D12"]).alpha is None  # one rater
    assert positional_reading(["AAAA", "AAAA"]).alpha is None  # a single value: no variation


def test_alpha_matches_krippendorff_on_an_independent_table():
    # PLATES by hand: raters x positions, '?' and the gap missing
    nan = np.nan
    codes = {c: i for i, c in enumerate("8B0DO12")}
    table = [[codes[c] for c in "8B0D12"],
             [codes[c] for c in "8B0D1"] + [nan],
             [codes[c] for c in "88OD12"],
             [codes["8"], nan] + [codes[c] for c in "0D12"]]
    want = krippendorff.alpha(reliability_data=np.array(table, dtype=float), level_of_measurement="nominal")
    got = positional_reading(PLATES).alpha
    assert got == pytest.approx(want) and 0 < got < 1


def test_aggregate_carries_positions_and_single_characters_keep_their_meaning():
    votes = [Vote(1, 0, (0,), "8b0d12"), Vote(2, 0, (1,), "8B0D1"), Vote(3, 0, (0,), "88OD12"),
             Vote(4, 0, (0,), "8?0D12")]
    agg = aggregate_image(votes, 0, 4, 1, 1)
    assert agg.positions.consensus == "8B0D12" and agg.positions.n_readings == 4
    # the whole-string reading is unchanged: four different strings tie, the lexically first is reported
    assert agg.consensus.text == "88OD12" and agg.consensus.tied and agg.consensus.count == 1
    digits = aggregate_image([Vote(1, 0, (0,), "5"), Vote(2, 0, (1,), "5"), Vote(3, 0, (0,), "6")], 0, 4, 1, 1)
    assert digits.consensus.text == "5" and digits.consensus.share == pytest.approx(2 / 3)
    assert digits.positions.consensus == "5" and digits.positions.alpha is None


# ---- through the store ----------------------------------------------------------------------------------------
STORE_READINGS = ["8B0D12", "8B0D1", "88OD12", "8?0D12", "ZZZZZZZZ"]  # the last rater gets excluded


@pytest.fixture(scope="module")
def plates_store(tmp_path_factory):
    from annotation.accounts import create_rater
    from annotation.tasks import next_task, submit
    from conftest import make_store, seeded_project, tiny_flow_engine
    from db.engine import session_scope
    from db.models import LRImage

    engine = tiny_flow_engine()
    eng, factory = make_store("sqlite://")
    pid = seeded_project(factory, engine, n_images=2, name="plates", raters_per_image=5, k_picks=1,
                         ensemble_size=1)
    with session_scope(factory) as s:
        raters = [create_rater(s, f"r{i}").id for i in range(5)]
        analyst = create_rater(s, "ana", "analyst").id
        plate, digit = s.scalars(select(LRImage.id).where(LRImage.project_id == pid).order_by(LRImage.id)).all()
    for rid, reading in zip(raters, STORE_READINGS):
        for _ in range(2):  # every rater does both images: a plate reading on the first, "7" on the other
            with session_scope(factory) as s:
                t = next_task(s, rid, pid)
                submit(s, rid, t.assignment_id, [t.samples[0].sample_id], reading if t.image_id == plate else "7")
    yield factory, pid, raters, analyst, plate, digit
    eng.dispose()


def test_store_aggregates_and_exports_carry_positions(plates_store, tmp_path):
    from annotation.exclusions import exclude_rater, include_rater
    from annotation.analysis import image_aggregates
    from annotation.exports import export, read_table, summary_frame
    from db.engine import session_scope

    factory, pid, raters, analyst, plate, digit = plates_store
    with session_scope(factory) as s:
        every = image_aggregates(s, pid)[plate].positions
    assert every.n_readings == 5 and every.positions[-1].label == "after pos 6"  # ZZZZZZZZ's extra characters
    with session_scope(factory) as s:
        exclude_rater(s, analyst, pid, raters[4], "types nonsense")
    try:
        with session_scope(factory) as s:
            aggs = image_aggregates(s, pid)
            p = aggs[plate].positions
            assert p.consensus == "8B0D12" and p.n_readings == 4 and "Z" not in "".join(p.aligned)
            assert p.positions[1].text == "pos 2: B 2 of 4, 8 1 of 4, ? 1 of 4"
            assert image_aggregates(s, pid, include_excluded=True)[plate].positions.n_readings == 5
            df = summary_frame(s, pid)
            results = {fmt: export(s, pid, "summary", fmt, tmp_path / f"summary.{fmt}")
                       for fmt in ("csv", "json", "parquet")}
        row = df.set_index("image_id").loc[plate]
        assert row["position_consensus"] == "8B0D12"
        assert row["position_alpha"] == pytest.approx(positional_reading(STORE_READINGS[:4]).alpha)
        assert row["position_text"].split("; ")[1] == "pos 2: B 2 of 4, 8 1 of 4, ? 1 of 4"
        digit_row = df.set_index("image_id").loc[digit]
        assert digit_row["position_consensus"] == "7" and digit_row["consensus_reading"] == "7"
        for fmt, res in results.items():
            back = read_table(res.path, fmt).set_index("image_id")
            back.index = back.index.astype(int)
            assert back.loc[plate, "position_consensus"] == "8B0D12", fmt
            positions = back.loc[plate, "positions"]  # a list in every format (JSON text in CSV, parsed back)
            assert [x["label"] for x in positions] == [f"pos {i}" for i in range(1, 7)]
            assert positions[1]["counts"] == [{"char": "B", "count": 2}, {"char": "8", "count": 1}]
            assert positions[1]["unreadable"] == 1
            assert positions[5]["gaps"] == 1 and positions[5]["text"] == "pos 6: 2 3 of 4, gap 1 of 4"
            assert float(back.loc[plate, "position_alpha"]) == pytest.approx(row["position_alpha"])
            prov = json.loads(res.provenance_path.read_text())
            assert "centre-star" in prov["reading_positions"] and prov["excluded_raters"][0]["name"] == "r4"
    finally:
        with session_scope(factory) as s:
            include_rater(s, analyst, pid, raters[4])


def test_the_analyst_html_shows_positions():
    from ui.render import positions_html

    p = positional_reading(PLATES)
    html = positions_html(p)
    assert "consensus <b>8B0D12</b>" in html and "from 4 reading(s)" in html and f"{p.alpha:.3f}" in html
    assert "<li>pos 2: B 2 of 4, 8 1 of 4, ? 1 of 4</li>" in html
    assert html.count("class='sr-pos-col") == 6 and "height:50.0%" in html  # B is 2 of 4 at pos 2
    nasty = positions_html(positional_reading(["<b>X</b>", "<b>X</b>"]))
    assert "</B>" not in nasty and "&lt;" in nasty and "consensus <b>&lt;B&gt;X&lt;/B&gt;</b>" in nasty
    assert positions_html(positional_reading(["5", "6"])) == ""  # digits: the reading bars suffice
    assert positions_html(None) == "" and positions_html(positional_reading([])) == ""
