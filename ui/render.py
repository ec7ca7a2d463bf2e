"""HTML for the views: images as lossless PNG data URIs of the stored bytes, enlarged by the page with
``image-rendering: pixelated`` (nearest-neighbour, so a 7x7 digit stays a grid of crisp pixels), the rater's
picker grid, the analyst's vote heat-map and reading bars, progress bars.

Presentation only: inputs are PNG bytes and plain numbers from the services; all text is escaped.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import time
from collections.abc import Sequence

from PIL import Image

from annotation.positions import PositionalReading

TILE_PX = 112  # a bank sample's side on screen
LR_PX = 224  # the LR image's side on screen
WIDE_TILE = (200, 50)  # a plate-shaped sample on screen (w, h): 4 a row, so 16 fit beside the LR at 1400x900
WIDE_LR_PX = 320  # a plate-shaped LR image's width: at least a candidate's, so the LR is never the smaller one


@functools.lru_cache(maxsize=1024)  # asked twice per task drawn (LR view and grid), of the same few images
def is_wide(png: bytes | None) -> bool:
    """True for plate-like images (at least twice as wide as high): they get the wide grid layout."""
    if not png:
        return False
    with Image.open(io.BytesIO(png)) as im:
        return im.width >= 2 * im.height


def data_uri(png: bytes) -> str:
    """A PNG data URI of the stored bytes as they are: the page enlarges them (``image-rendering: pixelated``, the
    CSS below), which costs the server nothing and is nearest-neighbour too."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def lr_html(png: bytes | None, caption: str = "LR image") -> str:
    if png is None:
        return "<div class='sr-lr sr-empty'></div>"
    side = WIDE_LR_PX if is_wide(png) else LR_PX
    return (f"<figure class='sr-lr'><img src='{data_uri(png)}' alt='{esc(caption)}' width='{side}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def picker_html(samples: Sequence[tuple[int, bytes]], k: int, assignment_id: int,
                picked: Sequence[int] = (), keys: str = "") -> str:
    """The rater's grid: one button per sample (``data-sid`` = sample id), in the order given, labelled with its
    key (``keys[i]`` for the i-th tile; its position beyond). The page's logic (``ui.rate.SR_JS``) draws the
    picks, best first, and writes them into the hidden picks box; ``picked`` (sample ids, best first) are drawn
    as already picked (a revision)."""
    rank = {int(sid): r for r, sid in enumerate(picked, start=1)}

    def state(sid: int) -> str:
        r = rank.get(int(sid))
        return (f"class='sr-tile sr-picked' data-rank='{r}' aria-pressed='true'" if r
                else "class='sr-tile' aria-pressed='false'")

    wide = bool(samples) and is_wide(samples[0][1])  # plates: fewer, wider columns (CSS .sr-wide)
    w, h = WIDE_TILE if wide else (TILE_PX, TILE_PX)
    def label(pos: int) -> str:
        return keys[pos - 1] if pos <= len(keys) else str(pos)

    tiles = "".join(
        f"<button type='button' {state(sid)} data-sid='{int(sid)}' "
        f"title='sample {pos} (key {esc(label(pos))})'><img src='{data_uri(png)}' alt='sample {pos}' width='{w}' "
        f"height='{h}'><span class='sr-num'>{esc(label(pos))}</span></button>"
        for pos, (sid, png) in enumerate(samples, start=1))
    # the render stamp makes every new task a new value, so the grid always re-renders without old ranks
    cls = "sr-grid sr-wide" if wide else "sr-grid"
    return (f"<div class='{cls}' id='sr-grid-inner' data-k='{int(k)}' data-assignment='{int(assignment_id)}' "
            f"data-render='{time.monotonic_ns()}'>{tiles}</div>")


def message_html(text: str, kind: str = "info") -> str:
    return f"<div class='sr-msg sr-{esc(kind)}'>{esc(text)}</div>"


