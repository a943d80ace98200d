"""Latency of `vaekit serve`'s endpoints, measured over HTTP against the real server.

    python benchmarks/serve_latency.py RUN [RUN ...] [--requests 2000] [--clients 8]

For each run: starts `vaekit serve RUN` on a free port (uvicorn, one process), then

1. a slider drag: N sequential /api/decode requests from one client, each a new latent
   vector (the page sends one at a time and the next when the answer arrives);
2. the load test: `--requests` requests from `--clients` concurrent clients, each with its
   own keep-alive connection, a mix of 90% /api/decode and 10% /api/encode (a held-out example:
   the posterior, the reconstruction and a k=100 importance-weighted score).

Prints the p50 / p99 / max latency in milliseconds, the requests per second and the errors
(any non-200 answer), and one JSON line per run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(run: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", run, "--port",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2).read()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server for {run} did not start: "  # noqa: B904
                                 f"{process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.3)


class Client:
    """One keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, float]:
        data = json.dumps(body).encode()
        start = time.perf_counter()
        self.connection.request("POST", path, body=data,
                                headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - start) * 1000


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50_ms": round(at(0.5), 2), "p99_ms": round(at(0.99), 2),
            "max_ms": round(ordered[-1], 2)}


def measure(run: str, requests: int, clients: int, drag: int) -> dict[str, Any]:
    process, port = start(run)
    try:
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info").read())
        sliders = sorted(info["sliders"], key=lambda s: s["dim"])
        rng = random.Random(0)

        def latent() -> list[float]:
            return [rng.uniform(s["lo"], s["hi"]) for s in sliders]

        one = Client(port)
        for _ in range(20):  # warm-up
            one.post("/api/decode", {"z": latent()})
        drag_ms = []
        errors = 0
        for _ in range(drag):
            status, ms = one.post("/api/decode", {"z": latent()})
            drag_ms.append(ms)
            errors += status != 200
        held_out = max(1, int(info["held_out"]))
        plan = [("/api/encode", {"index": rng.randrange(held_out)}) if rng.random() < 0.1
                and info["held_out"] else ("/api/decode", {"z": latent()})
                for _ in range(requests)]
        results: list[tuple[str, int, float]] = []
        lock = threading.Lock()

        def worker(share: list[tuple[str, dict[str, Any]]]) -> None:
            client = Client(port)
            mine = []
            for path, body in share:
                try:
                    status, ms = client.post(path, body)
                except OSError:
                    status, ms = 0, float("nan")
                mine.append((path, status, ms))
            with lock:
                results.extend(mine)

        threads = [threading.Thread(target=worker, args=(plan[i::clients],))
                   for i in range(clients)]
        start_time = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start_time
        load_errors = sum(status != 200 for _, status, _ in results)
        decode_ms = [ms for path, status, ms in results if path == "/api/decode" and status == 200]
        encode_ms = [ms for path, status, ms in results if path == "/api/encode" and status == 200]
        return {"run": run, "model": info["model"], "latent_dim": info["latent_dim"],
                "slider_drag": {"requests": drag, "errors": errors, **percentiles(drag_ms)},
                "load": {"requests": len(results), "clients": clients, "errors": load_errors,
                         "requests_per_second": round(len(results) / wall, 1),
                         "decode": percentiles(decode_ms),
                         "encode": percentiles(encode_ms) if encode_ms else None}}
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--drag", type=int, default=300, help="sequential decode requests")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.requests} requests from {args.clients} "
          "clients per run (90% decode, 10% encode)")
    for run in args.runs:
        if not Path(run).is_dir():
            raise SystemExit(f"{run} is not a run directory")
        r = measure(run, args.requests, args.clients, args.drag)
        d, load = r["slider_drag"], r["load"]
        print(f"{run}: {r['model']}")
        print(f"  slider drag, one client: decode p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms "
              f"({d['requests']} requests, {d['errors']} errors)")
        enc = load["encode"] or {}
        print(f"  load: {load['requests']} requests, {load['errors']} errors, "
              f"{load['requests_per_second']} req/s; decode p50 {load['decode']['p50_ms']} ms, "
              f"p99 {load['decode']['p99_ms']} ms; encode p50 {enc.get('p50_ms')} ms, "
              f"p99 {enc.get('p99_ms')} ms")
        print(json.dumps(r))


if __name__ == "__main__":
    main()
