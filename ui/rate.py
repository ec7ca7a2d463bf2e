"""The Rate view: the project's guidelines, the LR image large and pixelated, the bank as a top-k picker, "what do
you read?", Submit (with exactly k picks), Skip with a reason, Revise (the last submission, or one from "my work")
within the project's window, keyboard first, progress, and a clear message when nothing is left.

The picker is an HTML grid of buttons (lossless PNG, nearest-neighbour enlarged), each labelled with its key. Picks
live in the page (``SR_JS``): a click or a key draws the rank at once, updates the counter and Submit's readiness
and writes the picks (sample ids, best first) into a hidden textbox that Submit sends, with no server round trip
in between, so no keystroke is lost; the picks of the task on screen are kept in localStorage under its
assignment id, and the server keeps the lease, so a reload returns to the same task with its picks. The server
re-checks everything: the caller's role, that the assignment is theirs, that the picks are k distinct samples of
its bank (``annotation.tasks.submit``).
"""

# No ``from __future__ import annotations`` in this module: Gradio reads an event handler's annotations with
# ``typing.get_type_hints`` on every call (to find its ``gr.Request``), and string annotations are compiled
# anew each time; evaluated once here, Submit's bookkeeping on the event loop is that much shorter.
from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr
from sqlalchemy.orm import Session

from annotation.projects import get_project
from annotation.tasks import Task, next_task, revisable, revise, skip, submit, submitted_task
from annotation.views import RaterProgress, my_work, rater_progress, rater_projects

from .context import AppContext, chosen_id, refuse
from .render import esc, lr_html, message_html, picker_html, progress_html

SKIP_REASONS = ["can't tell what it is", "no sample looks plausible", "the image is broken", "other"]
TILE_KEYS = "123456789abcdefghijklmnopqtuvwxyz"  # sample i's key (no r or s: they type the reading and skip)

