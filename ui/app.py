"""The whole page: a header with the signed-in account, and the Rate, Analyst and Admin tabs, shown by role.

    demo = build_app(ctx)
    demo.launch(auth=ctx.authenticate, css=CSS, js=KEYS_JS, ...)   # see app.py

Which tabs a browser shows is a convenience; what an account may do is decided on the server, in every handler.
An account with a one-time password sees only the password form until it has changed it.
"""

from __future__ import annotations

import gradio as gr

from annotation.accounts import ANALYST_ROLES
from annotation.projects import list_projects

from .account import build_account, change_own_password
from .admin import build_admin
from .analyst import build_analyst
from .context import AppContext, beside
from .rate import build_rate, rater_menu
from .render import esc


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Trustworthy super-resolution", analytics_enabled=False) as demo:
        with gr.Row():
            header = gr.Markdown("## Trustworthy super-resolution")
            gr.Button("Sign out", link="/logout", size="sm", scale=0, elem_id="sr-logout")
        account = build_account(ctx)
        with gr.Tabs() as tabs:
            with gr.Tab("Rate", id="rate", visible=False) as rate_tab:
                rate = build_rate(ctx)
            with gr.Tab("Analyst", id="analyst", visible=False) as analyst_tab:
                analyst = build_analyst(ctx)
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin = build_admin(ctx)

        def projects_for(project_id=None):
            with ctx.tx(write=False) as s:
                choices = [(p.name, p.id) for p in list_projects(s)]
            value = project_id if project_id is not None else (choices[0][1] if choices else None)
            return gr.update(choices=choices, value=value)

        def on_load(request: gr.Request):
            actor = ctx.actor(request, allow_must_change=True)
            role = actor.role
            head = f"## Trustworthy super-resolution\nSigned in as **{esc(actor.name)}** ({role})."
            skip = gr.update()
            if actor.must_change_password:  # nothing else until the one-time password is changed
                head += " **Choose your own password to go on:** your password was a one-time one."
                return (head, gr.Tabs(), gr.Tab(visible=False), gr.Tab(visible=False), gr.Tab(visible=False),
                        skip, skip, skip, gr.Timer(active=False), gr.Accordion(open=True), skip)
            start = {"rater": "rate", "analyst": "analyst", "admin": "analyst"}[role]
            return (head, gr.Tabs(selected=start), gr.Tab(visible=role == "rater"),
                    gr.Tab(visible=role in ANALYST_ROLES), gr.Tab(visible=role == "admin"),
                    rater_menu(ctx, actor.id) if role == "rater" else skip,
                    projects_for() if role in ANALYST_ROLES else skip,
                    projects_for() if role == "admin" else skip,
                    gr.Timer(active=role == "admin"), gr.Accordion(open=False),
                    admin.show_accounts(request) if role == "admin" else skip)

        page = [header, tabs, rate_tab, analyst_tab, admin_tab, rate.project, analyst.project, admin.project,
                admin.timer, account.box, admin.accounts]
        demo.load(on_load, None, page, api_name=False)

        def change_password(old, new, repeat, request: gr.Request):
            msg = change_own_password(ctx, old, new, repeat, request)
            shown = list(on_load(request))  # the whole page for the account, now that it may use it
            shown[page.index(account.box)] = gr.Accordion(open=True)  # the form stays open to show the message
            return (msg, "", "", "", *shown)

        account.button.click(change_password, [account.old, account.new, account.repeat],
                             [account.message, account.old, account.new, account.repeat, *page],
                             api_name="change_password")

        do_create, create_inputs, admin_msg = admin.create_outputs

        @beside(3)
        def create_and_refresh(name, model, mode, scheduler, n, k, raters, ens, steps, seed, gold, prompt,
                               max_lr_side, min_raters=None, threshold=0.95, pool=1, request: gr.Request = None):
            msg, pid = do_create(name, model, mode, scheduler, n, k, raters, ens, steps, seed, gold, prompt,
                                 max_lr_side, min_raters, threshold, pool, request)
            return msg, projects_for(pid), projects_for(pid)

        admin.on_action(admin.new_project, create_and_refresh, create_inputs,
                        [admin_msg, admin.project, analyst.project], "create_project")
    return demo
