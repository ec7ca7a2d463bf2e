"""Does a burst of sign-ins hold up other requests? Against a running app, signs one account in ``--rate`` times a
second for ``--seconds`` while another thread times an unrelated ``GET`` (``--probe``, default the app id route)
every 50 ms; prints the probe's latency quiet and during the burst (median, 95th percentile, max) and how the
sign-ins were answered. A measurement, not a test; it speaks plain HTTP, as a browser does.

    python app.py --port 7861 --data-dir /tmp/burst --no-demo --admin-password burst-pw-123 &
    python -m ui.signin_burst --url http://127.0.0.1:7861/ --name admin --password burst-pw-123
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx


def _probe(url: str, path: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            c.get(path)
            out.append(time.perf_counter() - t0)
            stop.wait(max(0.0, 0.05 - (time.perf_counter() - t0)))


def _sign_in(url: str, name: str, password: str) -> int:
    with httpx.Client(base_url=url, timeout=60) as c:
        return c.post("login", data={"username": name, "password": password}).status_code


def _window(url: str, probe: str, seconds: float, burst: tuple[str, str, float] | None) -> tuple[list[float], Counter]:
    stop, lat, codes = threading.Event(), [], Counter()
    t = threading.Thread(target=_probe, args=(url, probe, stop, lat), daemon=True)
    t.start()
    if burst is None:
        time.sleep(seconds)
    else:
        name, password, rate = burst
        with ThreadPoolExecutor(max_workers=64) as pool:
            futures, start = [], time.perf_counter()
            for i in range(int(seconds * rate)):
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
                futures.append(pool.submit(_sign_in, url, name, password))
            codes.update(f.result() for f in futures)
    stop.set()
    t.join()
    return lat, codes


def _summary(lat: list[float]) -> str:
    ms = sorted(x * 1000 for x in lat)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms  ({len(ms)} GETs)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--name", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--rate", type=float, default=16.0, help="sign-ins a second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--probe", default="gradio_api/app_id", help="the unrelated GET")
    a = p.parse_args(argv)
    quiet, _ = _window(a.url, a.probe, 5.0, None)
    busy, codes = _window(a.url, a.probe, a.seconds, (a.name, a.password, a.rate))
    print(f"GET /{a.probe}, quiet:            {_summary(quiet)}")
    print(f"GET /{a.probe}, {a.rate:g} sign-ins/s: {_summary(busy)}")
    print(f"sign-ins answered: {dict(sorted(codes.items()))}")


if __name__ == "__main__":
    main()
