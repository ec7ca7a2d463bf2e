"""Private downloads: a file made for one account (an analyst's export), kept under an unguessable name in that
account's own folder, handed out once to that account and then removed.

    downloads = PrivateDownloads(data_dir / "private" / "downloads", ttl_s=600)
    ticket = downloads.new(owner_id, owner_name, "project-3-votes.csv")   # a fresh folder, 0700
    export(session, pid, "votes", "csv", ticket.path)                      # write into it
    downloads.publish(ticket)                                              # files 0600; claimable from now
    path = downloads.claim(ticket.token, owner_id)                         # once, by the owner; then remove()

Layout: ``<root>/<safe account name>/<token>/<file name>`` (``root`` and the account folders 0700, files 0600);
``token`` is ``secrets.token_urlsafe(24)`` (192 random bits) and the account folder is
:func:`annotation.text.safe_path_component` of the name. Which token belongs to whom is kept in memory, so a
restart makes every old file unreachable: :meth:`PrivateDownloads.sweep` (at start and on each new file) removes
every folder whose ticket is claimed, expired (``ttl_s``) or unknown. Nothing here is served by a static file
route: the app's own download route checks the signed-in account and its role before :meth:`claim`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput
from .text import safe_path_component

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 600.0
TOKEN_BYTES = 24


@dataclass(frozen=True)
class Ticket:
    token: str
    owner_id: int
    folder: Path  # the ticket's own folder, removed with it
    path: Path  # the file to hand out
    expires_at: float  # on the table's clock

    @property
    def filename(self) -> str:
        return self.path.name


class PrivateDownloads:
    def __init__(self, root: str | Path, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.root = Path(root)
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._lock = threading.RLock()
        self._tickets: dict[str, Ticket] = {}
        self._published: set[str] = set()
        _private_dir(self.root)

    def new(self, owner_id: int, owner_name: str, filename: str) -> Ticket:
        """A fresh private folder for one file named ``filename`` (a plain name, no folders)."""
        if not filename or filename != Path(filename).name or filename.startswith("."):
            raise InvalidInput("a download needs a plain file name")
        self.sweep()
        with self._lock:  # a sweep never sees the folder before its ticket
            owner_dir = _private_dir(self.root / safe_path_component(owner_name))
            token = secrets.token_urlsafe(TOKEN_BYTES)
            folder = _private_dir(owner_dir / token)
            ticket = Ticket(token, int(owner_id), folder, folder / filename, self._clock() + self.ttl_s)
            self._tickets[token] = ticket
        return ticket

    def publish(self, ticket: Ticket) -> None:
        """The file is written: make everything in its folder private (0600) and let its owner claim it."""
        if not ticket.path.is_file():
            raise InvalidInput(f"nothing was written to {ticket.filename!r}")
        for p in ticket.folder.rglob("*"):
            os.chmod(p, 0o700 if p.is_dir() else 0o600)
        with self._lock:
            if ticket.token in self._tickets:
                self._published.add(ticket.token)

    def claim(self, token: str, owner_id: int) -> Ticket | None:
        """The ticket, once, if ``owner_id`` owns it and it is published and unexpired; None otherwise (the same
        answer for another account's token and an unknown one). The caller removes it after sending."""
        with self._lock:
            t = self._tickets.get(token) if isinstance(token, str) else None
            if t is None or t.owner_id != owner_id or token not in self._published:
                return None
            del self._tickets[token]
            self._published.discard(token)
        if self._clock() > t.expires_at or not t.path.is_file():
            self.remove(t)
            return None
        return t

    def remove(self, ticket: Ticket) -> None:
        shutil.rmtree(ticket.folder, ignore_errors=True)

    def sweep(self) -> int:
        """Remove every ticket folder that is expired or unknown (a previous process's); the number removed."""
        now = self._clock()
        removed = 0
        with self._lock:
            for token in [k for k, t in self._tickets.items() if t.expires_at < now]:
                del self._tickets[token]
                self._published.discard(token)
            live = {t.folder for t in self._tickets.values()}
            for owner_dir in (p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()):
                for folder in owner_dir.iterdir():
                    if folder not in live:
                        if folder.is_dir() and not folder.is_symlink():
                            shutil.rmtree(folder, ignore_errors=True)
                        else:
                            folder.unlink(missing_ok=True)
                        removed += 1
        if removed:
            logger.info("removed %d private download(s) that expired or were left over", removed)
        return removed


def _private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), made if missing; a link is refused."""
    if path.is_symlink():
        raise InvalidInput(f"{path.name!r} is a link, not a folder")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