# The page's rating logic, defined once (both the page's load script and the grid's mount run it). Picks live in
# the page: the grid's tiles carry their rank (data-rank), so a key or a click is drawn at once, the counter and
# Submit's readiness follow without a server round trip, and the hidden picks box (what Submit sends) is
# written in the same step, so 1, 2, 3 then Ctrl+Enter pressed quickly sends those three picks. The picks of
# the task on screen are kept in localStorage under its assignment id, so a reload brings them back.
SR_JS = r"""
(() => {
  if (window.sr) return;
  const KEYS = '__TILE_KEYS__';
  const q = (sel) => document.querySelector(sel);
  const grid = () => q('#sr-grid .sr-grid');
  const tiles = () => Array.from(document.querySelectorAll('#sr-grid .sr-tile'));
  const say = (text) => { const m = q('#sr-keymsg'); if (m) m.textContent = text || ''; };
  const picks = () => tiles().filter((t) => t.dataset.rank)
      .sort((a, b) => parseInt(a.dataset.rank) - parseInt(b.dataset.rank)).map((t) => t.dataset.sid);
  const store = (g, p) => {
    try {
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const key = localStorage.key(i);
        const mine = 'sr-picks-' + g.dataset.assignment;
        if (key && key.startsWith('sr-picks-') && key !== mine) localStorage.removeItem(key);
      }
      localStorage.setItem('sr-picks-' + g.dataset.assignment, JSON.stringify(p));
    } catch (e) { /* storage may be off: the picks still live in the page */ }
  };
  const draw = (p) => {
    const g = grid(); if (!g) return;
    const k = parseInt(g.dataset.k || '0');
    tiles().forEach((t) => {
      const r = p.indexOf(t.dataset.sid);
      if (r >= 0) {
        t.dataset.rank = String(r + 1); t.classList.add('sr-picked'); t.setAttribute('aria-pressed', 'true');
      }
      else { delete t.dataset.rank; t.classList.remove('sr-picked'); t.setAttribute('aria-pressed', 'false'); }
    });
    const c = q('#sr-counter'); if (c) c.textContent = p.length + ' of ' + k + ' picked';
    const b = q('#sr-submit');
    if (b) {
      b.classList.toggle('sr-not-ready', p.length !== k); b.setAttribute('aria-disabled', String(p.length !== k));
    }
    const box = q('#sr-picks textarea, #sr-picks input');
    if (box && box.value !== p.join(',')) {
      box.value = p.join(','); box.dispatchEvent(new Event('input', { bubbles: true }));
    }
    store(g, p);
  };
  const toggle = (tile) => {
    const g = grid(); if (!g || !tile) return;
    const k = parseInt(g.dataset.k || '0'); const p = picks(); const at = p.indexOf(tile.dataset.sid);
    if (at >= 0) p.splice(at, 1);
    else if (p.length < k) p.push(tile.dataset.sid);
    else { say('You have picked ' + k + ' of ' + k + ': unpick one first (click it or press its key).'); return; }
    say(''); draw(p);
  };
  const focusGrid = () => { const t = tiles()[0]; if (t) t.focus(); };
  const submit = () => {
    const g = grid(); if (!g) return;
    const k = parseInt(g.dataset.k || '0'); const n = picks().length;
    if (n !== k) { say('Pick exactly ' + k + ' samples before submitting (' + n + ' picked).'); return; }
    draw(picks());  // the picks box holds exactly what is drawn (a click on Submit waits for no server reply)
    const b = q('#sr-submit'); if (b) { b.dataset.srGo = '1'; b.click(); }
  };
  const skipPanel = () => q('#sr-skip-panel .sr-skip-box');
  const openSkip = () => {
    const panel = skipPanel(); if (!panel || !grid()) return;
    panel.hidden = false; say(''); const first = panel.querySelector('button'); if (first) first.focus();
  };
  const closeSkip = () => { const panel = skipPanel(); if (panel) panel.hidden = true; };
  const skip = (reason) => {
    const g = grid(); if (!g) return;
    const box = q('#sr-skip-reason textarea, #sr-skip-reason input'); if (!box) return;
    box.value = reason; box.dispatchEvent(new Event('input', { bubbles: true }));
    closeSkip();
    const b = q('#sr-skip'); if (b) b.click();
  };
  const reviseOne = (aid) => {  // a Revise button in "my work": the task's id into the hidden box, then press
    const box = q('#sr-work-pick textarea, #sr-work-pick input'); if (!box) return;
    box.value = aid; box.dispatchEvent(new Event('input', { bubbles: true }));
    const b = q('#sr-work-revise'); if (b) b.click();
  };
  const onRender = () => {  // a grid was (re)drawn: a new task, a revision, or the same task after a reload
    const g = grid(); if (!g) return;
    if (g.dataset.srSeen === g.dataset.render) return;
    g.dataset.srSeen = g.dataset.render;
    closeSkip();
    let p = picks();
    if (!p.length) {
      try { p = JSON.parse(localStorage.getItem('sr-picks-' + g.dataset.assignment) || '[]'); } catch (e) { p = []; }
      const sids = new Set(tiles().map((t) => t.dataset.sid)); p = p.filter((x) => sids.has(x));
    }
    draw(p);
    const a = document.activeElement;
    if (!a || a === document.body || a.closest('#sr-reading') || a.closest('#sr-submit') || a.closest('#sr-grid')
        || a.closest('#sr-skip-panel')) focusGrid();
  };
  const move = (dx, dy) => {
    const ts = tiles(); if (!ts.length) return;
    let i = ts.indexOf(document.activeElement); if (i < 0) { ts[0].focus(); return; }
    if (dx) i = Math.max(0, Math.min(ts.length - 1, i + dx));
    else {
      const top = ts[i].offsetTop; const perRow = ts.filter((t) => t.offsetTop === ts[0].offsetTop).length || 1;
      i = Math.max(0, Math.min(ts.length - 1, i + dy * perRow)); if (top === ts[i].offsetTop && dy) return;
    }
    ts[i].focus();
  };
  document.addEventListener('click', (ev) => {
    const b = ev.target.closest && ev.target.closest('#sr-submit');
    if (b) {  // a click on Submit goes through the same check as Ctrl+Enter
      if (b.dataset.srGo === '1') { delete b.dataset.srGo; return; }
      ev.preventDefault(); ev.stopPropagation(); submit(); return;
    }
    const tile = ev.target.closest && ev.target.closest('#sr-grid .sr-tile');
    if (tile) { ev.preventDefault(); toggle(tile); return; }
    const reason = ev.target.closest && ev.target.closest('#sr-skip-panel [data-reason]');
    if (reason) { ev.preventDefault(); skip(reason.dataset.reason); return; }
    if (ev.target.closest && ev.target.closest('#sr-skip-open')) { ev.preventDefault(); openSkip(); return; }
    if (ev.target.closest && ev.target.closest('#sr-skip-panel .sr-skip-cancel')) { closeSkip(); focusGrid(); }
    const one = ev.target.closest && ev.target.closest('#sr-work-list .sr-revise-one');
    if (one) { ev.preventDefault(); reviseOne(one.dataset.aid); }
  }, true);
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 'Enter') {
      if (grid()) { ev.preventDefault(); submit(); } return;
    }
    if (typing) {
      if (ev.key === 'Escape' && t.closest('#sr-reading')) { ev.preventDefault(); t.blur(); focusGrid(); }
      else if (ev.key === 'Enter' && t.closest('#sr-reading')) { ev.preventDefault(); submit(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !grid()) return;
    const panel = skipPanel();
    if (panel && !panel.hidden) {  // the second key: a reason's number confirms, Escape cancels
      const reasons = Array.from(panel.querySelectorAll('[data-reason]'));
      const i = parseInt(ev.key) - 1;
      if (i >= 0 && i < reasons.length) { ev.preventDefault(); skip(reasons[i].dataset.reason); }
      else if (ev.key === 'Escape' || ev.key === 's' || ev.key === 'S') {
        ev.preventDefault(); closeSkip(); focusGrid();
      }
      return;
    }
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    const at = key.length === 1 ? KEYS.indexOf(key) : -1;
    if (at >= 0) {
      const tile = tiles()[at];
      if (tile) { ev.preventDefault(); toggle(tile); tile.focus(); }
    } else if (key === 's') { ev.preventDefault(); openSkip(); }
    else if (key === 'r') {
      const r = q('#sr-reading textarea, #sr-reading input'); if (r) { ev.preventDefault(); r.focus(); }
    } else if (key === 'ArrowRight' || key === 'ArrowLeft' || key === 'ArrowUp' || key === 'ArrowDown') {
      ev.preventDefault();
      const dx = key === 'ArrowRight' ? 1 : key === 'ArrowLeft' ? -1 : 0;
      move(dx, key === 'ArrowDown' ? 1 : key === 'ArrowUp' ? -1 : 0);
    } else if ((key === ' ' || key === 'Enter') && t && t.closest && t.closest('#sr-grid .sr-tile')) {
      ev.preventDefault(); toggle(t.closest('.sr-tile'));
    }
  });
  window.sr = { picks, draw, toggle, submit, skip, openSkip, closeSkip, onRender, focusGrid };
  // watch the whole page: Gradio may replace the grid's container, so a watch on one element can go stale
  new MutationObserver(() => window.sr.onRender()).observe(document.body, { childList: true, subtree: true });
})();
""".replace("__TILE_KEYS__", TILE_KEYS)

