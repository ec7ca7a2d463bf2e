"""Your account: change your own password (the current one, a new one twice). An account whose password is a
one-time one (the first admin's printed password, a reset) sees only this form until it has changed it; the
server refuses every other handler meanwhile (:meth:`ui.context.AppContext.actor`). Changing a password ends the
account's other sessions; this one goes on."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from annotation.accounts import MIN_PASSWORD, change_password

from .context import AppContext, refuse
from .render import message_html


@dataclass
class AccountView:
    box: gr.Accordion
    old: gr.Textbox
    new: gr.Textbox
    repeat: gr.Textbox
    button: gr.Button
    message: gr.HTML


def build_account(ctx: AppContext) -> AccountView:  # ctx: the same signature as the other views
    with gr.Accordion("Change your password", open=False, elem_id="sr-account") as box:
        with gr.Row():
            old = gr.Textbox(label="current password", type="password", elem_id="sr-old-password")
            new = gr.Textbox(label=f"new password (at least {MIN_PASSWORD} characters)", type="password",
                             elem_id="sr-new-password")
            repeat = gr.Textbox(label="new password again", type="password", elem_id="sr-repeat-password")
        button = gr.Button("Change password", size="sm", elem_id="sr-change-password")
        message = gr.HTML()
    return AccountView(box, old, new, repeat, button, message)


def change_own_password(ctx: AppContext, old: str, new: str, repeat: str, request: gr.Request) -> str:
    """Change the signed-in account's password; keeps this session, ends the others. A message for the page."""
    actor = ctx.actor(request, allow_must_change=True)
    if str(new or "") != str(repeat or ""):
        raise refuse("The two new passwords differ.")
    with ctx.tx() as s:
        change_password(s, actor.id, str(old or ""), str(new or ""))
    state = ctx.guard.load_state(actor.name)  # the new epoch: every other session of the account fails it now
    ctx.sessions.set_state(actor.name, state)
    token = ctx.guard.token_of(request)
    if state is not None and token is not None:
        ctx.sessions.rebind(token, state)
    return message_html("Password changed. Your other sessions have ended.")
