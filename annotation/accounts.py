"""Accounts: raters, analysts and admins with hashed secrets (analysts' exclusions of raters:
:mod:`annotation.exclusions`).

Secrets are stored as ``scrypt$n$r$p$salt$hash`` (hashlib.scrypt, 16-byte random salt), compared in constant
time; the secret itself is never stored. A rater without a secret exists for the record but cannot log in.

Managing accounts (the admin view and ``python -m annotation accounts``): list, add, deactivate, activate, reset a
password (a generated one-time password), and a user's own password change (old and new, at least
:data:`MIN_PASSWORD` characters). A generated password sets ``must_change_password``: until it is changed the app
lets the account do nothing else. A deactivation and any new password bump ``session_epoch``, which ends every
sign-in session begun before (see :mod:`annotation.sessions`). Every change is in the audit log.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets as _secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Rater, Role, utcnow

from .audit import record
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .text import normalize_text

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB, ~50 ms a check: slow for guessing, fine for logging in
MAX_NAME = 100
MAX_SECRET = 1024
MIN_PASSWORD = 8  # a password a person chooses (a change, a new account); generated ones are 16 characters
ROLES = tuple(r.value for r in Role)
ANALYST_ROLES = ("analyst", "admin")  # who may read votes and agreement, exclude raters and export


@dataclass(frozen=True)
class RaterInfo:
    id: int
    name: str
    role: str
    active: bool
    session_epoch: int = 0
    must_change_password: bool = False


@dataclass(frozen=True)
class AccountRow:
    """One line of the account list (admin view, ``accounts list``)."""

    id: int
    name: str
    role: str
    active: bool
    must_change_password: bool
    last_sign_in_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class NewPassword:
    """An account and the password it was given; ``generated`` ones are one-time (shown once, changed at the
    first sign-in)."""

    id: int
    name: str
    role: str
    password: str
    generated: bool


@dataclass(frozen=True)
class NewAdmin:
    """The admin made on first start; ``password`` is shown once (generated unless one was given)."""

    id: int
    name: str
    password: str
    generated: bool

    def announcement(self) -> str:
        """The line the terminal shows once (``python app.py``, ``python -m annotation init``)."""
        shown = self.password if self.generated else "(the password you gave)"
        return f"created admin {self.name!r}; one-time password: {shown}" + (
            " (it must be changed at the first sign-in)" if self.generated else "")


def _info(r: Rater) -> RaterInfo:
    return RaterInfo(r.id, r.name, Role(r.role).value, bool(r.active), int(r.session_epoch or 0),
                     bool(r.must_change_password))


def check_text(value: object, what: str, max_len: int, *, allow_newlines: bool = False) -> str:
    """Accept a non-blank string of at most ``max_len`` characters without control characters. The text is
    returned unchanged: quotes, HTML and SQL are plain characters here and are stored verbatim."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is {len(value)} characters long; the limit is {max_len}")
    allowed = "\n\t" if allow_newlines else ""
    bad = [c for c in value if (ord(c) < 32 and c not in allowed) or ord(c) == 127]
    if bad:
        raise InvalidInput(f"{what} contains control characters ({', '.join(repr(c) for c in bad[:3])})")
    return value


def hash_secret(secret: str, *, n: int = SCRYPT_N) -> str:
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET:
        raise InvalidInput(f"a secret must be a non-empty string of at most {MAX_SECRET} characters")
    salt = _secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


@functools.cache
def dummy_hash() -> str:
    """A hash of a random secret, made once: unknown names, deactivated accounts and accounts without a secret are
    checked against it, so every sign-in costs exactly one scrypt whatever the name (the app makes it at start)."""
    return hash_secret(_secrets.token_urlsafe(16))


def generate_password() -> str:
    """A one-time password: 16 URL-safe characters (96 random bits)."""
    return _secrets.token_urlsafe(12)