# Runs when the grid component mounts: the page logic (which watches the page, so every new render of the grid —
# a task, a revision, a reload — restores its picks and takes the keyboard focus), then the first render.
PICKER_JS = SR_JS + """
window.sr.onRender();
"""

# Given to launch(js=...): the same logic at page load (whichever runs first defines it).
KEYS_JS = "() => {" + SR_JS + "}"

SHORTCUTS = ("<b>Keys</b> <kbd>1</kbd>–<kbd>9</kbd>, then <kbd>a</kbd>, <kbd>b</kbd>, … pick/unpick the sample "
             "labelled so (or arrows + <kbd>Space</kbd>) · <kbd>R</kbd> type the reading, <kbd>Esc</kbd> back "
             "to the grid · <kbd>Ctrl</kbd>+<kbd>Enter</kbd> submit · <kbd>S</kbd> skip, then the reason's "
             "number")


def guidelines_html(text: str | None) -> str:
    """The project's guidelines, collapsible (open by default), as plain text with its line breaks."""
    if not text:
        return ""
    body = "<br>".join(esc(line) for line in text.splitlines())
    return f"<details class='sr-guidelines' open><summary>Guidelines</summary><div>{body}</div></details>"


def my_work_html(work) -> str:
    """The rater's own submissions, newest first: when, picks, reading, and until when each may be revised (with a
    Revise button while it may: the page puts the task's id into the hidden "revise one" box and presses it)."""
    if not work:
        return "<div class='sr-legend'>No submissions yet in this project.</div>"
    rows = "".join(
        f"<tr><td>task {w.assignment_id}</td><td>{w.submitted_at:%H:%M:%S}</td><td>{w.n_picks}</td>"
        f"<td>{esc(w.reading or '–')}</td><td>{f'until {w.revisable_until:%H:%M:%S}' if w.revisable else 'final'}"
        f"{f' ({w.revisions} revision(s))' if w.revisions else ''}"
        + (f" <button type='button' class='sr-revise-one' data-aid='{int(w.assignment_id)}'"
           f" aria-label='Revise task {int(w.assignment_id)}'>Revise</button>" if w.revisable else "")
        + "</td></tr>" for w in work)
    return ("<table class='sr-my-work'><tr><th>task</th><th>submitted (UTC)</th><th>picks</th><th>reading</th>"
            f"<th>revisable</th></tr>{rows}</table>")


