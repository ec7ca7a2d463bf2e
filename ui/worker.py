"""The background bank worker: one thread, one torch thread, a queue of project ids.

Raters keep being served while banks are generated: the worker runs ``annotation.banks.run_bank_jobs`` (the same
job as ``python -m annotation generate``), which commits each bank on its own, and publishes its progress for
the admin view. Progress is app-wide state (one worker per process), not per-user state.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from sqlalchemy.orm import Session, sessionmaker

from annotation.banks import BankJobReport, run_bank_jobs
from annotation.projects import get_project
from annotation.text import scrub_addresses
from db.engine import session_scope
from sr_engine import SREngine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerStatus:
    running_project: int | None  # the project being generated now
    done: int  # banks completed in the current job
    failed: int
    queued: tuple[int, ...]  # project ids waiting
    last_error: str | None
    last_message: str


class BankWorker:
    def __init__(self, factory: sessionmaker[Session], engine_for: Callable[[str], SREngine]):
        self._factory = factory
        self._engine_for = engine_for
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._lock = threading.Lock()
        self._status = WorkerStatus(None, 0, 0, (), None, "idle")
        self._thread: threading.Thread | None = None

    def start(self) -> BankWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bank-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def enqueue(self, project_id: int) -> None:
        with self._lock:
            if project_id in self._status.queued:
                return
            self._status = replace(self._status, queued=self._status.queued + (project_id,))
        self._queue.put(project_id)

    def status(self) -> WorkerStatus:
        with self._lock:
            return self._status

    def idle(self) -> bool:
        s = self.status()
        return s.running_project is None and not s.queued

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _run(self) -> None:
        torch.set_num_threads(1)  # one torch thread: raters' requests keep the other core
        while True:
            pid = self._queue.get()
            if pid is None:
                return
            with self._lock:
                queued = tuple(q for q in self._status.queued if q != pid)
                self._status = replace(self._status, running_project=pid, done=0, failed=0, queued=queued,
                                       last_message=f"project {pid}: starting")
            try:
                with session_scope(self._factory) as s:
                    model = get_project(s, pid).model_name
                engine = self._engine_for(model)

                def progress(rep: BankJobReport, pid: int = pid) -> None:
                    self._set(done=len(rep.completed), failed=len(rep.failed),
                              last_message=f"project {pid}: {len(rep.completed)} bank(s) done")
                    logger.info("project %d: %d bank(s) complete, %d failed", pid, len(rep.completed),
                                len(rep.failed))

                rep = run_bank_jobs(self._factory, engine, pid, on_progress=progress)
                err = scrub_addresses("; ".join(f"bank {b}: {e}" for b, e in rep.failed.items())) or None
                self._set(running_project=None, last_error=err,
                          last_message=f"project {pid}: {len(rep.completed)} bank(s) generated in "
                                       f"{rep.seconds:.1f} s" + (f", {len(rep.failed)} failed" if rep.failed else ""))
            except Exception as err:  # noqa: BLE001 - the worker must outlive one bad project
                logger.exception("project %d: bank generation failed", pid)
                self._set(running_project=None, last_error=scrub_addresses(f"{type(err).__name__}: {err}"),
                          last_message=f"project {pid}: failed")