def check_new_password(password: object) -> str:
    """A password a person chose: a string of :data:`MIN_PASSWORD` to :data:`MAX_SECRET` characters, not blank."""
    if not isinstance(password, str) or not password.strip():
        raise InvalidInput("a password must not be empty")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_SECRET:
        raise InvalidInput(f"a password has at most {MAX_SECRET} characters")
    return password


def verify_secret(secret: str, stored: str | None) -> bool:
    if not stored or not isinstance(secret, str) or len(secret) > MAX_SECRET:
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=64 << 20, dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def get_rater(session: Session, rater_id: int) -> Rater:
    rater = session.get(Rater, rater_id) if isinstance(rater_id, int) and not isinstance(rater_id, bool) else None
    if rater is None:
        raise NotFound(f"unknown rater id {rater_id!r}")
    return rater


def normalize_name(name: object) -> str:
    """An account name in its one canonical form (NFKC, stripped, no invisible or direction-changing
    characters): "ａｄｍｉｎ" and "admin" are one name."""
    return normalize_text(name, what="rater name", max_len=MAX_NAME)


def rater_by_name(session: Session, name: str) -> Rater:
    try:
        name = normalize_name(name)
    except InvalidInput:
        raise NotFound(f"unknown rater {name!r}") from None
    rater = session.scalar(select(Rater).where(Rater.name == name))
    if rater is None:
        raise NotFound(f"unknown rater {name!r}")
    return rater


def require_role(session: Session, actor_id: int, *roles: str) -> Rater:
    actor = get_rater(session, actor_id)
    if Role(actor.role).value not in roles or not actor.active:
        raise PermissionDenied(f"{actor.name!r} ({Role(actor.role).value}) may not do this; needs {' or '.join(roles)}")
    return actor


def create_rater(session: Session, name: str, role: str = "rater", secret: str | None = None, *,
                 actor_id: int | None = None) -> RaterInfo:
    """A new account. ``actor_id``, when given, must be an admin's (the UI path); scripts and tests pass None."""
    name = normalize_name(name)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {ROLES}, got {role!r}")
    if actor_id is not None:
        require_role(session, actor_id, "admin")
    if session.scalar(select(Rater.id).where(Rater.name == name)) is not None:
        raise Conflict(f"a rater named {name!r} already exists")
    rater = Rater(name=name, role=Role(role), secret_hash=hash_secret(secret) if secret is not None else None)
    session.add(rater)
    session.flush()
    record(session, "rater.created", "rater", rater.id, actor_id=actor_id, name=name, role=role)
    return _info(rater)


def set_secret(session: Session, rater_id: int, secret: str, *, actor_id: int | None = None) -> None:
    """A new secret (scripts, tests); like every new password it ends the account's sign-in sessions."""
    rater = get_rater(session, rater_id)
    if actor_id is not None and actor_id != rater_id:
        require_role(session, actor_id, "admin")
    rater.secret_hash = hash_secret(secret)
    rater.session_epoch = int(rater.session_epoch or 0) + 1
    record(session, "rater.secret_changed", "rater", rater.id, actor_id=actor_id)


def authenticate(session: Session, name: str, secret: str) -> RaterInfo | None:
    """The account for ``name`` if ``secret`` matches and it is active, else None. Every call runs scrypt once,
    against the account's hash or a dummy one, so an unknown name, a deactivated account and a wrong password
    cost the same and give the same answer."""
    try:
        name = normalize_name(name)
    except InvalidInput:
        name = None
    rater = session.scalar(select(Rater).where(Rater.name == name)) if name is not None else None
    usable = rater is not None and rater.active and rater.secret_hash is not None
    ok = verify_secret(secret, rater.secret_hash if usable else dummy_hash())
    return _info(rater) if usable and ok else None


def record_sign_in(session: Session, rater_id: int) -> None:
    """Remember when the account last signed in (shown in the account list; not audited: too frequent)."""
    get_rater(session, rater_id).last_sign_in_at = utcnow()


def list_accounts(session: Session) -> list[AccountRow]:
    return [AccountRow(r.id, r.name, Role(r.role).value, bool(r.active), bool(r.must_change_password),
                       r.last_sign_in_at, r.created_at)
            for r in session.scalars(select(Rater).order_by(Rater.name))]


