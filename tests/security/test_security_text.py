"""Issue 18, text: readings and names normalised, invisible characters refused, alphabets, CSV formula cells,
names in paths, names in messages, memory addresses."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation.errors import InvalidInput
from annotation.text import (
    check_alphabet,
    csv_safe,
    escape_for_message,
    is_refused,
    normalize_text,
    safe_message,
    safe_path_component,
    scrub_addresses,
)
from annotation.uploads import read_zip_members


PROPS = settings(max_examples=400, deadline=None, derandomize=True, database=None)  # seeded, nothing written
REFUSED = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C,
           0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0x20), 0x7F, *range(0x80, 0xA0), 0x00AD,
           0x2028, 0x2029, 0xE0041, 0xD800]


# ---- normalize_text --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [("5", "5"), (" 5 ", "5"), ("\uff15", "5"), ("\uff18\uff22", "8B"),
                                           ("e\u0301", "\u00e9"), ("\u00a05\u3000", "5"), ("\ufb01", "fi"),
                                           ("a b", "a b")])
def test_normalize_text_nfkc_and_strip(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("cp", REFUSED)
def test_normalize_text_refuses_invisible_and_direction_characters(cp):
    c = chr(cp)
    with pytest.raises(InvalidInput) as err:
        normalize_text(f"5{c}", what="project name")
    msg = str(err.value)
    assert msg.startswith("project name ")
    assert f"U+{cp:04X}" in msg
    assert c not in msg  # the character is named, never echoed
    assert not any(is_refused(x) for x in msg)


def test_five_and_five_with_zero_width_space_cannot_be_two_readings():
    assert normalize_text("5") == "5"
    with pytest.raises(InvalidInput, match="U\\+200B"):
        normalize_text("5\u200b")


@pytest.mark.parametrize("raw", ["", "   ", "\u3000"])
def test_normalize_text_refuses_empty(raw):
    with pytest.raises(InvalidInput, match="reading must not be empty"):
        normalize_text(raw)


def test_normalize_text_length_and_type():
    assert normalize_text("x" * 10, max_len=10) == "x" * 10
    with pytest.raises(InvalidInput, match="limit is 10"):
        normalize_text("x" * 11, max_len=10)
    with pytest.raises(InvalidInput, match="limit is 10"):  # refused before normalising a huge string
        normalize_text("x" * 10_000_000, max_len=10)
    with pytest.raises(InvalidInput, match="limit is 3"):  # the limit applies after NFKC (U+FDFA is 18 letters)
        normalize_text("\ufdfa", max_len=3)
    with pytest.raises(InvalidInput, match="must be a string"):
        normalize_text(5)


@PROPS
@given(st.text(max_size=40))
def test_normalize_text_is_idempotent_and_never_returns_a_refused_code_point(s):
    try:
        out = normalize_text(s)
    except InvalidInput as err:
        assert not any(is_refused(c) for c in str(err))
        return
    assert normalize_text(out) == out
    assert out == out.strip() and out
    assert unicodedata.is_normalized("NFKC", out)
    assert not any(is_refused(c) for c in out)
    assert not any(is_refused(c) for c in s)  # nothing refused was silently dropped


@PROPS
@given(st.text(max_size=10), st.sampled_from(REFUSED), st.text(max_size=10))
def test_normalize_text_refuses_any_string_holding_a_refused_code_point(a, cp, b):
    with pytest.raises(InvalidInput):
        normalize_text(a + chr(cp) + b)


# ---- check_alphabet -------------------------------------------------------------------------------------------
def test_check_alphabet_accepts_and_refuses_with_escaped_characters():
    digits = "0123456789"
    assert check_alphabet("2026", digits) == "2026"
    with pytest.raises(InvalidInput) as err:
        check_alphabet("5a<\u00e9a", digits, what="reading")
    msg = str(err.value)
    assert "3 character(s) outside this project's alphabet" in msg
    assert "'a', '<', U+00E9 LATIN SMALL LETTER E WITH ACUTE" in msg
    assert "\u00e9" not in msg
    assert "accepts 0123456789" in msg
    assert check_alphabet("8B", set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")) == "8B"


def test_check_alphabet_lists_at_most_ten():
    with pytest.raises(InvalidInput, match="and 16 more"):
        check_alphabet("abcdefghijklmnopqrstuvwxyz", "0123456789")


# ---- csv_safe --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)",
                                  "\t=1", "\r=1", " =1", "\n@x", "\uff1d1", "-", "+", "=", "-inf", "-3 "])
def test_csv_safe_neutralises_formula_cells(cell):
    out = csv_safe(cell)
    assert out == "'" + cell


@pytest.mark.parametrize("cell", ["-3", "+2.5", "-1e-5", ".5", "3", "8B", "a=b", "", "'=already", None, 5, -3, 2.5])
def test_csv_safe_leaves_numbers_and_plain_text(cell):
    assert csv_safe(cell) == cell


def test_csv_safe_cell_reads_back_as_text_through_the_csv_module():
    buf = io.StringIO()
    csv.writer(buf).writerow([csv_safe('=HYPERLINK("http://evil","5")'), csv_safe("-3")])
    row = next(csv.reader(io.StringIO(buf.getvalue())))
    assert row == ["'=HYPERLINK(\"http://evil\",\"5\")", "-3"]
    assert not row[0].startswith(("=", "+", "-", "@"))


# ---- safe_path_component ---------------------------------------------------------------------------------------
SAFE = re.compile(r"^[a-z0-9_][a-z0-9_.-]*$")


@pytest.mark.parametrize("name", ["alice", "bob_2", "a.b", "x-1"])
def test_safe_path_component_keeps_safe_names(name):
    assert safe_path_component(name) == name


@pytest.mark.parametrize("name", ["..", ".", "", "../../etc/passwd", "a/b", "a\\b", ".hidden", "-rf", "Alice",
                                  "con", "CON.txt", "nul", "a..b", "x.", "\u00fcml\u00e4ut", "\u0440\u0443\u0441",
                                  "a\x00b", "bob-0123456789ab", "x" * 200, "\ud800"])
def test_safe_path_component_changes_unsafe_names_and_adds_a_hash(name):
    out = safe_path_component(name)
    assert out != name
    assert SAFE.match(out) and ".." not in out and len(out) <= 64
    assert re.search(r"-[0-9a-f]{12}$", out)
    assert out.split(".")[0] not in {"con", "nul", "prn", "aux"}


def test_safe_path_component_stays_inside_its_folder(tmp_path):
    for name in ["..", "../..", "../../x", "/abs", "a/../../b"]:
        p = (tmp_path / safe_path_component(name)).resolve()
        assert p.parent == tmp_path.resolve()


@PROPS
@given(st.text(max_size=80))
def test_safe_path_component_properties(name):
    out = safe_path_component(name)
    assert out == safe_path_component(name)  # stable
    assert SAFE.match(out) and ".." not in out and "/" not in out and "\\" not in out
    assert 1 <= len(out) <= 64 and out.isascii()
    assert out == name or re.search(r"-[0-9a-f]{12}$", out)


@PROPS
@given(st.lists(st.text(max_size=12), min_size=2, max_size=30, unique=True))
def test_safe_path_component_is_injective_on_a_sample(names):
    outs = [safe_path_component(n) for n in names]
    assert len(set(outs)) == len(outs)
    assert len({o.lower() for o in outs}) == len(outs)  # also on a case-insensitive file system


def test_safe_path_component_collisions_of_the_cleaned_form_are_separated():
    names = ["a b", "a/b", "a-b", "A-B", "a--b", "a\u200bb"]
    outs = [safe_path_component(n) for n in names]
    assert len(set(outs)) == len(names)


# ---- messages ----------------------------------------------------------------------------------------------
def test_escape_for_message_html_controls_and_length():
    out = escape_for_message('<img src=x onerror="alert(1)">\u202egnp.exe')
    assert "<" not in out and ">" not in out and '"' not in out
    assert "&lt;img" in out and "[U+202E]" in out and "\u202e" not in out
    long = escape_for_message("a" * 500 + ".png", max_len=40)
    assert len(long) == 40 and long.endswith(".png") and "\u2026" in long
    assert escape_for_message("plain.png") == "plain.png"


def test_scrub_addresses():
    msg = "TypeError: <db.models.Rater object at 0x7f3a2c1b4d90> vs 0x55d1e2f3a4b5 (flag 0x1F)"
    out = scrub_addresses(msg)
    assert "0x7f3a2c1b4d90" not in out and "0x55d1e2f3a4b5" not in out
    assert "<db.models.Rater object>" in out and "0x1F" in out
    assert scrub_addresses(repr(object())) == "<object object>"


def test_safe_message_is_what_a_toast_may_show():
    out = safe_message(f"bad file <b>x.png</b>\x1b[31m at {object()!r}")
    assert "<b>" not in out and "&lt;b&gt;" in out and "\x1b" not in out and "0x" not in out


def test_safe_message_does_not_escape_twice():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("<b>x</b>/../y.png", b"1")
    with pytest.raises(InvalidInput) as err:
        read_zip_members(buf.getvalue())
    assert "&lt;b&gt;x&lt;/b&gt;" in str(err.value)  # escaped where the name went in...
    assert "&lt;b&gt;x&lt;/b&gt;" in safe_message(err.value)  # ...and not again at the page
    assert "&amp;" not in safe_message(err.value)
    assert "\x1b" not in safe_message("a &#27;[31m b")  # an entity cannot smuggle a control in
    assert safe_message("a &#x202E; b") == "a [U+202E] b"
