"""Readings per position: pure functions over the readings of one image (no database, no UI).

A rater types a plate as they read it, ``?`` for a character they cannot read. Readings of one image are
aligned to a common frame of positions, and per position the store reports the distribution of characters, the
consensus character and, over all positions, Krippendorff's alpha.

Method (``METHOD``, recorded in the exports' provenance):

1. **Normalise**: strip, upper-case, drop whitespace and hyphens/dashes (``"8b-0d 12"`` -> ``"8B0D12"``). A
   reading that is empty afterwards is no reading (as blanks are for the consensus reading).
2. **Reference** (the centre of a *centre-star* alignment, Gusfield 1993): the medoid, i.e. the reading with
   the smallest sum of plain Levenshtein distances to all readings (duplicates count). For this choice ``?``
   is an ordinary symbol (a mismatch): it carries no information, and a reading of only ``?`` would otherwise
   be at distance 0 from every reading of its length and become a reference that cannot place gaps. Ties:
   fewer ``?``, then the most common length among the readings, then the lexically first reading.
3. **Pairwise alignment** of every reading to the reference: Levenshtein alignment with unit costs for
   insertion, deletion and substitution, where ``?`` matches any character at cost 0. Among alignments of
   equal cost the trace (from the first characters on) prefers a match/substitution, then a gap in the
   reading, then an extra character in the reading, so gaps that cannot be placed by content go to the end
   (raters read from the left).
4. **Merge** ("once a gap, always a gap"): every reference character is a column; characters a reading has in
   excess of the reference become extra columns between the reference's columns (as many as the reading with
   the most extra characters at that place needs; shorter runs are left-aligned), other readings have a gap
   (``-``) there. Every reading becomes a row of the same width.
5. **Consensus per column**, in two steps. *Presence*: a column is part of the consensus when at least as many
   raters put a character there (a letter, a digit or ``?``) as left a gap; otherwise it is dropped (a minority
   typed an extra character) and is reported as "after pos i". *Character*: the plurality of the characters
   typed there, ``?`` giving no vote; ties go to the lexically first character (code point order, digits
   before letters, as for the consensus reading) and are flagged; a column without any character vote is
   ``?``. Kept columns are numbered "pos 1", "pos 2", ... in the consensus string.
6. **Agreement**: Krippendorff's alpha, nominal (``krippendorff`` package), raters as coders, units = the
   columns, values = the character typed; ``?`` and gaps are missing values. None where alpha is undefined:
   fewer than two readings, fewer than two columns with two or more characters (with a single unit nominal
   alpha is 0 whatever the raters did, so it says nothing; this also keeps single-character readings, i.e.
   MNIST, without a per-image alpha, as docs/design.md asks), or a single value in the whole table.

Single-character readings align trivially: one column, the consensus is the plurality digit.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import krippendorff
import numpy as np

UNREADABLE = "?"  # typed by a rater: a character is there but cannot be read
GAP = "-"  # in an aligned row: no character there (hyphens are removed by normalise, so this is unambiguous)
METHOD = ("centre-star alignment to the medoid reading (plain Levenshtein); pairwise Levenshtein alignment with "
          "'?' matching anything at cost 0; a column is kept when characters (incl. '?') >= gaps; plurality "
          "character per column, ties to the lexically first, '?' without votes; Krippendorff's alpha (nominal) "
          "over columns, '?' and gaps missing")

_DROP = re.compile(r"[\s\-\u2010-\u2015\u2212]+")  # whitespace, hyphen-minus, Unicode hyphens and dashes, minus


def normalise(text: str | None) -> str:
    """Strip, upper-case, drop whitespace and hyphens: the form in which readings are aligned ("" = none)."""
    return "" if text is None else _DROP.sub("", text.strip().upper())


# ---- pairwise alignment ---------------------------------------------------------------------------------------
def _suffix_costs(a: str, b: str, wildcard: bool) -> list[list[int]]:
    """d[i][j] = edit distance between a[i:] and b[j:] (unit costs; ``?`` free against anything if wildcard)."""
    n, m = len(a), len(b)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n or j == m:
                d[i][j] = (n - i) + (m - j)
            else:
                same = a[i] == b[j] or (wildcard and UNREADABLE in (a[i], b[j]))
                d[i][j] = min(d[i + 1][j + 1] + (0 if same else 1), d[i + 1][j] + 1, d[i][j + 1] + 1)
    return d


def distance(a: str, b: str, *, wildcard: bool = True) -> int:
    """Levenshtein distance; with ``wildcard`` a ``?`` matches any character at cost 0."""
    return _suffix_costs(a, b, wildcard)[0][0]


def align_pair(reading: str, reference: str) -> list[tuple[str | None, str | None]]:
    """A minimum-cost alignment (``?`` a wildcard) as (reading char, reference char) pairs, None for a gap;
    among equal costs: match/substitution, then a gap in the reading, then an extra reading character."""
    d = _suffix_costs(reading, reference, True)
    i = j = 0
    out: list[tuple[str | None, str | None]] = []
    n, m = len(reading), len(reference)
    while i < n or j < m:
        if i < n and j < m:
            same = reading[i] == reference[j] or UNREADABLE in (reading[i], reference[j])
            if d[i][j] == d[i + 1][j + 1] + (0 if same else 1):
                out.append((reading[i], reference[j]))
                i, j = i + 1, j + 1
                continue
        if j < m and d[i][j] == d[i][j + 1] + 1:
            out.append((None, reference[j]))
            j += 1
        else:
            out.append((reading[i], None))
            i += 1
    return out


def reference_index(readings: Sequence[str]) -> int:
    """The medoid under plain Levenshtein (``?`` a mismatch); ties: fewer ``?``, most common length, lexically
    first, first given. ``readings`` are normalised and not empty."""
    lengths = Counter(len(r) for r in readings)
    cost = {r: sum(distance(r, o, wildcard=False) for o in readings) for r in set(readings)}
    return min(range(len(readings)), key=lambda i: (cost[readings[i]], readings[i].count(UNREADABLE),
                                                    -lengths[len(readings[i])], readings[i], i))


def align(readings: Sequence[str]) -> tuple[int, list[str]]:
    """Centre-star multiple alignment of normalised readings: (index of the reference, one row per reading of
    equal width, ``-`` for a gap)."""
    if not readings:
        return -1, []
    ref = reference_index(readings)
    center = readings[ref]
    L = len(center)
    per_reading = []  # (chars aligned to each reference column, extra characters before each slot 0..L)
    for r in readings:
        aligned: list[str] = []
        extra: list[list[str]] = [[] for _ in range(L + 1)]
        for rc, cc in align_pair(r, center):
            if cc is None:
                extra[len(aligned)].append(rc)  # type: ignore[arg-type]
            else:
                aligned.append(GAP if rc is None else rc)
        per_reading.append((aligned, extra))
    width = [max(len(e[s]) for _, e in per_reading) for s in range(L + 1)]
    rows = []
    for aligned, extra in per_reading:
        parts = []
        for s in range(L + 1):
            parts.append("".join(extra[s]).ljust(width[s], GAP))
            if s < L:
                parts.append(aligned[s])
        rows.append("".join(parts))
    return ref, rows


# ---- per-position results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Position:
    """One column of the alignment."""

    column: int  # 1-based column of the alignment
    label: str  # "pos 3": the 3rd character of the consensus; "after pos 3" / "before pos 1": a dropped column
    counts: dict[str, int]  # character -> raters who typed it here ('?' and gaps not included)
    unreadable: int  # raters who typed '?' here
    gaps: int  # raters with no character here
    total: int  # raters with a reading of this image
    consensus: str | None  # the plurality character, '?' when nobody could read it, None: column dropped
    count: int  # raters behind the decision (votes for the character; gaps for a dropped column)
    tied: bool  # the decision was a tie (presence, or the character's plurality)

    @property
    def text(self) -> str:
        """"pos 3: B 7 of 9, 8 2 of 9" (characters by count, then '?', then gaps)."""
        parts = [f"{c} {n} of {self.total}" for c, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        if self.unreadable:
            parts.append(f"{UNREADABLE} {self.unreadable} of {self.total}")
        if self.gaps:
            parts.append(f"gap {self.gaps} of {self.total}")
        return f"{self.label}: " + ", ".join(parts)


@dataclass(frozen=True)
class PositionalReading:
    """The readings of one image, aligned to positions."""

    readings: tuple[str, ...]  # normalised, in the order given (the rows of the alignment)
    aligned: tuple[str, ...]  # each reading in the alignment frame, '-' for a gap
    reference: str | None  # the reading the others were aligned to (None: no readings)
    consensus: str | None  # the consensus string (None: no readings)
    positions: tuple[Position, ...]  # every column, dropped ones included
    alpha: float | None  # Krippendorff's alpha over positions (see the module docstring for None)

    @property
    def n_readings(self) -> int:
        return len(self.readings)

    @property
    def multi_character(self) -> bool:
        """Some reading has more than one character (a plate, not a digit)."""
        return any(len(r) > 1 for r in self.readings)

    @property
    def lines(self) -> list[str]:
        return [p.text for p in self.positions]

    @property
    def text(self) -> str:
        return "; ".join(self.lines)


def _position(column: int, cells: Sequence[str], kept_before: int) -> Position:
    total = len(cells)
    gaps = sum(c == GAP for c in cells)
    unreadable = sum(c == UNREADABLE for c in cells)
    counts = Counter(c for c in cells if c not in (GAP, UNREADABLE))
    present = total - gaps
    if present < gaps:
        label = f"after pos {kept_before}" if kept_before else "before pos 1"
        return Position(column, label, dict(counts), unreadable, gaps, total, None, gaps, False)
    label = f"pos {kept_before + 1}"
    if not counts:
        return Position(column, label, {}, unreadable, gaps, total, UNREADABLE, 0, present == gaps)
    best = max(counts.values())
    leaders = sorted(c for c, n in counts.items() if n == best)
    return Position(column, label, dict(counts), unreadable, gaps, total, leaders[0], best,
                    len(leaders) > 1 or present == gaps)


def positions_table(rows: Sequence[str]) -> np.ndarray:
    """float (readings, columns): a code per character, NaN for '?' and gaps (Krippendorff's reliability data)."""
    width = len(rows[0]) if rows else 0
    codes: dict[str, int] = {}
    data = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        for j, c in enumerate(row):
            if c not in (GAP, UNREADABLE):
                data[i, j] = codes.setdefault(c, len(codes))
    return data


def alpha_over_positions(rows: Sequence[str]) -> float | None:
    """Nominal alpha of aligned rows (units = columns); None where undefined (see the module docstring)."""
    data = positions_table(rows)
    if data.shape[0] < 2:
        return None
    pairable = (~np.isnan(data)).sum(0) >= 2
    if pairable.sum() < 2:
        return None
    if len(np.unique(data[:, pairable][~np.isnan(data[:, pairable])])) < 2:
        return None
    try:
        a = float(krippendorff.alpha(reliability_data=data[:, pairable], level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return None
    return a if math.isfinite(a) else None


def positional_reading(readings: Iterable[str | None]) -> PositionalReading:
    """Align the readings of one image (raw text, None or blank = no reading) and report per position."""
    norm = tuple(n for n in (normalise(r) for r in readings) if n)
    if not norm:
        return PositionalReading((), (), None, None, (), None)
    ref, rows = align(norm)
    positions = []
    kept = 0
    for j in range(len(rows[0])):
        p = _position(j + 1, [r[j] for r in rows], kept)
        kept += p.consensus is not None
        positions.append(p)
    consensus = "".join(p.consensus for p in positions if p.consensus is not None)
    return PositionalReading(norm, tuple(rows), norm[ref], consensus, tuple(positions), alpha_over_positions(rows))
