"""Issue 18, finding 3: sign-in is throttled per account name and per client address with growing waits, and an
unknown name costs what a known one costs (one scrypt each). The throttle's clock is a parameter, so its waits
are checked without sleeping; the app's 429 is checked over HTTP."""

from __future__ import annotations

import hashlib
import statistics
import time

import httpx
import pytest

from annotation.accounts import authenticate, create_rater, rater_by_name, set_active
from annotation.sessions import AccountState, SessionTable, SignInThrottle, ThrottlePolicy
from conftest import make_store
from db.engine import session_scope


def test_waits_grow_after_five_failures_and_are_capped():
    now = [0.0]
    t = SignInThrottle(ThrottlePolicy(free_failures=5, base_s=2.0, cap_s=60.0),
                       ThrottlePolicy(free_failures=1000), clock=lambda: now[0])
    for _ in range(4):
        t.failure("rita", "10.0.0.1")
    assert t.retry_after("rita", "10.0.0.1") == 0.0  # four failures: no wait yet
    waits = []
    for _ in range(8):
        t.failure("rita", "10.0.0.1")
        waits.append(t.retry_after("rita", "10.0.0.1"))
        now[0] += waits[-1]  # the client waits, then fails again
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert t.retry_after("rob", "10.0.0.1") == 0.0  # another name from the same address
    t.success("rita")
    assert t.retry_after("rita", "10.0.0.1") == 0.0


def test_per_address_and_forgetting():
    now = [0.0]
    t = SignInThrottle(ThrottlePolicy(free_failures=1000), ThrottlePolicy(free_failures=3, forget_s=100.0),
                       clock=lambda: now[0])
    for i in range(3):  # a spray over many names from one address
        t.failure(f"name-{i}", "10.0.0.9")
    assert t.retry_after("someone-else", "10.0.0.9") == 2.0
    assert t.retry_after("someone-else", "10.0.0.8") == 0.0
    t.success("someone-else")  # a success does not clear the address
    assert t.retry_after("someone-else", "10.0.0.9") == 2.0
    now[0] = 200.0
    assert t.retry_after("x", "10.0.0.9") == 0.0  # forgotten after a quiet while


def test_unknown_and_known_names_cost_one_scrypt_each(monkeypatch):
    engine, factory = make_store("sqlite://")
    with session_scope(factory) as s:
        create_rater(s, "rita", "rater", "rater-pw-12")
        create_rater(s, "gone", "rater", "gone-pw-123")
        set_active(s, rater_by_name(s, "gone").id, False)
        create_rater(s, "nosecret", "rater")
        authenticate(s, "warm-up", "x")  # the dummy hash is made once, at the first unknown name
    calls = []
    real = hashlib.scrypt

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    cases = {"known, wrong password": ("rita", "nope"), "known, right": ("rita", "rater-pw-12"),
             "unknown": ("nobody", "nope"), "deactivated": ("gone", "gone-pw-123"), "no secret": ("nosecret", "x")}
    times = {}
    with session_scope(factory) as s:
        for label, (name, pw) in cases.items():
            spent = []
            for _ in range(3):
                calls.clear()
                t0 = time.perf_counter()
                authenticate(s, name, pw)
                spent.append(time.perf_counter() - t0)
                assert len(calls) == 1, (label, len(calls))
            times[label] = statistics.median(spent)
    engine.dispose()
    known = times["known, wrong password"]
    for label, t in times.items():  # a loose check on top of the count: the same order of time
        assert 0.33 < t / known < 3.0, (label, times)


def test_a_session_needs_a_passed_check_and_ends_by_epoch_and_idle():
    now = [0.0]
    table = SessionTable(60.0, clock=lambda: now[0])
    table["forged"] = "rita"  # not after a password check: never valid
    assert table.get("forged") is None
    state = AccountState(1, "rita", "rater", True, 3, False)
    table.expect(state)
    table["t1"] = "rita"
    assert table.get("t1") == "rita"
    table.set_state("rita", AccountState(1, "rita", "rater", True, 4, False))  # a new password elsewhere
    assert table.get("t1") is None and "t1" not in table
    table.expect(AccountState(1, "rita", "rater", True, 4, False))
    table["t2"] = "rita"
    now[0] = 59.0
    assert table.get("t2") == "rita"  # used: the idle clock restarts
    now[0] = 118.0
    assert table.get("t2") == "rita"
    table.expect(AccountState(2, "rob", "rater", True, 0, False))
    table["t3"] = "rob"
    now[0] = 300.0
    table.expect(AccountState(2, "rob", "rater", True, 0, False))
    table["t4"] = "rob"  # a sign-in forgets the sessions nobody came back to
    assert "t2" not in table and "t3" not in table and table.get("t4") == "rob"


def test_one_read_serves_every_due_account_and_never_undoes_a_change_made_meanwhile(tmp_path):
    """The middleware reads the state of every signed-in account that is due in one query; a state read before
    this process changed the account (deactivated it, say) is not stored over the change."""
    from annotation.sessions import account_states

    _, factory = make_store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    with session_scope(factory) as s:
        for name in ("rita", "rob", "ruth"):
            create_rater(s, name, "rater", "pw-" + name)
    now = [0.0]
    table = SessionTable(60.0, state_ttl_s=1.0, clock=lambda: now[0])
    with session_scope(factory, write=False) as s:
        states = account_states(s, ["rita", "rob", "nobody"])
    assert states["nobody"] is None and states["rita"].name == "rita" and states["rob"].active
    for i, name in enumerate(("rita", "rob")):
        table.expect(states[name])
        table[f"t{i}"] = name
    now[0] = 2.0
    assert table.stale_names() == {"rita", "rob"}  # both due: one read covers them
    read_at = table.now()
    table.forget_state("rob")  # this process changed rob while the read ran
    now[0] = 2.1
    table.set_states(states, read_at)
    assert table.stale_names() == {"rob"}  # rita's state counts from the read; rob's older one was not stored
    assert table.get("t0") == "rita"
    with session_scope(factory) as s:
        set_active(s, rater_by_name(s, "rob").id, False)
    with session_scope(factory, write=False) as s:
        table.set_states(account_states(s, table.stale_names()), table.now())
    assert table.get("t1") is None  # deactivated: the session ends


def test_the_app_answers_429_while_throttled(tmp_path):
    pytest.importorskip("gradio_client")
    from auth_app import PASSWORDS, running_app

    with running_app(tmp_path) as (url, ctx, pid):
        c = httpx.Client(base_url=url, timeout=30)
        codes = [c.post("login", data={"username": "rob", "password": f"wrong-{i}"}).status_code for i in range(5)]
        assert codes == [400] * 5
        r = c.post("login", data={"username": "rob", "password": PASSWORDS["rob"]})  # even the right one waits
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.post("login", data={"username": "rita", "password": PASSWORDS["rita"]}).status_code == 200
        time.sleep(2.2)
        assert c.post("login", data={"username": "rob", "password": PASSWORDS["rob"]}).status_code == 200
