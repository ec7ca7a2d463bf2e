"""Helpers of the issue 18 account and session tests: the app started in-process (as tests/test_app_api.py does)
on a free port with a tiny engine, and plain HTTP sign-ins (httpx), so that a test holds a real cookie."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import httpx

from conftest import serve_app

PASSWORDS = {"admin": "admin-pw-12", "rita": "rater-pw-12", "rob": "rater-pw-34", "ana": "analyst-pw-1"}


@contextmanager
def running_app(data: Path, **create_kwargs):
    """(base url, context, project id) of an app with accounts admin, rita, rob (raters) and ana (analyst)."""
    accounts = {"rita": ("rater", PASSWORDS["rita"]), "rob": ("rater", PASSWORDS["rob"]),
                "ana": ("analyst", PASSWORDS["ana"])}
    with serve_app(data, PASSWORDS["admin"], accounts, project="sec", **create_kwargs) as served:
        yield served


def sign_in(url: str, name: str, password: str | None = None) -> httpx.Client:
    """An HTTP client holding ``name``'s sign-in cookie (raises unless the sign-in succeeds)."""
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("login", data={"username": name, "password": password or PASSWORDS[name]})
    assert r.status_code == 200, (r.status_code, r.text)
    return c


def predict(url: str, http: httpx.Client, api_name: str, *args):
    """Call an event through gradio_client with ``http``'s cookie (the client's own sign-in is skipped)."""
    from gradio_client import Client

    client = Client(url, verbose=False, httpx_kwargs={"cookies": dict(http.cookies)})
    return client.predict(*args, api_name=api_name)


def download_tokens(html: str) -> list[str]:
    return re.findall(r"href='private-download/([A-Za-z0-9_-]+)'", html)
