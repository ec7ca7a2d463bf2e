"""The Rate view: the LR image large and pixelated, the bank as a top-k picker, "what do you read?", Submit (only
with exactly k picks), Skip with a reason, Revise the last submission within the project's window, keyboard
shortcuts, progress, and a clear message when nothing is left.

The picker is an HTML grid of buttons (lossless PNG, nearest-neighbour enlarged): a click picks or unpicks a
sample, the rank is drawn on it, and the picks (sample ids, best first) go into a hidden textbox that the server
reads on Submit. The server re-checks everything: the caller's role, that the assignment is theirs, that the picks
are k distinct samples of its bank (``annotation.tasks.submit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr
from sqlalchemy.orm import Session

from annotation.tasks import Task, next_task, revisable, revise, skip, submit, submitted_task
from annotation.views import RaterProgress, rater_progress

from .context import AppContext, chosen_id, refuse
from .render import esc, lr_html, message_html, picker_html, progress_html

SKIP_REASONS = ["can't tell what it is", "no sample looks plausible", "the image is broken", "other"]

# Runs once when the grid component mounts; one delegated listener survives every re-render of the grid.
PICKER_JS = """
element.addEventListener('click', (ev) => {
  const tile = ev.target.closest('.sr-tile'); if (!tile) return;
  const grid = tile.closest('.sr-grid'); const k = parseInt(grid.dataset.k || '0');
  const box = document.querySelector('#sr-picks textarea, #sr-picks input'); if (!box) return;
  const picks = box.value ? box.value.split(',').filter((s) => s) : [];
  const sid = tile.dataset.sid; const at = picks.indexOf(sid);
  if (at >= 0) picks.splice(at, 1); else if (picks.length < k) picks.push(sid); else return;
  box.value = picks.join(',');
  box.dispatchEvent(new Event('input', { bubbles: true }));
  grid.querySelectorAll('.sr-tile').forEach((t) => {
    const r = picks.indexOf(t.dataset.sid);
    if (r >= 0) {
      t.dataset.rank = String(r + 1); t.classList.add('sr-picked'); t.setAttribute('aria-pressed', 'true');
    }
    else { delete t.dataset.rank; t.classList.remove('sr-picked'); t.setAttribute('aria-pressed', 'false'); }
  });
});
"""

# Page-wide shortcuts (given to launch(js=...)): 1-9 pick/unpick sample 1-9, Ctrl+Enter submit, S skip,
# R type the reading. Letters and digits go to the reading box while it has the focus.
KEYS_JS = """
() => {
  if (window.__srKeys) return; window.__srKeys = true;
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 'Enter') {
      const b = document.querySelector('#sr-submit'); if (b && !b.disabled) { ev.preventDefault(); b.click(); }
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (/^[1-9]$/.test(ev.key)) {
      const tile = document.querySelectorAll('#sr-grid .sr-tile')[parseInt(ev.key) - 1];
      if (tile) { ev.preventDefault(); tile.click(); tile.focus(); }
    } else if (ev.key === 's' || ev.key === 'S') {
      const b = document.querySelector('#sr-skip'); if (b && !b.disabled) { ev.preventDefault(); b.click(); }
    } else if (ev.key === 'r' || ev.key === 'R') {
      const r = document.querySelector('#sr-reading textarea, #sr-reading input');
      if (r) { ev.preventDefault(); r.focus(); }
    }
  });
}
"""

SHORTCUTS = ("**Keys:** click or `1`-`9` pick/unpick (Tab + Space for any sample) · `R` type the reading · "
             "`Ctrl+Enter` submit · `S` skip")


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
    grid = picker_html([(x.sample_id, x.png) for x in task.samples], task.k, task.assignment_id, picks)
    return lr_html(task.lr_png, "the LR image, enlarged"), grid, state


def serve_next(s: Session, rater_id: int, project_id: int) -> tuple[Task | None, RaterProgress]:
    """This rater's next task (or the live one) and progress, in the caller's transaction."""
    return next_task(s, rater_id, project_id), rater_progress(s, rater_id, project_id)


def show_task(ctx: AppContext, rater_id: int, project_id: int, note: str = "",
              served: tuple[Task | None, RaterProgress] | None = None) -> tuple:
    """The outputs of every rate handler: serve this rater's next task (or the live one) and draw it.
    ``served``: what :func:`serve_next` returned in the handler's own transaction (one write per submission)."""
    if served is None:
        with ctx.tx() as s:
            served = serve_next(s, rater_id, project_id)
    task, prog = served
    progress = progress_html(prog.done, prog.total, f"{prog.done} of {prog.total} done")
    if task is None:
        done = message_html((note + " " if note else "") + "Nothing left to rate in this project. Thank you!",
                            "done")
        return ("", "", "", "", progress, done, gr.update(value=""), gr.update(interactive=False),
                gr.update(interactive=False), None)
    lr_view, grid, state = _on_screen(task)
    msg = message_html((note + " " if note else "") +
                       f"Pick the {task.k} samples you find most plausible, best first "
                       f"(task {task.assignment_id}).")
    return (lr_view, grid, "", counter_html(0, task.k), progress, msg,
            gr.update(value=""), gr.update(interactive=False), gr.update(interactive=True), state)


