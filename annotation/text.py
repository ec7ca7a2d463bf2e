"""Untrusted text made safe to store, compare, export and show.

- :func:`normalize_text`: readings and names in one canonical form (NFKC, stripped), so "5", "５" and " 5 " are
  one reading; invisible and direction-changing characters (bidi controls, zero-width characters, C0/C1
  controls, other format characters, line/paragraph separators, lone surrogates) are refused, so "5" and
  "5\\u200b" can never be two readings and no name can look like another.
- :func:`check_alphabet`: a reading outside a project's alphabet is refused, naming the offending characters.
- :func:`csv_safe`: a CSV cell that a spreadsheet would read as a formula gets a leading ``'`` (OWASP's CSV
  injection guidance).
- :func:`safe_path_component`: any name -> a lowercase ASCII file name that cannot leave its folder; a name
  that had to change gets a hash suffix, so two names never share a file.
- :func:`escape_for_message`: a file or account name for an error message shown as HTML.
- :func:`scrub_addresses`: memory addresses (``0x7f...``) removed from messages.

Messages never echo a refused character itself: they name it as ``U+XXXX``.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable

from .errors import InvalidInput

MAX_TEXT = 200  # default length limit of normalize_text, in code points after normalisation
# Refused general categories: Cc (C0, DEL, C1 controls), Cf (format: bidi controls U+202A-202E, U+2066-2069,
# U+200E/200F, U+061C; zero-width U+200B-200D, U+2060, U+FEFF; soft hyphen, tags, ...), Zl/Zp (U+2028/2029:
# invisible line breaks), Cs (lone surrogates, e.g. from a surrogate-escaped file name).
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}
_ZERO_WIDTH = frozenset({0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF})


def is_refused(c: str) -> bool:
    """True for a code point that :func:`normalize_text` refuses (one character)."""
    return unicodedata.category(c) in REFUSED_CATEGORIES


def codepoint(c: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: a character named without writing it."""
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")


def _kind(c: str) -> str:
    o, cat = ord(c), unicodedata.category(c)
    if o in _BIDI:
        return "a bidirectional control"
    if o in _ZERO_WIDTH:
        return "a zero-width character"
    if cat == "Cc":
        return "a control character"
    if cat in ("Zl", "Zp"):
        return "an invisible line break"
    if cat == "Cs":
        return "a lone surrogate (not text)"
    return "an invisible format character"


def _refuse_invisible(text: str, what: str) -> None:
    for i, c in enumerate(text):
        if is_refused(c):
            raise InvalidInput(f"{what} contains {_kind(c)}, {codepoint(c)}, at position {i + 1}; "
                               "remove it and type the text again")


def normalize_text(s: object, *, what: str = "reading", max_len: int = MAX_TEXT) -> str:
    """NFKC-normalised, stripped ``s``; refuses invisible and direction-changing characters.

    Raises :class:`InvalidInput` (naming ``what``, and a refused character as ``U+XXXX``) if ``s`` is not a
    string, is empty after stripping, is longer than ``max_len`` code points after normalisation, or contains a
    character of a category in :data:`REFUSED_CATEGORIES` (checked before and after normalisation). The result
    is a fixed point: ``normalize_text(normalize_text(s)) == normalize_text(s)``.
    """
    if not isinstance(s, str):
        raise InvalidInput(f"{what} must be a string, got {type(s).__name__}")
    if len(s) > 4 * max_len + 64:  # bound the work before normalising (NFKC can change the length)
        raise InvalidInput(f"{what} is {len(s)} characters long; the limit is {max_len}")
    _refuse_invisible(s, what)
    out = unicodedata.normalize("NFKC", s).strip()
    _refuse_invisible(out, what)  # NFKC maps no visible character to a refused one; checked, not assumed
    if not out:
        raise InvalidInput(f"{what} must not be empty")
    if len(out) > max_len:
        raise InvalidInput(f"{what} is {len(out)} characters long; the limit is {max_len}")
    return out


def _show(c: str) -> str:
    """One character for a message: printable ASCII in quotes, anything else as U+XXXX."""
    return f"'{c}'" if " " < c < "\x7f" else codepoint(c)


