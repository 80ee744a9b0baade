"""Latency benchmark: every route, one client at a time, with a network in front of PostgreSQL.

Run from the repository root:  uv run python bench/latency.py [--runs 3] [--delay-ms 1.25]

Renders and installs the sync and async variants (UUID keys, Better Auth and Alembic off)
as bench/api.py does, starts a throwaway PostgreSQL cluster and bench/delay_proxy.py in
front of it (every chunk held --delay-ms each way), and points every target at the proxy:
the raw baseline (bench/baseline_app.py with BENCH_POOL_RESET=off: one round trip per
request), each variant with its default settings, and each in pooler-safe mode. One client
on one keep-alive HTTP connection sends each route in turn; the report gives the median
latency per route and the ratio baseline / target from the same run (1.0: as fast as the
one-round-trip floor; 0.8: 1.25x slower). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# api.py puts tests/ on sys.path for the cluster helpers; take them from there.
from api import ROOT, PostgresCluster, Server, Target, find_bindir, free_port, log, render, seed

ROUTES = ["list", "get", "create", "bulk", "patch", "toggle", "delete"]


class Client:
    """One keep-alive HTTP connection; times each request on the client's clock."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send(self, method: str, path: str, body: object = None) -> tuple[float, object]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        start = time.perf_counter()
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status >= 300:
            sys.exit(f"{method} {path}: {response.status} {payload[:200]!r}")
        return elapsed * 1000, json.loads(payload) if payload else None

    def close(self) -> None:
        self.connection.close()


def one_round(client: Client, seeded: str, timings: dict[str, list[float]]) -> None:
    """Each route once; rows it creates are deleted again, so the table stays the same."""
    api = "/api/todos"
    ms, _ = client.send("GET", f"{api}?limit=20")
    timings["list"].append(ms)
    ms, _ = client.send("GET", f"{api}/{seeded}")
    timings["get"].append(ms)
    ms, todo = client.send("POST", api, {"title": "latency", "description": "x" * 40})
    timings["create"].append(ms)
    url = f"{api}/{todo['id']}"  # type: ignore[index]
    ms, _ = client.send("PATCH", url, {"title": "changed"})
    timings["patch"].append(ms)
    ms, _ = client.send("POST", f"{url}/toggle")
    timings["toggle"].append(ms)
    ms, _ = client.send("DELETE", url)
    timings["delete"].append(ms)
    ms, rows = client.send("POST", f"{api}/bulk", [{"title": f"bulk {n}"} for n in range(3)])
    timings["bulk"].append(ms)
    for row in rows:  # type: ignore[attr-defined]
        client.send("DELETE", f"{api}/{row['id']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=150, help="rounds of every route per run")
    parser.add_argument("--warmup", type=int, default=20, help="rounds before measuring")
    parser.add_argument("--delay-ms", type=float, default=1.25, help="proxy delay, each way")
    parser.add_argument(
        "--template", type=Path, default=ROOT, help="checkout to render (default: this one)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw medians here")
    args = parser.parse_args()

    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found: apt-get install postgresql")
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, PostgresCluster(bindir) as pg:
        log(f"rendering and installing the sync and async variants from {args.template}")
        projects = {style: render(style, Path(tmp), args.template) for style in ("sync", "async")}
        direct = pg.create_database("bench")
        proxy_port = free_port()
        proxy = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "delay_proxy.py"), "--listen", str(proxy_port),
             "--target", f"127.0.0.1:{pg.port}", "--delay-ms", str(args.delay_ms)],
        )  # fmt: skip
        try:
            url = direct.replace(f":{pg.port}/", f":{proxy_port}/")
            assert url != direct, direct
            app_env = {"DATABASE_URL": url}
            safe_env = {**app_env, "DATABASE_TRANSACTION_POOLING": "true"}
            baseline_env = {"BENCH_DATABASE_URL": url, "BENCH_POOL_RESET": "off"}

            def app(name: str, style: str, env: dict[str, str]) -> Target:
                path = projects[style]
                return Target(name, path, path / ".venv", "app.main:app", env)

            targets = [
                Target("baseline", ROOT / "bench", projects["async"] / ".venv",
                       "baseline_app:app", baseline_env),
                app("async", "async", app_env),
                app("sync", "sync", app_env),
                app("async pooler-safe", "async", safe_env),
                app("sync pooler-safe", "sync", safe_env),
            ]  # fmt: skip
            server = Server(targets[1])  # creates the table
            seeded = seed(server)
            server.stop()
            medians: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
            for run in range(1, args.runs + 1):
                for target in targets:
                    server = Server(target)
                    client = Client(server.port)
                    try:
                        timings: dict[str, list[float]] = {route: [] for route in ROUTES}
                        for _ in range(args.warmup):
                            one_round(client, seeded, {route: [] for route in ROUTES})
                        for _ in range(args.rounds):
                            one_round(client, seeded, timings)
                    finally:
                        client.close()
                        server.stop()
                    for route in ROUTES:
                        median = statistics.median(timings[route])
                        medians[target.name].setdefault(route, []).append(median)
                    summary = " ".join(f"{r} {medians[target.name][r][-1]:.2f}" for r in ROUTES)
                    log(f"run {run} {target.name:<18} ms: {summary}")
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)

    report(medians, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(medians, indent=2))


def report(medians: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print(
        f"\nmedian latency in ms over {args.runs} runs ({args.rounds} requests per route and run),"
        f" proxy delay {args.delay_ms} ms each way;\nratio = baseline / target latency in the"
        " same run (median of the runs)"
    )
    print(f"{'target':<18} " + " ".join(f"{route:>13}" for route in ROUTES))
    baseline = medians["baseline"]
    for name, routes in medians.items():
        cells = []
        for route in ROUTES:
            ratios = [b / t for b, t in zip(baseline[route], routes[route], strict=True)]
            cells.append(
                f"{statistics.median(routes[route]):6.2f} ({statistics.median(ratios):4.2f})"
            )
        print(f"{name:<18} " + " ".join(f"{cell:>13}" for cell in cells))


if __name__ == "__main__":
    main()