def add_account(session: Session, name: str, role: str = "rater", password: str | None = None, *,
                actor_id: int | None = None) -> NewPassword:
    """A new account that can sign in: with ``password`` (at least :data:`MIN_PASSWORD` characters) or a
    generated one-time password that must be changed at the first sign-in. ``actor_id``: an admin (the app);
    None for the command line."""
    generated = password is None
    password = generate_password() if generated else check_new_password(password)
    info = create_rater(session, name, role, password, actor_id=actor_id)
    get_rater(session, info.id).must_change_password = generated
    return NewPassword(info.id, info.name, info.role, password, generated)


def _active_admins(session: Session) -> int:
    return len(session.scalars(select(Rater.id).where(Rater.role == Role.admin, Rater.active.is_(True))).all())


def set_active(session: Session, rater_id: int, active: bool, *, actor_id: int | None = None) -> RaterInfo:
    """Deactivate (its sessions end at once; its votes stay) or activate an account. The last active admin
    cannot be deactivated, nor can an admin deactivate themselves."""
    rater = get_rater(session, rater_id)
    if actor_id is not None:
        require_role(session, actor_id, "admin")
        if actor_id == rater_id and not active:
            raise PermissionDenied("you cannot deactivate your own account")
    if bool(rater.active) == bool(active):
        return _info(rater)
    if not active and Role(rater.role) == Role.admin and _active_admins(session) <= 1:
        raise PermissionDenied(f"{rater.name!r} is the last active admin")
    rater.active = bool(active)
    if not active:
        rater.session_epoch = int(rater.session_epoch or 0) + 1
    record(session, "rater.activated" if active else "rater.deactivated", "rater", rater.id, actor_id=actor_id)
    session.flush()
    return _info(rater)


def reset_password(session: Session, rater_id: int, *, actor_id: int | None = None) -> NewPassword:
    """A generated one-time password for the account (shown once to whoever reset it); the account must change
    it at its next sign-in, and its sessions end at once."""
    rater = get_rater(session, rater_id)
    if actor_id is not None:
        require_role(session, actor_id, "admin")
    password = generate_password()
    rater.secret_hash = hash_secret(password)
    rater.must_change_password = True
    rater.session_epoch = int(rater.session_epoch or 0) + 1
    record(session, "rater.password_reset", "rater", rater.id, actor_id=actor_id)
    return NewPassword(rater.id, rater.name, Role(rater.role).value, password, True)


def change_password(session: Session, rater_id: int, old: str, new: str) -> RaterInfo:
    """The account's own change: ``old`` must match, ``new`` must be a valid password that differs from it.
    Clears ``must_change_password`` and ends the account's other sessions (the caller keeps its own: it
    re-binds it to the returned ``session_epoch``)."""
    rater = get_rater(session, rater_id)
    if not rater.active:
        raise PermissionDenied("this account is deactivated")
    if not verify_secret(old, rater.secret_hash):
        raise PermissionDenied("the current password is wrong")
    check_new_password(new)
    if new == old:
        raise InvalidInput("the new password must differ from the current one")
    rater.secret_hash = hash_secret(new)
    rater.must_change_password = False
    rater.session_epoch = int(rater.session_epoch or 0) + 1
    record(session, "rater.password_changed", "rater", rater.id, actor_id=rater.id)
    session.flush()
    return _info(rater)


def ensure_admin(session: Session, password: str | None = None, name: str = "admin") -> NewAdmin | None:
    """On first start: create an admin (with ``password`` or a generated one-time password) if none exists."""
    if session.scalar(select(Rater.id).where(Rater.role == Role.admin).limit(1)) is not None:
        return None
    generated = password is None
    password = password or generate_password()
    info = create_rater(session, name, "admin", password)
    get_rater(session, info.id).must_change_password = generated  # a printed password is changed at first use
    return NewAdmin(info.id, info.name, password, generated)