def skip_panel_html() -> str:
    """The skip reasons, opened by S (or the Skip button); a reason's number (or a click) confirms."""
    items = "".join(f"<button type='button' data-reason='{esc(r)}'><kbd>{i}</kbd> {esc(r)}</button>"
                    for i, r in enumerate(SKIP_REASONS, start=1))
    return ("<div id='sr-keymsg' class='sr-keymsg' role='status' aria-live='polite'></div>"
            f"<div class='sr-skip-box' hidden><b>Skip this task because…</b> {items}"
            "<button type='button' class='sr-skip-cancel'><kbd>Esc</kbd> cancel</button></div>")


@dataclass(frozen=True)
class RaterTask:
    """Per-user state (gr.State): the task on screen."""

    assignment_id: int
    project_id: int
    k: int
    sample_ids: tuple[int, ...]
    revising: bool = False  # Submit replaces an earlier submission (annotation.tasks.revise)


@dataclass
class RateView:
    project: gr.Dropdown
    outputs: list


def _parse_picks(text: str | None) -> list[int]:
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise refuse("Picks must be sample ids separated by commas.") from None


def counter_html(n: int, k: int) -> str:
    return f"<div class='sr-counter' id='sr-counter'>{n} of {k} picked</div>"


def _on_screen(task: Task, picks: Sequence[int] = (), revising: bool = False) -> tuple[str, str, RaterTask]:
    """The LR view, the picker grid (``picks`` already drawn) and the per-user state of a task on screen."""
    state = RaterTask(task.assignment_id, task.project_id, task.k, tuple(x.sample_id for x in task.samples),
                      revising=revising)
    grid = picker_html([(x.sample_id, x.png) for x in task.samples], task.k, task.assignment_id, picks,
                       keys=TILE_KEYS)
    return lr_html(task.lr_png, "the LR image, enlarged"), grid, state


def rater_menu(ctx: AppContext, rater_id: int, project_id: int | None = None):
    """The rater's project menu: every project with what is left to them ("demo – 7 left"); selected: the given
    project, else the one where they hold a live task (a reload returns to it), else the first with work left."""
    with ctx.tx() as s:
        rows = rater_projects(s, rater_id)
    choices = [(f"{r.name} – {r.remaining} left", r.project_id) for r in rows]
    if project_id is None:
        live = [r for r in rows if r.live_assignment_id is not None]
        open_ = [r for r in rows if r.remaining]
        project_id = (live or open_ or rows or [None])[0]
        project_id = getattr(project_id, "project_id", None)
    return gr.update(choices=choices, value=project_id)


def serve_next(s: Session, rater_id: int, project_id: int) -> tuple[Task | None, RaterProgress]:
    """This rater's next task (or the live one) and progress, in the caller's transaction."""
    return next_task(s, rater_id, project_id), rater_progress(s, rater_id, project_id)


