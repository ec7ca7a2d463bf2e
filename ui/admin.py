"""The Admin view: create a project (a shipped model or a local ``diffusers:/dir`` pipeline, N, k, M, m, steps,
mode, scheduler, prompt, LR size limit, ...), upload LR images (PNG, JPEG, zip), generate banks in the background
worker with a progress bar, remove an image or only its bank; accounts: list them (role, active, last sign-in), add
one, deactivate or activate one, reset a password (the new one-time password is shown once). Admins only: every
handler checks the role (a Gradio event is callable over HTTP).

Every action's message, success or refusal, appears in the status element below or beside its button (in the same
``sr-action`` container; :func:`ui.context.beside`), escaped, and every status is emptied when the next action
starts. Over the API a refusal of the input is the returned message (class ``sr-error``); a caller without the admin
role gets an error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from annotation.accounts import ROLES as ACCOUNT_ROLES
from annotation.accounts import add_account, list_accounts, rater_by_name, reset_password, set_active
from annotation.banks import progress, remove_bank
from annotation.errors import AnnotationError
from annotation.images import prepare_import, remove_image, store_import
from annotation.projects import (SCHEDULERS, create_project, get_project, model_modes, model_spec, set_guidelines,
                                 settings_for_engine)
from annotation.uploads import read_upload
from sr_engine import MODES as SR_MODES

from .context import AppContext, beside, chosen_id, refuse, whole_number
from .render import message_html, progress_html

MODES = list(SR_MODES)
ACCOUNT_COLUMNS = ["name", "role", "active", "must change password", "last sign-in (UTC)", "created (UTC)"]


def accounts_frame(rows) -> pd.DataFrame:
    def when(t) -> str:
        return t.strftime("%Y-%m-%d %H:%M") if t is not None else "never"

    return pd.DataFrame([[r.name, r.role, "yes" if r.active else "no", "yes" if r.must_change_password else "",
                          when(r.last_sign_in_at), when(r.created_at)] for r in rows], columns=ACCOUNT_COLUMNS)


@dataclass
class AdminView:
    project: gr.Dropdown  # the project that uploads and generation act on
    timer: gr.Timer
    new_project: gr.Button
    create_outputs: list
    accounts: gr.Dataframe
    show_accounts: object  # (request) -> the accounts table
    on_action: object  # (button, handler, inputs, outputs, api_name) -> the event: statuses cleared, then handler


def action_status(elem_id: str) -> gr.HTML:
    """The status element of an admin action: directly below (or beside) its button, in the same ``sr-action``
    container; the handler (:func:`ui.context.beside`) writes its success or refusal there."""
    return gr.HTML(elem_id=elem_id, elem_classes=["sr-status"])


def build_admin(ctx: AppContext) -> AdminView:
    gr.Markdown("### Project, images, banks")
    with gr.Row():
        project = gr.Dropdown(label="project", choices=[], interactive=True, allow_custom_value=True,
                              elem_id="sr-admin-project")
    bank_progress = gr.HTML(elem_id="sr-bank-progress")
    with gr.Row():
        guide = gr.Textbox(label="guidelines for raters (shown above their grid; plain text)", lines=3, scale=4,
                           elem_id="sr-admin-guidelines")
        with gr.Column(scale=1, min_width=180, elem_classes=["sr-action"]):
            guide_btn = gr.Button("Save guidelines", size="sm", elem_id="sr-guidelines-btn")
            guide_msg = action_status("sr-guidelines-msg")
    with gr.Row():
        files = gr.File(label="LR images (PNG, JPEG or a zip of them)", file_count="multiple",
                        file_types=[".png", ".jpg", ".jpeg", ".zip"], type="filepath", scale=2,
                        elem_id="sr-admin-files")
        with gr.Column(elem_classes=["sr-action"]):
            upload_btn = gr.Button("Import images", elem_id="sr-upload-btn")
            upload_msg = action_status("sr-upload-msg")
        with gr.Column(elem_classes=["sr-action"]):
            generate_btn = gr.Button("Generate missing banks", variant="primary", elem_id="sr-generate-btn")
            generate_msg = action_status("sr-generate-msg")
    with gr.Row():
        remove_id = gr.Number(None, precision=0, label="image id", scale=1, elem_id="sr-remove-id")
        with gr.Column(scale=3, elem_classes=["sr-action"]):
            with gr.Row():
                remove_btn = gr.Button("Remove image (with its bank and votes)", size="sm", elem_id="sr-remove-btn")
                remove_bank_btn = gr.Button("Remove bank only (no votes on it; generated again)", size="sm",
                                            elem_id="sr-remove-bank-btn")
            remove_msg = action_status("sr-remove-msg")
    gr.Markdown("### New project")
    with gr.Row():
        name = gr.Textbox(label="name", elem_id="sr-new-name")
        model = gr.Dropdown(ctx.engines.names(), label="model (its scale comes with it)",
                            value=(ctx.engines.names() or [None])[0], allow_custom_value=True,
                            info="a shipped model, or type diffusers:/path/to/pipeline (a local folder)")
        mode = gr.Dropdown(MODES, value="strict", label="mode",
                           info="flow models: strict, flow, prior; diffusers pipelines: strict, guided, free")
        scheduler = gr.Dropdown(list(SCHEDULERS), value="ddim", label="scheduler")
    with gr.Row():
        n = gr.Number(64, precision=0, label="N samples per bank")
        k = gr.Number(3, precision=0, label="k picks")
        m_raters = gr.Number(5, precision=0, label="M raters per image (at most)")
        min_raters_ = gr.Number(None, precision=0, label="min raters (adaptive; empty or 0: M)")
        threshold_ = gr.Number(0.95, label="resolve threshold (0..1]")
        m_ens = gr.Number(3, precision=0, label="m samples in the ensemble")
        steps = gr.Number(8, precision=0, label="steps")
        seed = gr.Number(0, precision=0, label="seed")
        gold_rate = gr.Number(0.0, label="gold rate (0..1)")
    with gr.Row():
        prompt = gr.Textbox(label="prompt (only for pipelines that take one, e.g. the SD x4 upscaler)", scale=3)
        max_side = gr.Number(128, precision=0, label="LR size limit (pixels a side)")
        pool = gr.Number(1, precision=0, label="pool factor (draw N x this, show the N that span it; 1: no pool)")
    with gr.Row(elem_classes=["sr-action"]):
        new_project = gr.Button("Create project", scale=1, elem_id="sr-create-btn")
        create_msg = gr.HTML(elem_id="sr-create-msg", elem_classes=["sr-status"])  # beside its button
    gr.Markdown("### Accounts")
    accounts = gr.Dataframe(headers=ACCOUNT_COLUMNS, label="accounts", interactive=False, elem_id="sr-accounts")
    with gr.Row():
        acct_name = gr.Textbox(label="name")
        acct_role = gr.Dropdown(list(ACCOUNT_ROLES), value="rater", label="role")
        acct_pw = gr.Textbox(label="password (empty: a one-time password is made)", type="password")
        with gr.Column(elem_classes=["sr-action"]):
            add_btn = gr.Button("Add account", elem_id="sr-add-account-btn")
            add_msg = action_status("sr-add-account-msg")
    with gr.Row():
        acct_target = gr.Textbox(label="account", placeholder="account name", elem_id="sr-account-target")
        with gr.Column(scale=3, elem_classes=["sr-action"]):
            with gr.Row():
                deactivate_btn = gr.Button("Deactivate", size="sm")
                activate_btn = gr.Button("Activate", size="sm")
                reset_btn = gr.Button("Reset password", size="sm")
                list_btn = gr.Button("Refresh list", size="sm")
            acct_msg = action_status("sr-account-message")
    timer = gr.Timer(2.0, active=False)
    statuses = [guide_msg, upload_msg, generate_msg, remove_msg, create_msg, add_msg, acct_msg]

    def on_action(button: gr.Button, handler, inputs, outputs, api_name: str):
        """Wire an action's button: the page first empties every action's status (in the browser: a message
        belongs to the last action only), then the handler runs; ``api_name`` is its endpoint."""
        return button.click(None, None, statuses, js=f"() => {[''] * len(statuses)!r}".replace("'", '"'),
                            api_name=False, show_progress="hidden").then(handler, inputs, outputs, api_name=api_name)

    def do_create(name_, model_, mode_, scheduler_, n_, k_, mr_, me_, steps_, seed_, gold_, prompt_, max_side_,
                  min_r_, threshold, pool_, request: gr.Request):
        actor = ctx.actor(request, "admin")
        if not str(model_ or "").strip():
            raise refuse("Choose a model.")
        try:
            engine = ctx.engines.get(model_spec(str(model_)))
        except ValueError as err:  # a missing folder, not an SR pipeline, pickled weights: said plainly
            raise refuse(str(err)) from None
        prompt_ = str(prompt_ or "")
        min_r_ = 0 if min_r_ in (None, "") else min_r_  # empty or 0 (what the page sends for empty): M
        settings = settings_for_engine(engine, str(name_ or "").strip(), bank_size=whole_number(n_, "N"),
                                       k_picks=whole_number(k_, "k"), raters_per_image=whole_number(mr_, "M"),
                                       ensemble_size=whole_number(me_, "m"), steps=whole_number(steps_, "steps"),
                                       mode=str(mode_), scheduler=str(scheduler_), seed=whole_number(seed_, "seed"),
                                       gold_rate=float(gold_ or 0.0),
                                       max_lr_side=whole_number(max_side_, "the size limit"),
                                       min_raters=whole_number(min_r_, "min raters") or None,
                                       resolve_threshold=float(0.95 if threshold in (None, "") else threshold),
                                       pool_factor=whole_number(1 if pool_ in (None, "", 0) else pool_, "pool factor"),
                                       engine_options={"prompt": prompt_} if prompt_.strip() else {})
        with ctx.tx() as s:  # the engine's modes, schedulers, options and size limit are checked here
            p = create_project(s, settings, actor_id=actor.id, engine=engine)
            pid, pname, scale = p.id, p.name, p.scale
        return message_html(f"Created project {pname!r} (id {pid}, x{scale}). Import images next."), pid

    def model_changed(model_, mode_, scheduler_, request: gr.Request):
        ctx.actor(request, "admin")
        modes, schedulers = model_modes(str(model_ or ""))
        return (gr.update(choices=list(modes), value=mode_ if mode_ in modes else modes[0]),
                gr.update(choices=list(schedulers), value=scheduler_ if scheduler_ in schedulers else schedulers[0]))

    @beside(2)
    def do_upload(project_id, paths, request: gr.Request):
        actor = ctx.actor(request, "admin")
        pid = chosen_id(project_id, "the project")
        if not paths:
            raise refuse("Choose one or more files.")
        with ctx.tx(write=False) as s:
            project = get_project(s, pid)
        try:
            engine = ctx.engines.get(project.model_name)  # its LR shape is checked at import
        except ValueError as err:
            raise refuse(str(err)) from None
        # every file is read, decoded and checked before the one short write transaction: a slow or hostile
        # upload never holds the store's write lock (and a FIFO or device is refused without being opened)
        prepared = []
        for p in paths:
            path = Path(p)
            try:
                data = read_upload(path, max_bytes=ctx.max_upload_bytes)
                prepared.append(prepare_import(project, data, name=path.name, engine=engine,
                                               max_bytes=ctx.max_upload_bytes))
            except AnnotationError as err:
                raise refuse(str(err)) from None
        added = dup = skipped = 0
        with ctx.tx() as s:  # all files in one transaction: one bad file imports nothing
            for prep in prepared:
                res = store_import(s, prep, actor_id=actor.id)
                added, dup, skipped = added + len(res.added), dup + len(res.duplicates), skipped + len(res.skipped)
        return message_html(f"Imported {added} image(s); {dup} duplicate(s), {skipped} non-image file(s) skipped. "
                            "Generate their banks next."), None

    @beside(2)
    def do_remove(project_id, image_id, request: gr.Request):
        actor = ctx.actor(request, "admin")
        pid = chosen_id(project_id, "the project")
        iid = whole_number(image_id, "the image id")
        with ctx.tx() as s:
            r = remove_image(s, pid, iid, actor_id=actor.id)
        return message_html(f"Removed image {r.image_id} ({r.source}) with {r.banks} bank(s) and "
                            f"{r.assignments} assignment(s), {r.submissions} of them submitted; the audit log "
                            "keeps the record."), None

    @beside(2)
    def do_remove_bank(project_id, image_id, request: gr.Request):
        actor = ctx.actor(request, "admin")
        pid = chosen_id(project_id, "the project")
        iid = whole_number(image_id, "the image id")
        with ctx.tx() as s:
            r = remove_bank(s, pid, iid, actor_id=actor.id)
        return message_html(f"Removed bank {r.bank_id} ({r.status}) of image {r.image_id} ({r.source}) with "
                            f"{r.samples} sample(s) and {r.open_assignments} open task(s); the image stays, and "
                            "Generate missing banks makes a new bank. The audit log keeps the record."), None

    @beside(2)
    def do_generate(project_id, request: gr.Request):
        ctx.actor(request, "admin")
        pid = chosen_id(project_id, "the project")
        with ctx.tx() as s:
            get_project(s, pid)
        ctx.worker.enqueue(pid)
        return message_html("Queued: the background worker generates the banks; raters are served as each bank "
                            "completes."), gr.Timer(active=True)

    def show_progress(project_id, request: gr.Request):
        ctx.actor(request, "admin")
        try:
            pid = int(project_id)
        except (TypeError, ValueError):
            return ""
        with ctx.tx(write=False) as s:
            b = progress(s, pid)
        w = ctx.worker.status()
        state = ("generating" if w.running_project == pid else "queued" if pid in w.queued else "idle")
        caption = (f"{b.complete} of {b.images} banks complete ({b.pending} pending, {b.running} running, "
                   f"{b.failed} failed) – worker: {state}; {w.last_message}")
        html = progress_html(b.complete, b.images, caption)
        if w.last_error:
            html += message_html(f"last error: {w.last_error}", "error")
        return html

    def show_guidelines(project_id, request: gr.Request):
        ctx.actor(request, "admin")
        try:
            pid = int(project_id)
        except (TypeError, ValueError):
            return ""
        with ctx.tx() as s:
            return get_project(s, pid).guidelines

    @beside()
    def save_guidelines(project_id, text, request: gr.Request):
        actor = ctx.actor(request, "admin")
        pid = chosen_id(project_id, "the project")
        with ctx.tx() as s:
            p = set_guidelines(s, actor.id, pid, str(text or ""))
            name_ = p.name
        return message_html(f"Saved the guidelines of {name_}; raters see them with their next task.")

    @beside(2)
    def do_add(name_, role_, pw_, request: gr.Request):
        actor = ctx.actor(request, "admin")
        with ctx.tx() as s:
            made = add_account(s, str(name_ or "").strip(), str(role_), pw_ or None, actor_id=actor.id)
        if made.generated:
            return message_html(f"Added {made.role} {made.name}. One-time password (shown only now; it must be "
                                f"changed at the first sign-in): {made.password}"), ""
        return message_html(f"Added {made.role} {made.name}."), ""

    def show_accounts(request: gr.Request):
        ctx.actor(request, "admin")
        with ctx.tx() as s:
            return accounts_frame(list_accounts(s))

    def account_action(target, action: str, request: gr.Request) -> str:
        actor = ctx.actor(request, "admin")
        with ctx.tx() as s:
            rater = rater_by_name(s, str(target or "").strip())
            if action == "reset":
                made = reset_password(s, rater.id, actor_id=actor.id)
            else:
                set_active(s, rater.id, action == "activate", actor_id=actor.id)
            name = rater.name
        ctx.sessions.forget_state(name)  # the next request of any of its sessions reads the account again
        if action == "reset":
            ctx.sessions.end_sessions(name)
            return message_html(f"New one-time password for {name} (shown only now; it must be changed at the next "
                                f"sign-in): {made.password}")
        if action == "deactivate":
            ctx.sessions.end_sessions(name)
            return message_html(f"Deactivated {name}: its sessions have ended; its votes stay.")
        return message_html(f"Activated {name}.")

    @beside()
    def deactivate(target, request: gr.Request):  # Gradio injects the request by annotation
        return account_action(target, "deactivate", request)

    @beside()
    def activate(target, request: gr.Request):
        return account_action(target, "activate", request)

    @beside()
    def reset(target, request: gr.Request):
        return account_action(target, "reset", request)

    create_inputs = [name, model, mode, scheduler, n, k, m_raters, m_ens, steps, seed, gold_rate, prompt, max_side,
                     min_raters_, threshold_, pool]
    model.change(model_changed, [model, mode, scheduler], [mode, scheduler], api_name=False)
    on_action(upload_btn, do_upload, [project, files], [upload_msg, files], "upload_images")
    on_action(remove_btn, do_remove, [project, remove_id], [remove_msg, remove_id], "remove_image")
    on_action(remove_bank_btn, do_remove_bank, [project, remove_id], [remove_msg, remove_id], "remove_bank")
    on_action(generate_btn, do_generate, [project], [generate_msg, timer], "generate_banks")
    timer.tick(show_progress, [project], [bank_progress], api_name="bank_progress", show_progress="hidden")
    project.change(show_progress, [project], [bank_progress], api_name=False)
    project.change(show_guidelines, [project], [guide], api_name=False)
    on_action(guide_btn, save_guidelines, [project, guide], [guide_msg], "set_guidelines")
    on_action(add_btn, do_add, [acct_name, acct_role, acct_pw], [add_msg, acct_pw], "add_rater").then(
        show_accounts, None, [accounts], api_name=False)
    list_btn.click(show_accounts, None, [accounts], api_name="list_accounts")
    for button, handler, api_name in ((deactivate_btn, deactivate, "deactivate_account"),
                                      (activate_btn, activate, "activate_account"),
                                      (reset_btn, reset, "reset_password")):
        on_action(button, handler, [acct_target], [acct_msg], api_name).then(show_accounts, None, [accounts],
                                                                            api_name=False)
    return AdminView(project, timer, new_project, [do_create, create_inputs, create_msg], accounts, show_accounts,
                     on_action)
