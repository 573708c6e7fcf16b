"""Benchmark: what the load generator adds to a request, against paced reference clients.

A fixed 2 ms endpoint (Flask under gunicorn gthread, pinned to CPU 1) is driven at the same
rate, one after another, by ``hey -c 1 -q R`` (Go, one connection, paced), a paced
``http.client`` keep-alive loop, and ``seambench load`` (all three pinned to CPU 0), for
``--repeat`` rounds. Each prints its p50 and p99; the ratio of seambench's p50 to hey's is
the generator's own overhead (issue 7, problem 12; target: within 10%).

    .venv/bin/python scripts/generator_overhead.py --rate 100 --duration 20 --repeat 3
    .venv/bin/python scripts/generator_overhead.py --clients hey --tree old=/tmp/wt-old --tree new=.

A benchmark, not a test: it takes about (3 x duration + 10 s) per round. Loopback only.
"""
from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
app = Flask("fixed-endpoint")
SLEEP_S = float(os.environ.get("FIXED_ENDPOINT_MS", "2")) / 1000


@app.get("/")
def fixed() -> dict:
    time.sleep(SLEEP_S)
    return {"ok": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cpu: str, ms: float) -> subprocess.Popen:
    cmd = ["taskset", "-c", cpu, sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
           "--workers", "1", "--threads", "8", "--keep-alive", "60", "--log-level", "warning",
           "--bind", f"127.0.0.1:{port}", "--pythonpath", str(Path(__file__).parent),
           "generator_overhead:app"]
    popen = subprocess.Popen(cmd, start_new_session=True,
                             env={**os.environ, "FIXED_ENDPOINT_MS": str(ms)})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return popen
        except OSError:
            time.sleep(0.1)
    os.killpg(popen.pid, signal.SIGTERM)
    raise RuntimeError("the fixed endpoint did not start")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def run_hey(url: str, rate: float, duration: float, cpu: str) -> dict:
    out = subprocess.run(["taskset", "-c", cpu, "hey", "-c", "1", "-q", f"{rate:g}",
                          "-z", f"{duration:g}s", "-o", "csv", url],
                         capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    ms = [float(r["response-time"]) * 1000 for r in rows if r.get("status-code") == "200"]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "mean_ms": statistics.fmean(ms),
            "p99_ms": percentile(ms, 99)}


def run_httpclient(url: str, rate: float, duration: float, cpu: str) -> dict:
    code = f"""
import http.client, json, time
conn = http.client.HTTPConnection("127.0.0.1", {url.rsplit(':', 1)[1].rstrip('/')})
gap = 1e9 / {rate}; n = int({rate} * {duration}); out = []
start = time.perf_counter_ns() + 50_000_000
for i in range(n):
    intended = start + int(i * gap)
    delay = intended - time.perf_counter_ns()
    if delay > 0:
        time.sleep(delay / 1e9)
    t0 = time.perf_counter_ns()
    conn.request("GET", "/"); r = conn.getresponse(); r.read()
    out.append((time.perf_counter_ns() - t0) / 1e6)
print(json.dumps(out))
"""
    out = subprocess.run(["taskset", "-c", cpu, sys.executable, "-c", code],
                         capture_output=True, text=True, check=True).stdout
    ms = json.loads(out)
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "mean_ms": statistics.fmean(ms),
            "p99_ms": percentile(ms, 99)}


def run_seambench(url: str, rate: float, duration: float, cpu: str, tree: Path = ROOT) -> dict:
    sys.path.insert(0, str(tree))
    from bench.results import hdr

    # ``seambench load`` of the checkout at ``tree`` (another worktree measures another version)
    seambench = [sys.executable, "-c", "from bench.cli import main; main()"]
    with tempfile.TemporaryDirectory(prefix="generator-overhead-") as keep:
        done = subprocess.run(["taskset", "-c", cpu, *seambench, "load", url,
                               "--rate", f"{rate:g}", "--duration", f"{duration:g}", "--json",
                               "--arrival", "constant",
                               "--keep", keep], capture_output=True, text=True, cwd=tree,
                              env={**os.environ, "PYTHONPATH": str(tree)})
        if done.returncode not in (0, 1, 3) or not done.stdout.strip():  # 1: invalid before 3
            raise RuntimeError(f"seambench load failed:\n{done.stderr[-2000:]}")
        doc = json.loads(done.stdout)
        raw = json.loads((Path(keep) / "load-0.json").read_text())
    service = hdr.merge(hdr.decode(n["service_histogram"]) for n in raw["names"].values())
    lateness = hdr.decode(raw["lateness_histogram"])
    # p50 from the intended send time (what the target compares), and its two parts:
    # send lateness (intended -> the send starts) and service time (send -> response)
    return {"n": doc["requests"], "p50_ms": doc["p50_us"] / 1000, "p99_ms": doc["p99_us"] / 1000,
            "service_p50_ms": service.get_value_at_percentile(50) / 1000,
            "lateness_p50_ms": lateness.get_value_at_percentile(50) / 1000,
            "lateness_p99_ms": doc["send_lateness_p99_us"] / 1000,
            "cpu": doc["generator_cpu"], "valid": doc["valid"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ms", type=float, default=2.0, help="the endpoint's fixed delay")
    parser.add_argument("--server-cpu", default="1")
    parser.add_argument("--client-cpu", default="0")
    parser.add_argument("--clients", default="hey,httpclient,seambench")
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                        help="measure the seambench load of the checkout at PATH (e.g. a git "
                             "worktree) as client seambench-LABEL; repeatable, to compare versions")
    args = parser.parse_args()
    if not shutil.which("hey"):
        sys.exit("hey is not installed (Debian: apt-get install hey)")
    port = free_port()
    server = start_server(port, args.server_cpu, args.ms)
    url = f"http://127.0.0.1:{port}/"
    runners = {"hey": run_hey, "httpclient": run_httpclient, "seambench": run_seambench}
    names = args.clients.split(",")
    for spec in args.tree:
        label, _, path = spec.partition("=")
        tree = Path(path).resolve()
        runners[f"seambench-{label}"] = lambda *a, tree=tree: run_seambench(*a, tree=tree)
        names.append(f"seambench-{label}")
    results: dict[str, list[dict]] = {name: [] for name in names}
    try:
        run_hey(url, args.rate, 2, args.client_cpu)  # warm the server up
        for rep in range(args.repeat):
            # the order alternates between rounds, so drift does not favour whoever goes first
            for name in (list(results) if rep % 2 == 0 else list(results)[::-1]):
                r = runners[name](url, args.rate, args.duration, args.client_cpu)
                results[name].append(r)
                print(f"round {rep + 1} {name:>10}: " + ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                    flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    medians = {name: statistics.median(r["p50_ms"] for r in rs) for name, rs in results.items()}
    print("median p50 (ms): " + ", ".join(f"{n} {v:.3f}" for n, v in medians.items()))
    for name in medians:
        if name.startswith("seambench") and "hey" in medians:
            print(f"{name} / hey p50: {medians[name] / medians['hey']:.3f}")


if __name__ == "__main__":
    main()