def show_task(ctx: AppContext, rater_id: int, project_id: int, note: str = "",
              served: tuple[Task | None, RaterProgress] | None = None, buttons_live: bool = False) -> tuple:
    """The outputs of every rate handler: serve this rater's next task (or the live one) and draw it.
    ``served``: what :func:`serve_next` returned in the handler's own transaction (one write per submission).
    ``buttons_live``: Submit and Skip are enabled on the page already (a task was on screen, not a revision), so a
    next task leaves them as they are (their labels; a property update costs Gradio a new component per call)."""
    if served is None:
        with ctx.tx() as s:
            served = serve_next(s, rater_id, project_id)
    task, prog = served
    progress = progress_html(prog.done, prog.total, f"{prog.done} of {prog.total} done")
    if task is None:
        with ctx.tx() as s:
            others = [r for r in rater_projects(s, rater_id) if r.remaining and r.project_id != project_id]
        where = ("Still to rate: " + "; ".join(f"{r.name} ({r.remaining} left)" for r in others)
                 + " – choose it in the project menu." if others else "No other project has work for you now.")
        done = message_html((note + " " if note else "") + "Nothing left to rate in this project. Thank you! "
                            + where, "done")
        return ("", "", "", "", progress, done, gr.update(value=""), gr.update(interactive=False),
                gr.update(interactive=False), None)  # no task: Submit and Skip off
    lr_view, grid, state = _on_screen(task)
    msg = message_html((note + " " if note else "") +
                       f"Pick the {task.k} samples you find most plausible, best first "
                       f"(task {task.assignment_id}).")
    # Submit is live whenever a task is on screen: the page checks "exactly k" (and the server checks again)
    if buttons_live:
        return lr_view, grid, "", counter_html(0, task.k), progress, msg, "", "Submit", "Skip", state
    return (lr_view, grid, "", counter_html(0, task.k), progress, msg,
            "", gr.update(interactive=True), gr.update(interactive=True), state)