def build_rate(ctx: AppContext) -> RateView:
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            project = gr.Dropdown(label="project", choices=[], interactive=True, allow_custom_value=True,
                              elem_id="sr-rate-project")
            lr_view = gr.HTML(elem_id="sr-lr")
            progress = gr.HTML(elem_id="sr-progress")
            counter = gr.HTML(counter_html(0, 0))
            reading = gr.Textbox(label="What do you read?", max_lines=1, elem_id="sr-reading",
                                 placeholder="e.g. 5, or a plate as 8B0D12; ? for a character you cannot read")
            with gr.Row():
                submit_btn = gr.Button("Submit", variant="primary", interactive=False, elem_id="sr-submit")
                skip_btn = gr.Button("Skip", interactive=False, elem_id="sr-skip")
            revise_btn = gr.Button("Revise my last submission", size="sm", elem_id="sr-revise")
            reason = gr.Dropdown(SKIP_REASONS, value=SKIP_REASONS[0], label="skip reason",
                                 allow_custom_value=True)
            gr.Markdown(SHORTCUTS)
        with gr.Column(scale=3):
            message = gr.HTML(elem_id="sr-message")
            grid = gr.HTML(elem_id="sr-grid", js_on_load=PICKER_JS)
            picks = gr.Textbox(visible="hidden", elem_id="sr-picks", label="picks")
    state = gr.State(None)
    outputs = [lr_view, grid, picks, counter, progress, message, reading, submit_btn, skip_btn, state]

    def load_task(project_id, request: gr.Request):
        actor = ctx.actor(request, "rater")
        return show_task(ctx, actor.id, chosen_id(project_id, "a project"))

    def picks_changed(text, task: RaterTask | None, request: gr.Request):
        ctx.actor(request, "rater")
        if task is None:
            return counter_html(0, 0), gr.update(interactive=False)
        n = len(_parse_picks(text))
        return counter_html(n, task.k), gr.update(interactive=n == task.k)

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
            served = serve_next(s, actor.id, task.project_id)
        return show_task(ctx, actor.id, task.project_id, note, served)

    def do_revise(project_id, request: gr.Request):
        """Put the rater's newest submission that is still inside the revision window back on screen."""
        actor = ctx.actor(request, "rater")
        pid = chosen_id(project_id, "a project")
        with ctx.tx() as s:
            recent = revisable(s, actor.id, pid)
            if not recent:
                raise refuse("Nothing to revise: no submission of yours is inside the revision window.")
            task, done = submitted_task(s, actor.id, recent[0].assignment_id)
        lr_view, grid, state = _on_screen(task, done.picks, revising=True)
        msg = message_html(f"Revising task {task.assignment_id}: change your picks or reading, then Submit. "
                           "Your earlier answer stays in the audit log.")
        return (lr_view, grid, ",".join(map(str, done.picks)),
                counter_html(len(done.picks), task.k), gr.update(), msg, done.reading or "",
                gr.update(interactive=True), gr.update(interactive=False), state)

    def do_skip(reason_text, task: RaterTask | None, request: gr.Request):
        actor = ctx.actor(request, "rater")
        if task is None:
            raise refuse("No task on screen: choose a project.")
        with ctx.tx() as s:
            skip(s, actor.id, task.assignment_id, (reason_text or "").strip() or "no reason given")
            served = serve_next(s, actor.id, task.project_id)
        return show_task(ctx, actor.id, task.project_id, "Skipped.", served)

    project.change(load_task, [project], outputs, api_name="next_task")
    picks.change(picks_changed, [picks, state], [counter, submit_btn], api_name="picks_changed",
                 show_progress="hidden")
    submit_btn.click(do_submit, [picks, reading, state], outputs, api_name="submit")
    reading.submit(None, js="() => { const b = document.querySelector('#sr-submit'); "
                            "if (b && !b.disabled) b.click(); }")
    skip_btn.click(do_skip, [reason, state], outputs, api_name="skip")
    revise_btn.click(do_revise, [project], outputs, api_name="revise_last")
    return RateView(project, outputs)


__all__ = ["build_rate", "show_task", "RaterTask", "KEYS_JS", "esc"]
