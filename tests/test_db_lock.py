"""The store's write lock: reentrant, granted in arrival order, and a waiter that times out leaves the line."""

from __future__ import annotations

import threading
import time

from db.engine import FairLock


def test_reentrant_and_released_by_its_owner_only():
    lock = FairLock()
    assert lock.acquire() and lock.acquire(timeout=0)
    lock.release()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    t.start()
    t.join()
    assert got == [False]  # still held once by this thread
    lock.release()
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    t.start()
    t.join()
    assert got == [False, True]
    try:
        lock.release()  # the other thread holds it now
        raise AssertionError("released a lock held by another thread")
    except RuntimeError:
        pass


def test_waiters_get_the_lock_in_arrival_order():
    lock = FairLock()
    lock.acquire()
    order: list[int] = []

    def worker(i: int) -> None:
        assert lock.acquire(timeout=10)
        order.append(i)
        time.sleep(0.001)
        lock.release()

    threads = []
    for i in range(20):
        t = threading.Thread(target=worker, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while len(lock._gates) < i + 1 and time.monotonic() < deadline:  # wait until it is in line
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join()
    assert order == list(range(20))


def test_a_waiter_that_times_out_leaves_the_line_and_the_next_one_gets_it():
    lock = FairLock()
    lock.acquire()
    results: dict[str, bool] = {}
    impatient = threading.Thread(target=lambda: results.setdefault("impatient", lock.acquire(timeout=0.05)))
    impatient.start()
    impatient.join()
    assert results == {"impatient": False} and not lock._gates

    def patient() -> None:
        results["patient"] = lock.acquire(timeout=5)
        lock.release()

    t = threading.Thread(target=patient)
    t.start()
    while not lock._gates:
        time.sleep(0.001)
    lock.release()
    t.join()
    assert results["patient"] is True
    assert lock.acquire(timeout=0)  # free again
    lock.release()
