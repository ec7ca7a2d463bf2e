"""The Analyst view: a project overview (progress, agreement, gold accuracy, raters), per image the LR image, a
vote heat-map over the bank, the ensemble with its LR-PSNR and flow check, the readings as bars with shares
(plates: per position under the ensemble), alpha and the rater table; exports as downloads (CSV, JSON, Parquet,
ensembles zip). Analysts and admins only.

An export is made for the analyst who asks, in that account's private folder under an unguessable name, and
handed out once through the app's own download route, which checks the account and its role when the link is
followed (:mod:`ui.security`, :mod:`annotation.downloads`); it is never a Gradio file output, so no other account
can fetch it from Gradio's cache."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from annotation.accounts import ANALYST_ROLES, rater_by_name
from annotation.banks import complete_bank
from annotation.ensembles import make_ensemble, voted_images
from annotation.exclusions import exclude_rater, include_rater
from annotation.exports import FORMATS, WHATS, export, export_bundle
from annotation.views import image_detail, project_images, project_overview
from sr_engine.metrics import CONSISTENT_DB

from .context import AppContext, chosen_id, refuse
from .render import bars_html, db_text, esc, fmt, heatmap_html, lr_html, message_html, progress_html
from .security import DOWNLOAD_PREFIX
from .render import flow_check_text  # "not available for this model" where the engine has no flow
from .render import positions_html  # plates: readings per position under the ensemble

RATER_COLUMNS = ["rater", "tasks", "Jaccard vs consensus", "reading agreement", "gold", "median s", "excluded"]
VOTE_COLUMNS = ["rater", "picks (bank index, best first)", "reading", "seconds", "excluded"]


@dataclass
class AnalystView:
    project: gr.Dropdown


def overview_html(o) -> str:
    b = o.banks
    rows = [
        ("model", f"{esc(o.model_name)} (x{o.scale}), N={o.settings['bank_size']}, k={o.settings['k_picks']}, "
                  f"M={o.settings['raters_per_image']}, m={o.settings['ensemble_size']}, "
                  f"{o.settings['steps']} steps, {esc(o.settings['mode'])}"),
        ("banks", f"{b.complete} of {b.images} complete ({b.pending} pending, {b.running} running, "
                  f"{b.failed} failed)"),
        ("submissions", f"{o.submissions} (regular images need {o.wanted}); {o.skipped} skipped"),
        ("agreement", f"alpha on readings {fmt(o.alpha_readings)}, mean alpha on picks {fmt(o.mean_alpha_picks)}"),
        ("gold items", str(o.gold_items)),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<h3>{esc(o.name)}</h3>" + progress_html(min(o.submissions, o.wanted), o.wanted,
                                                      f"{o.submissions} of {o.wanted} votes")
            + f"<table class='sr-overview'>{table}</table>")


def raters_frame(o) -> pd.DataFrame:
    return pd.DataFrame([[r.name, r.n_tasks, fmt(r.jaccard_vs_consensus, ".2f"), fmt(r.reading_agreement, ".2f"),
                          f"{r.gold_correct}/{r.gold_total}" if r.gold_total else "–", fmt(r.median_seconds, ".1f"),
                          "yes" if r.excluded else ""] for r in o.raters], columns=RATER_COLUMNS)


def build_analyst(ctx: AppContext) -> AnalystView:
    with gr.Row():
        project = gr.Dropdown(label="project", choices=[], interactive=True, allow_custom_value=True,
                              elem_id="sr-analyst-project")
        image = gr.Dropdown(label="image", choices=[], interactive=True, allow_custom_value=True,
                              elem_id="sr-analyst-image")
        refresh = gr.Button("Refresh", size="sm")
    overview = gr.HTML(elem_id="sr-overview")
    raters = gr.Dataframe(headers=RATER_COLUMNS, label="raters", interactive=False)
    with gr.Row():  # exclusions: aggregation, agreement and exports leave an excluded rater's votes out
        ex_name = gr.Textbox(label="rater", placeholder="account name", scale=1)
        ex_reason = gr.Textbox(label="reason (for the audit log)", placeholder="e.g. failed gold items", scale=2)
        exclude_btn = gr.Button("Exclude from this project", size="sm")
        include_btn = gr.Button("Include again", size="sm")
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            lr_view = gr.HTML()
            stats = gr.HTML(elem_id="sr-image-stats")
        with gr.Column(scale=2):
            heat = gr.HTML(elem_id="sr-heatmap")
        with gr.Column(scale=1, min_width=240):
            ens_view = gr.HTML(elem_id="sr-ensemble")
            ens_btn = gr.Button("Compute ensemble from the current votes", size="sm")
            positions = gr.HTML(elem_id="sr-positions")  # readings per position (more than one character)
    bars = gr.HTML(elem_id="sr-readings")
    votes = gr.Dataframe(headers=VOTE_COLUMNS, label="votes on this image", interactive=False)
    with gr.Row():
        what = gr.Dropdown(list(WHATS), value="votes", label="export")
        fmt_ = gr.Dropdown(list(FORMATS), value="csv", label="format")
        with gr.Column(min_width=200):
            export_btn = gr.Button("Export")
            all_ens_btn = gr.Button("Compute all ensembles", size="sm")
            export_msg = gr.HTML(elem_id="sr-export-msg")  # beside the buttons that caused it
        download = gr.HTML(elem_id="sr-download")  # private one-time links (CSV and JSON zipped with their provenance)

    def show_project(project_id, request: gr.Request):
        actor = ctx.actor(request, *ANALYST_ROLES)
        pid = chosen_id(project_id, "a project")
        with ctx.tx(write=False) as s:
            o = project_overview(s, actor.id, pid)
            imgs = project_images(s, actor.id, pid)
        choices = [(f"#{i.id} {i.source}" + (" (gold)" if i.is_gold else "") + f" – {i.n_votes} vote(s)", i.id)
                   for i in imgs]
        first = next((i.id for i in imgs if i.n_votes), imgs[0].id if imgs else None)
        return overview_html(o), raters_frame(o), gr.update(choices=choices, value=first)

    def set_exclusion(project_id, rater_name, reason, excluded: bool, request: gr.Request):
        actor = ctx.actor(request, *ANALYST_ROLES)
        pid = chosen_id(project_id, "a project")
        with ctx.tx() as s:
            rater = rater_by_name(s, str(rater_name or "").strip())
            if excluded:
                exclude_rater(s, actor.id, pid, rater.id, str(reason or ""))
            else:
                include_rater(s, actor.id, pid, rater.id)
        ctx.refit.schedule(pid, now=True)  # the resolved flags adaptive serving reads follow the exclusion at once
        return show_project(pid, request)[:2]

    def render_image(d) -> tuple:
        agg = d.aggregate
        heat_ = heatmap_html([(x.index, x.png, x.lr_psnr) for x in d.samples], agg.approval if agg else None,
                             d.ensemble.sample_indices if d.ensemble else ())
        label = f", known label {esc(d.label)}" if d.label is not None else ""
        stat = (f"<div><b>{esc(d.source)}</b>{' (gold)' if d.is_gold else ''}{label}</div>"
                f"<div>{len(d.votes)} vote(s); alpha on picks {fmt(d.alpha_picks)}; "
                f"mean pairwise Jaccard {fmt(d.jaccard_mean, '.2f')}</div>")
        if agg is not None and agg.consensus.text is not None:
            c = agg.consensus
            stat += (f"<div>consensus reading <b>{esc(c.text)}</b>: {c.count} of {c.total} "
                     f"({100 * c.share:.0f}%){' (tied)' if c.tied else ''}</div>")
        r = d.resolution
        if r is not None and r.reading is not None:
            stat += (f"<div>calibrated consensus <b>{esc(r.reading)}</b>: probability {r.probability:.3f} "
                     f"({'resolved' if r.resolved else 'not resolved'})</div>")
        stat += f"<div>the bank's evidence ({esc(d.evidence_reader or 'no reader')}): {esc(d.evidence_text)}</div>"
        if d.ensemble is not None:
            e = d.ensemble
            current = agg is not None and e.sample_indices == agg.top and e.n_submissions == len(
                [v for v in d.votes if not v.excluded])
            ens = (lr_html(e.png, f"ensemble of samples {e.sample_indices}")
                   + f"<div>LR-PSNR {db_text(e.lr_psnr)} (before re-projection {db_text(e.lr_psnr_before)})</div>"
                   + f"<div>{flow_check_text(e.flow_consistency)}</div>"
                   + f"<div>{'consistent' if e.lr_psnr >= CONSISTENT_DB else 'NOT consistent'} "
                     f"(≥ {CONSISTENT_DB:g} dB); "
                     f"{'re-projected' if e.reprojected else 'not re-projected'}; from {e.n_submissions} vote(s)"
                     f"{'' if current else ' – older than the current votes'}</div>")
        else:
            ens = message_html("No ensemble yet: compute one from the votes.")
        u = d.uncertainty
        if u is not None:  # where the bank disagrees: std, then mean -/+ 2 sigma per principal component
            ens += ("<div><b>where the bank disagrees</b></div>"
                    + lr_html(u.std_png, f"per-pixel std (max {u.std_max:.0f} of 255)")
                    + "".join(lr_html(m, f"PC{i + 1} ({100 * share:.0f}% of the variance): mean - 2 sigma")
                              + lr_html(p, f"PC{i + 1}: mean + 2 sigma")
                              for i, (m, p, share) in enumerate(zip(u.minus_png, u.plus_png, u.explained))))
        rows = pd.DataFrame([[v.rater, ", ".join(map(str, v.picks)), v.reading or "", fmt(v.seconds, ".1f"),
                              "yes" if v.excluded else ""] for v in d.votes], columns=VOTE_COLUMNS)
        bars_ = bars_html(agg.consensus.counts if agg else {}, d.label)
        return (lr_html(d.lr_png, "LR image, enlarged"), stat, heat_, ens, bars_, rows,
                positions_html(agg.positions if agg else None))

    def show_image(image_id, request: gr.Request):
        actor = ctx.actor(request, *ANALYST_ROLES)
        if image_id in (None, ""):
            return "", message_html("No images in this project yet."), "", "", "", pd.DataFrame(
                columns=VOTE_COLUMNS), ""
        with ctx.tx(write=False) as s:
            d = image_detail(s, actor.id, chosen_id(image_id, "an image"))
        return render_image(d)

    def compute_ensemble(image_id, request: gr.Request):
        actor = ctx.actor(request, *ANALYST_ROLES)
        iid = chosen_id(image_id, "an image")
        with ctx.tx() as s:
            d = image_detail(s, actor.id, iid)  # the role check, and the bank's model
        if not d.samples:
            raise refuse("This image has no complete bank yet.")
        with ctx.tx() as s:  # the bank's model name: which engine to load
            engine = ctx.engines.get(complete_bank(s, iid).model_name)
            make_ensemble(s, engine, iid, actor_id=actor.id)
        with ctx.tx() as s:
            return render_image(image_detail(s, actor.id, iid))

    def private_file(actor, filename: str, write) -> tuple:
        """A private download made by ``write(path)`` (returns what it wrote): (ticket, result)."""
        ticket = ctx.downloads.new(actor.id, actor.name, filename)
        try:
            result = write(ticket.path)
            ctx.downloads.publish(ticket)
        except BaseException:
            ctx.downloads.remove(ticket)
            raise
        return ticket, result

    def do_export(project_id, what_, format_, request: gr.Request):
        actor = ctx.actor(request, *ANALYST_ROLES)
        pid = chosen_id(project_id, "a project")
        if what_ not in WHATS or format_ not in FORMATS:
            raise refuse("Choose what to export and a format.")
        # one file: Parquet embeds its provenance; CSV and JSON travel zipped with their sidecar (export_bundle)
        ext = format_ if format_ == "parquet" and what_ != "ensembles" else "zip"
        name = f"project-{pid}-{what_}-{format_}.{ext}" if ext == "zip" and what_ != "ensembles" else \
            f"project-{pid}-{what_}.{ext}"

        def write(path):
            with ctx.tx() as s:
                return (export(s, pid, what_, format_, path) if ext == "parquet"
                        else export_bundle(s, pid, what_, format_, path))

        ticket, res = private_file(actor, name, write)
        minutes = max(1, round(ctx.downloads.ttl_s / 60))
        link = (f"<ul><li><a class='sr-download-link' href='{DOWNLOAD_PREFIX.lstrip('/')}{ticket.token}' "
                f"download='{esc(ticket.filename)}'>Download {esc(ticket.filename)} ({res.rows} row(s))</a></li></ul>"
                f"<div class='sr-msg sr-info'>The link works once, for you only, for {minutes} minute(s).</div>")
        return link, message_html(f"Exported {res.rows} row(s): {esc(ticket.filename)}")

    def compute_all_ensembles(project_id, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        """An ensemble from the current votes for every voted image, one transaction each, with progress (runs
        in Gradio's worker threads: raters keep being served)."""
        actor = ctx.actor(request, *ANALYST_ROLES)
        pid = chosen_id(project_id, "a project")
        with ctx.tx() as s:
            project_overview(s, actor.id, pid)  # the role check on this project
            image_ids = voted_images(s, pid)
        if not image_ids:
            return message_html("No votes yet: nothing to average.")
        low = 0
        for i, iid in enumerate(image_ids):
            progress((i, len(image_ids)), desc=f"ensemble of image {iid}")
            with ctx.tx() as s:
                engine = ctx.engines.get(complete_bank(s, iid).model_name)
                res = make_ensemble(s, engine, iid, actor_id=actor.id)
                low += res.lr_psnr < CONSISTENT_DB
        return message_html(f"{len(image_ids)} ensemble(s) computed from the current votes"
                            + (f"; {low} below {CONSISTENT_DB:g} dB" if low else "; all consistent")
                            + ". The ensembles zip now holds every voted image.")

    image_outputs = [lr_view, stats, heat, ens_view, bars, votes, positions]
    project.change(show_project, [project], [overview, raters, image], api_name="analyst_overview")
    refresh.click(show_project, [project], [overview, raters, image], api_name=False)
    image.change(show_image, [image], image_outputs, api_name="analyst_image")
    ens_btn.click(compute_ensemble, [image], image_outputs, api_name="make_ensemble")
    def exclude(project_id, rater_name, reason, request: gr.Request):  # Gradio injects the request by annotation
        return set_exclusion(project_id, rater_name, reason, True, request)

    def include(project_id, rater_name, reason, request: gr.Request):
        return set_exclusion(project_id, rater_name, reason, False, request)

    exclude_btn.click(exclude, [project, ex_name, ex_reason], [overview, raters], api_name="exclude_rater")
    include_btn.click(include, [project, ex_name, ex_reason], [overview, raters], api_name="include_rater")
    export_btn.click(do_export, [project, what, fmt_], [download, export_msg], api_name="export")
    all_ens_btn.click(compute_all_ensembles, [project], [export_msg], api_name="make_all_ensembles",
                      concurrency_limit=1)
    return AnalystView(project)