def heatmap_html(samples: Sequence[tuple[int, bytes, float]], approval: Sequence[int] | None,
                 top: Sequence[int] = ()) -> str:
    """The bank in bank-index order (#0, #1, ...; raters see it shuffled, with their own keys). A sample someone
    picked gets a border whose width grows with its share of the maximum approval count and a count badge; the
    pixels are never tinted (they are the detail being judged). The ensemble's samples get a green border."""
    if not samples:
        return message_html("This image has no complete bank yet.")
    peak = max(approval or [0]) or 1
    tiles = []
    for index, png, lr_psnr in samples:
        votes = int(approval[index]) if approval else 0
        cls = "sr-heat-tile" + (" sr-top" if index in top else "") + (" sr-voted" if votes else "")
        width = 2 + round(4 * votes / peak) if votes else 2
        db = "exact" if lr_psnr >= 100 else f"{lr_psnr:.1f} dB"
        badge = f"<span class='sr-count'>{votes}</span>" if votes else ""
        tiles.append(
            f"<div class='{cls}' style='border-width:{width}px' title='bank index {index}: {votes} vote(s), "
            f"LR-PSNR {db}'><img src='{data_uri(png)}' alt='bank sample #{index}'>"
            f"{badge}<span class='sr-num'>#{index}</span></div>")
    cls = "sr-heatmap sr-wide" if is_wide(samples[0][1]) else "sr-heatmap"
    return (f"<div class='{cls}'>" + "".join(tiles) + "</div>"
            "<div class='sr-legend'>samples by <b>bank index</b> (#0, #1, …; each rater saw them in a shuffled "
            "order with their own key labels); orange border and badge: raters who picked the sample (thicker = "
            "more); green border: in the ensemble</div>")


def bars_html(counts: dict[str, int], label: str | None = None) -> str:
    """Readings as horizontal bars with counts and shares; the known label (if any) is marked."""
    total = sum(counts.values())
    if not total:
        return message_html("No readings yet.")
    rows = []
    for text, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        share = c / total
        mark = " ✓" if label is not None and text == label.strip() else ""
        rows.append(f"<div class='sr-bar-row'><span class='sr-bar-label'>{esc(text)}{mark}</span>"
                    f"<span class='sr-bar' style='width:{100 * share:.1f}%'></span>"
                    f"<span class='sr-bar-value'>{c} ({100 * share:.0f}%)</span></div>")
    return "<div class='sr-bars'>" + "".join(rows) + "</div>"


POSITION_COLOURS = ("#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0ca678")  # by rank within a position


def positions_html(p: PositionalReading | None) -> str:
    """Readings per position (plates): the consensus string, alpha over positions, one stacked bar per aligned
    position (characters by count, then '?' in grey, then gaps hatched; a dropped column faded) and the
    "pos i: ..." lines. Empty for single-character readings (digits), where the reading bars say it all."""
    if p is None or p.consensus is None or not p.multi_character:
        return ""
    cols = []
    for pos in p.positions:
        segs = [(c, n, POSITION_COLOURS[r % len(POSITION_COLOURS)], "sr-pos-char") for r, (c, n) in
                enumerate(sorted(pos.counts.items(), key=lambda kv: (-kv[1], kv[0])))]
        segs += [("?", pos.unreadable, "#adb5bd", "sr-pos-unreadable"), ("–", pos.gaps, "", "sr-pos-gap")]
        stack = "".join(
            f"<div class='sr-pos-seg {cls}' style='height:{100 * n / pos.total:.1f}%"
            f"{';background:' + colour if colour else ''}' title='{esc(c)}: {n} of {pos.total}'>"
            f"<span>{esc(c)}</span></div>" for c, n, colour, cls in segs if n)
        head = "–" if pos.consensus is None else pos.consensus
        cls = "sr-pos-col sr-pos-dropped" if pos.consensus is None else "sr-pos-col"
        short = pos.label[4:] if pos.label.startswith("pos ") else "+"  # the title says "after pos i"
        cols.append(f"<div class='{cls}' title='{esc(pos.text)}'><div class='sr-pos-stack'>{stack}</div>"
                    f"<div class='sr-pos-head'>{esc(head)}{'*' if pos.tied else ''}</div>"
                    f"<div class='sr-pos-label'>{esc(short)}</div></div>")
    lines = "".join(f"<li>{esc(line)}</li>" for line in p.lines)
    alpha = "–" if p.alpha is None else f"{p.alpha:.3f}"
    return (f"<div class='sr-positions'><div class='sr-pos-consensus'>consensus <b>{esc(p.consensus)}</b> "
            f"from {p.n_readings} reading(s); alpha over positions {alpha}</div>"
            f"<div class='sr-pos-grid'>{''.join(cols)}</div>"
            "<div class='sr-legend'>one bar per position, characters by count; grey: ? (unreadable); hatched: "
            "no character; * a tie; faded (+): an extra character most raters did not type</div>"
            f"<ul class='sr-pos-text'>{lines}</ul></div>")


