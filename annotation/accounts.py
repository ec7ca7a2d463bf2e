"""Accounts: raters, analysts and admins with hashed secrets (analysts' exclusions of raters:
:mod:`annotation.exclusions`).

Secrets are stored as ``scrypt$n$r$p$salt$hash`` (hashlib.scrypt, 16-byte random salt), compared in constant
time; the secret itself is never stored. A rater without a secret exists for the record but cannot log in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Rater, Role

from .audit import record
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .text import normalize_text

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB, ~50 ms a check: slow for guessing, fine for logging in
MAX_NAME = 100
MAX_SECRET = 1024
ROLES = tuple(r.value for r in Role)
ANALYST_ROLES = ("analyst", "admin")  # who may read votes and agreement, exclude raters and export


@dataclass(frozen=True)
class RaterInfo:
    id: int
    name: str
    role: str
    active: bool


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
        return f"created admin {self.name!r}; one-time password: {shown}"


def _info(r: Rater) -> RaterInfo:
    return RaterInfo(r.id, r.name, Role(r.role).value, bool(r.active))


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
    rater = get_rater(session, rater_id)
    if actor_id is not None and actor_id != rater_id:
        require_role(session, actor_id, "admin")
    rater.secret_hash = hash_secret(secret)
    record(session, "rater.secret_changed", "rater", rater.id, actor_id=actor_id)


def authenticate(session: Session, name: str, secret: str) -> RaterInfo | None:
    """The account for ``name`` if ``secret`` matches and it is active, else None (same answer for an unknown
    name and a wrong secret)."""
    try:
        name = normalize_name(name)
    except InvalidInput:
        name = None
    rater = session.scalar(select(Rater).where(Rater.name == name)) if name is not None else None
    if rater is None or not rater.active:
        verify_secret(secret, hash_secret("timing-equaliser"))  # as slow as a real check
        return None
    return _info(rater) if verify_secret(secret, rater.secret_hash) else None


def ensure_admin(session: Session, password: str | None = None, name: str = "admin") -> NewAdmin | None:
    """On first start: create an admin (with ``password`` or a generated one-time password) if none exists."""
    if session.scalar(select(Rater.id).where(Rater.role == Role.admin).limit(1)) is not None:
        return None
    generated = password is None
    password = password or _secrets.token_urlsafe(12)
    info = create_rater(session, name, "admin", password)
    return NewAdmin(info.id, info.name, password, generated)