def check_alphabet(reading: str, alphabet: Iterable[str], *, what: str = "reading") -> str:
    """Return ``reading`` if every character is in ``alphabet`` (a string or a set of one-character strings).

    Call it on a normalised reading (:func:`normalize_text`). Raises :class:`InvalidInput` listing the
    offending characters in order of first appearance (printable ASCII quoted, anything else as U+XXXX), at most
    ten of them, and the allowed alphabet when it is short.
    """
    allowed = set(alphabet)
    bad = list(dict.fromkeys(c for c in reading if c not in allowed))
    if bad:
        shown = ", ".join(_show(c) for c in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        chars = "".join(sorted(allowed))
        hint = (f"; this project accepts {chars}"
                if len(chars) <= 80 and all(" " < c < "\x7f" for c in chars) else "")
        raise InvalidInput(f"{what} has {len(bad)} character(s) outside this project's alphabet: {shown}{hint}")
    return reading


# ---- CSV -----------------------------------------------------------------------------------------------------
# OWASP's CSV injection guidance: a cell starting with = + - @ tab or CR may be read as a formula; prefix it with
# a single quote. Full-width = + - @ are included (some spreadsheets fold them), and so is any of these after
# leading whitespace (spreadsheets trim it). A cell that is a plain decimal number ("-3", "+2.5", "-1e-5") is left
# alone: evaluated as a formula it is that same number, with no reference, function call or operator to abuse.
_FORMULA_START = re.compile(r"^[\s\u3000]*[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def csv_safe(cell: object) -> object:
    """A CSV cell that no spreadsheet reads as a formula: a string starting (possibly after whitespace) with
    ``= + - @``, tab or CR gets a leading ``'``, unless it is a plain decimal number. Other values (numbers,
    None, missing values) are returned unchanged; apply it only to CSV, never to JSON or Parquet."""
    if not isinstance(cell, str) or not _FORMULA_START.match(cell) or _NUMBER.match(cell):
        return cell
    return "'" + cell


# ---- names in paths --------------------------------------------------------------------------------------------
MAX_COMPONENT = 64
HASH_CHARS = 12  # hex digits of the SHA-256 suffix (48 bits)
_SAFE_RUN = re.compile(r"[^a-z0-9_.-]+")
_HASHED = re.compile(rf"-[0-9a-f]{{{HASH_CHARS}}}$")
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})


def safe_path_component(name: str, *, max_len: int = MAX_COMPONENT) -> str:
    """A file or folder name for ``name`` (an account, a project): ``[a-z0-9_][a-z0-9_.-]*``, at most ``max_len``
    characters, never ``.``/``..`` nor containing ``..``, no leading dot or dash, no Windows device name.

    A name that is already such a name is returned unchanged; any other (and any that ends like a hash suffix)
    becomes its cleaned form plus ``-`` and the first 12 hex digits of its SHA-256, so: unchanged names never end
    in a suffix, changed ones always do, and two different names map to two different components (up to a 48-bit
    hash collision) even on a case-insensitive file system. Stable: a pure function of ``name``.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"a name must be a string, got {type(name).__name__}")
    if max_len < HASH_CHARS + 2:
        raise InvalidInput(f"max_len must be at least {HASH_CHARS + 2}")
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    base = _SAFE_RUN.sub("-", ascii_)
    base = re.sub(r"\.{2,}", ".", base).lstrip(".-").rstrip(".")
    clean = (base == name and len(name) <= max_len and not _HASHED.search(name)
             and name.split(".")[0] not in _RESERVED)
    if clean and name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    base = base[: max_len - HASH_CHARS - 2].rstrip(".-") or "x"
    if base.split(".")[0] in _RESERVED:  # "con.txt-<hash>" would still open the console on Windows
        base = "_" + base
    return f"{base}-{digest}"


# ---- messages --------------------------------------------------------------------------------------------------
MAX_SHOWN = 80


def escape_for_message(name: object, *, max_len: int = MAX_SHOWN) -> str:
    """A file or user name ready to go into an HTML message: refused characters (controls, bidi, zero-width,
    ...) shown as ``U+XXXX``, shortened to about ``max_len`` characters in the middle (the end, often the
    extension, stays visible), then HTML-escaped (``& < > " '``)."""
    s = str(name)
    s = "".join(f"[U+{ord(c):04X}]" if is_refused(c) else c for c in s)
    if len(s) > max_len:
        head = max(1, (max_len - 1) * 2 // 3)
        s = s[:head] + "\u2026" + s[len(s) - (max_len - 1 - head):]
    return html.escape(s, quote=True)


_ADDRESS_AT = re.compile(r"\s+at\s+0x[0-9a-fA-F]{6,16}\b")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b")


def safe_message(msg: object, *, max_len: int = 500) -> str:
    """An error message ready for an HTML toast, whatever its author did: memory addresses removed, HTML
    entities already in it (names escaped by :func:`escape_for_message`) decoded once so they are not escaped
    twice, then refused characters named, shortened and HTML-escaped. What ``ui`` should do to ``str(err)``
    before ``gr.Error``; a name that really is the text ``&lt;`` shows as ``<`` (harmless)."""
    return escape_for_message(html.unescape(scrub_addresses(str(msg))), max_len=max_len)


def scrub_addresses(msg: str) -> str:
    """``msg`` without memory addresses: ``<Foo object at 0x7f3a2c1b4d90>`` -> ``<Foo object>``, and any other
    hexadecimal literal of 6 to 16 digits -> ``0x...`` (small literals such as ``0x1F`` stay)."""
    return _ADDRESS.sub("0x...", _ADDRESS_AT.sub("", str(msg)))


__all__ = [
    "REFUSED_CATEGORIES",
    "check_alphabet",
    "codepoint",
    "csv_safe",
    "escape_for_message",
    "is_refused",
    "normalize_text",
    "safe_message",
    "safe_path_component",
    "scrub_addresses",
]