def build_rate(ctx: AppContext) -> RateView:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=340):  # room for a plate's LR image (320 px wide)
            project = gr.Dropdown(label="project", choices=[], interactive=True, allow_custom_value=True,
                                  elem_id="sr-rate-project")
            lr_view = gr.HTML(elem_id="sr-lr")
            progress = gr.HTML(elem_id="sr-progress")
            counter = gr.HTML(counter_html(0, 0))
            reading = gr.Textbox(label="What do you read?", max_lines=1, elem_id="sr-reading",
                                 placeholder="e.g. 5, or a plate as 8B0D12; ? for a character you cannot read")
            with gr.Row():
                submit_btn = gr.Button("Submit", variant="primary", interactive=False, elem_id="sr-submit")
                skip_open = gr.Button("Skip…", elem_id="sr-skip-open")  # opens the reasons (the page's S key)
            revise_btn = gr.Button("Revise my last submission", size="sm", elem_id="sr-revise")
            with gr.Accordion("My work", open=False, elem_id="sr-my-work"):
                work_list = gr.HTML(elem_id="sr-work-list")
                # what a row's Revise button fills in and presses (hidden; also the HTTP API's /revise)
                work_pick = gr.Textbox(visible="hidden", elem_id="sr-work-pick", label="revise task")
                work_btn = gr.Button("Revise", visible="hidden", elem_id="sr-work-revise")
            # what the page fills in and presses once a reason is chosen (hidden; also the HTTP API's /skip)
            reason = gr.Textbox(visible="hidden", elem_id="sr-skip-reason", label="skip reason")
            skip_btn = gr.Button("Skip", visible="hidden", interactive=False, elem_id="sr-skip")
        with gr.Column(scale=3):
            guidelines = gr.HTML(elem_id="sr-guidelines")
            gr.HTML(f"<div class='sr-keys'>{SHORTCUTS}</div>", elem_id="sr-legend")
            message = gr.HTML(elem_id="sr-message")
            gr.HTML(skip_panel_html(), elem_id="sr-skip-panel")  # the page's messages and the skip reasons
            grid = gr.HTML(elem_id="sr-grid", js_on_load=PICKER_JS)
            picks = gr.Textbox(visible="hidden", elem_id="sr-picks", label="picks")
    state = gr.State(None)
    outputs = [lr_view, grid, picks, counter, progress, message, reading, submit_btn, skip_btn, state]

    def load_task(project_id, request: gr.Request):
        actor = ctx.actor(request, "rater")
        return show_task(ctx, actor.id, chosen_id(project_id, "a project"))

    def answer(rater_id: int, task: RaterTask, note: str, nxt: Task | None, prog: RaterProgress,
               work: list) -> tuple:
        """What Submit and Skip answer: the next task, the rater's progress, then "my work"."""
        return (*show_task(ctx, rater_id, task.project_id, note, (nxt, prog), buttons_live=not task.revising),
                my_work_html(work))

    def do_submit(text, reading_text, task: RaterTask | None, request: gr.Request):
        actor = ctx.actor(request, "rater")
        if task is None:
            raise refuse("No task on screen: choose a project.")
        picks_ = _parse_picks(text)
        reading_ = (reading_text or "").strip() or None
        with ctx.tx() as s:  # the vote and the next task in one transaction: one wait for the write lock
            if task.revising:
                revise(s, actor.id, task.assignment_id, picks_, reading_)
                note = "Revised."
            else:
                res = submit(s, actor.id, task.assignment_id, picks_, reading_)
                note = "Saved." if not res.replayed else "Already saved."
            nxt = next_task(s, actor.id, task.project_id)
            # the progress and "my work" in the same transaction: two short reads cost less than a second one
            prog, work = rater_progress(s, actor.id, task.project_id), my_work(s, actor.id, task.project_id)
        return answer(actor.id, task, note, nxt, prog, work)

    def revise_screen(rater_id: int, assignment_id: int) -> tuple:
        with ctx.tx() as s:
            task, done = submitted_task(s, rater_id, assignment_id)
        lr_view, grid, state = _on_screen(task, done.picks, revising=True)
        msg = message_html(f"Revising task {task.assignment_id}: change your picks or reading, then Submit. "
                           "Your earlier answer stays in the audit log.")
        return (lr_view, grid, ",".join(map(str, done.picks)),
                counter_html(len(done.picks), task.k), gr.update(), msg, done.reading or "",
                gr.update(interactive=True), gr.update(interactive=False), state)

    def do_revise(project_id, request: gr.Request):
        """Put the rater's newest submission that is still inside the revision window back on screen."""
        actor = ctx.actor(request, "rater")
        pid = chosen_id(project_id, "a project")
        with ctx.tx() as s:
            recent = revisable(s, actor.id, pid)
        if not recent:
            raise refuse("Nothing to revise: no submission of yours is inside the revision window.")
        return revise_screen(actor.id, recent[0].assignment_id)

    def do_revise_one(assignment_id, request: gr.Request):
        """Put one of the rater's own submissions (chosen in "my work") back on screen, inside its window."""
        actor = ctx.actor(request, "rater")
        return revise_screen(actor.id, chosen_id(assignment_id, "one of your submissions"))

    def side_panels(project_id, request: gr.Request):
        """The project's guidelines above the grid, and the rater's own submissions ("my work")."""
        actor = ctx.actor(request, "rater")
        if project_id in (None, ""):
            return "", ""
        pid = chosen_id(project_id, "a project")
        with ctx.tx(write=False) as s:
            text = get_project(s, pid).guidelines
            work = my_work(s, actor.id, pid)
        return guidelines_html(text), my_work_html(work)

    def do_skip(reason_text, task: RaterTask | None, request: gr.Request):
        actor = ctx.actor(request, "rater")
        if task is None:
            raise refuse("No task on screen: choose a project.")
        with ctx.tx() as s:
            skip(s, actor.id, task.assignment_id, (reason_text or "").strip() or "no reason given")
            nxt = next_task(s, actor.id, task.project_id)
            prog, work = rater_progress(s, actor.id, task.project_id), my_work(s, actor.id, task.project_id)
        return answer(actor.id, task, "Skipped.", nxt, prog, work)

    panels = [guidelines, work_list]
    project.change(load_task, [project], outputs, api_name="next_task").then(
        side_panels, [project], panels, api_name=False, show_progress="hidden")
    # Submit and Skip skip Gradio's queue (queue=False: one plain POST that answers with the next task and the
    # refreshed "my work", no event stream) and its per-component pre- and postprocessing (a worker-thread hop per
    # input and output; these take and give plain strings): under a burst of raters that bookkeeping cost more
    # than the submission itself.
    fast = {"queue": False, "preprocess": False, "postprocess": False}
    submit_btn.click(do_submit, [picks, reading, state], outputs + panels[1:], api_name="submit", **fast)
    skip_btn.click(do_skip, [reason, state], outputs + panels[1:], api_name="skip", **fast)
    skip_open.click(None, js="() => { if (window.sr) window.sr.openSkip(); }")
    revise_btn.click(do_revise, [project], outputs, api_name="revise_last")
    work_btn.click(do_revise_one, [work_pick], outputs, api_name="revise")
    return RateView(project, outputs)


__all__ = ["KEYS_JS", "SKIP_REASONS", "TILE_KEYS", "RaterTask", "build_rate", "esc", "rater_menu", "show_task"]