def progress_html(done: int, total: int, caption: str) -> str:
    frac = done / total if total else 0.0
    return (f"<div class='sr-progress' role='progressbar' aria-valuenow='{done}' aria-valuemax='{total}'>"
            f"<div class='sr-progress-fill' style='width:{100 * frac:.1f}%'></div></div>"
            f"<div class='sr-progress-caption'>{esc(caption)}</div>")


def fmt(value: float | None, spec: str = ".3f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def flow_check_text(value: float | None) -> str:
    """The ensemble's flow check ``||y_hat - y||^2 / dim y``, or a plain statement that the model has none (a
    diffusers pipeline has no flow, so there is nothing to check; never a blank or "None")."""
    if value is None:
        return "flow check: not available for this model"
    return f"flow check ‖ŷ−y‖²/dim y = {value:.2e}"


def db_text(value: float | None) -> str:
    if value is None:
        return "–"
    return "exact (100 dB)" if value >= 100 else f"{value:.2f} dB"


CSS = """
.sr-lr img, .sr-tile img, .sr-heat-tile img { image-rendering: pixelated; image-rendering: crisp-edges; }
.sr-lr { margin: 0; } .sr-lr figcaption { font-size: 0.85em; color: var(--body-text-color-subdued); }
.sr-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 8px; }
.sr-tile { position: relative; padding: 0; border: 3px solid transparent; border-radius: 6px; background: none;
           cursor: pointer; line-height: 0; }
.sr-tile:focus-visible { outline: 3px solid #1c7ed6; }
.sr-tile img { width: 112px; height: 112px; max-width: 100%; object-fit: contain; }
.sr-tile.sr-picked { border-color: #e8590c; }
.sr-grid.sr-wide { grid-template-columns: repeat(4, minmax(0, 1fr)); }  /* plates: 16 in 4 rows */
.sr-grid.sr-wide .sr-tile img { width: 200px; height: 50px; }
.sr-heatmap.sr-wide { grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); }
.sr-tile[data-rank]::after { content: attr(data-rank); position: absolute; top: 4px; left: 4px; width: 1.7em;
           height: 1.7em; line-height: 1.7em; border-radius: 50%; background: #e8590c; color: #fff;
           font-weight: 700; text-align: center; font-size: 14px; }
.sr-num { position: absolute; bottom: 4px; right: 4px; font-size: 13px; line-height: 1; color: #fff; font-weight: 600;
          background: rgba(0, 0, 0, 0.6); padding: 2px 5px; border-radius: 4px; }
.sr-grid .sr-tile { justify-self: center; }  /* the number sits on the image's corner, not in the cell's */
.sr-tile.sr-picked { border-color: #e8590c; }
#sr-submit.sr-not-ready { opacity: 0.55; }
.sr-keys { font-size: 0.85em; padding: 4px 8px; border-radius: 6px; background: var(--background-fill-secondary); }
.sr-keys kbd, .sr-skip-box kbd { border: 1px solid #adb5bd; border-radius: 3px; padding: 0 4px; font-size: 0.9em; }
.sr-keymsg { min-height: 1.3em; color: #c92a2a; font-weight: 600; }
.sr-skip-box { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; padding: 8px; border: 2px solid #e8590c;
               border-radius: 6px; }
.sr-skip-box[hidden] { display: none; }
.sr-skip-box button { padding: 3px 8px; border: 1px solid #ced4da; border-radius: 4px; background: none;
                      cursor: pointer; font-size: 0.9em; font-weight: normal; }
.sr-msg { padding: 10px 12px; border-radius: 6px; background: var(--background-fill-secondary); }
.sr-msg.sr-done { font-size: 1.2em; } .sr-msg.sr-error { color: #c92a2a; }
.sr-status .sr-msg { padding: 6px 10px; font-size: 0.9em; overflow-wrap: anywhere; }
.sr-counter { font-size: 1.3em; font-weight: 600; }
.sr-heatmap { display: grid; grid-template-columns: repeat(auto-fill, minmax(60px, 1fr)); gap: 4px; }
.sr-heat-tile { position: relative; line-height: 0; border: 2px solid transparent; border-radius: 4px; }
.sr-heat-tile img { width: 100%; height: auto; }
.sr-heat-tile.sr-voted { border-color: #e8590c; }
.sr-heat-tile.sr-top { border-color: #2f9e44; }
.sr-count { position: absolute; top: 3px; left: 3px; min-width: 1.5em; padding: 2px 4px; border-radius: 9px;
            background: #e8590c; color: #fff; font-weight: 700; font-size: 13px; line-height: 1.1;
            text-align: center; }
.sr-heat-tile.sr-top .sr-count { background: #2f9e44; }
.sr-legend { font-size: 0.8em; color: var(--body-text-color-subdued); margin-top: 4px; }
.sr-bars { display: flex; flex-direction: column; gap: 4px; }
.sr-bar-row { display: grid; grid-template-columns: 6em 1fr 6em; align-items: center; gap: 6px; }
.sr-bar { display: block; height: 14px; background: #1c7ed6; border-radius: 3px; min-width: 2px; }
.sr-bar-value { font-size: 0.85em; }
.sr-pos-grid { display: flex; gap: 4px; align-items: flex-start; flex-wrap: wrap; margin: 6px 0; }
.sr-pos-col { width: 30px; text-align: center; } .sr-pos-col.sr-pos-dropped { opacity: 0.45; }
.sr-pos-stack { height: 90px; display: flex; flex-direction: column-reverse; border: 1px solid #ced4da; }
.sr-pos-seg { display: flex; align-items: center; justify-content: center; overflow: hidden; color: #fff;
              font-size: 11px; font-weight: 600; min-height: 1px; }
.sr-pos-gap { background: repeating-linear-gradient(45deg, #e9ecef, #e9ecef 3px, #fff 3px, #fff 6px);
              color: #868e96; }
.sr-pos-head { font-weight: 700; font-family: monospace; font-size: 1.1em; }
.sr-pos-label { font-size: 0.75em; color: var(--body-text-color-subdued); }
.sr-pos-text { font-size: 0.85em; margin: 4px 0 0 1.2em; padding: 0; }
.sr-progress { height: 16px; background: var(--background-fill-secondary); border-radius: 8px; overflow: hidden; }
.sr-progress-fill { height: 100%; background: #2f9e44; }
.sr-progress-caption { font-size: 0.9em; margin-top: 4px; }
.sr-guidelines { font-size: 0.9em; } .sr-guidelines > div { max-height: 6.5em; overflow: auto; padding: 2px 8px; }
.sr-guidelines summary { cursor: pointer; font-weight: 600; }
.sr-my-work { font-size: 0.85em; width: 100%; } .sr-my-work td, .sr-my-work th { padding: 1px 6px; }
.sr-revise-one { font-size: 0.9em; padding: 0 6px; border: 1px solid #999; border-radius: 4px; cursor: pointer; }
#sr-download .filename .stem { white-space: normal; overflow-wrap: anywhere; text-overflow: clip; }  /* full names */
"""
