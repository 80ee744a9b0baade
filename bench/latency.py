"""Latency benchmark: every route, one client at a time, with a network in front of PostgreSQL.

Run from the repository root:  uv run python bench/latency.py [--runs 3] [--delay-ms 1.25]

Renders and installs the sync and async variants (UUID keys, Better Auth and Alembic off)
as bench/api.py does, starts a throwaway PostgreSQL cluster, PgBouncer in transaction mode
in front of it, and bench/delay_proxy.py in front of each (every chunk held --delay-ms each
way): the network sits between the app and the database or its pooler, as on Neon. Direct
targets: the raw baseline (bench/baseline_app.py with BENCH_POOL_RESET=off: one round trip
per request), each variant with its default settings, and each in pooler-safe mode. Pooled
targets (through PgBouncer): each variant with its default settings through a PgBouncer
that tracks prepared statements (max_prepared_statements = 1000, as Neon's; needs 1.21+,
PGBOUNCER_BIN names one), the baseline through it too, and each variant in pooler-safe mode
through one that does not (max_prepared_statements = 0, or Debian 12's 1.18). One client on
one keep-alive HTTP connection sends each route in turn; the report gives the median
latency per route and the ratio baseline / target from the same run (1.0: as fast as the
one-round-trip floor; 0.8: 1.25x slower), and the machine's load average. Not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# api.py puts tests/ on sys.path for the cluster helpers; take them from there.
from api import ROOT, PostgresCluster, Server, Target, find_bindir, free_port, log, render, seed
from postgres import TRACKING_PGBOUNCER, PgBouncer, PostgresUnavailable, find_pgbouncer

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
    parser.add_argument(
        "--targets", help="comma-separated target names to run (the baseline always runs)"
    )
    args = parser.parse_args()

    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found: apt-get install postgresql")
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, PostgresCluster(bindir) as pg:
        log(f"rendering and installing the sync and async variants from {args.template}")
        projects = {style: render(style, Path(tmp), args.template) for style in ("sync", "async")}
        direct = pg.create_database("bench")
        assert pg.port is not None
        poolers = start_poolers(pg.port)
        proxies: list[subprocess.Popen[bytes]] = []

        def through_proxy(port: int) -> str:
            """The database's URL through a new delay proxy in front of `port`."""
            proxy_port = free_port()
            command = [
                sys.executable, str(ROOT / "bench" / "delay_proxy.py"),
                "--listen", str(proxy_port), "--target", f"127.0.0.1:{port}",
                "--delay-ms", str(args.delay_ms),
            ]  # fmt: skip
            proxies.append(subprocess.Popen(command))
            url = direct.replace(f":{pg.port}/", f":{proxy_port}/")
            assert url != direct, direct
            return url

        try:
            targets = make_targets(projects, through_proxy(pg.port), poolers, through_proxy)
            if args.targets:
                wanted = {"baseline", *args.targets.split(",")}
                targets = [target for target in targets if target.name in wanted]
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
                    loads.append(os.getloadavg()[0])
                    for route in ROUTES:
                        median = statistics.median(timings[route])
                        medians[target.name].setdefault(route, []).append(median)
                    summary = " ".join(f"{r} {medians[target.name][r][-1]:.2f}" for r in ROUTES)
                    log(f"run {run} {target.name:<18} ms: {summary}  (load {loads[-1]:.1f})")
        finally:
            for proxy in proxies:
                proxy.terminate()
                proxy.wait(timeout=10)
            for pooler in poolers.values():
                pooler.close()

    report(medians, args, loads)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"medians": medians, "load": loads}, indent=2))


def start_poolers(server_port: int) -> dict[str, PgBouncer]:
    """PgBouncers in front of the cluster: "tracking" (when 1.21+ is at hand) and "plain"."""
    executable = find_pgbouncer()
    if executable is None:
        log("no PgBouncer (apt-get install pgbouncer): pooled targets left out")
        return {}
    poolers = {}
    for name, prepared in (("tracking", 1000), ("plain", 0)):
        try:
            pooler = PgBouncer(
                server_port=server_port,
                users={"postgres": ""},
                tls_cert=None,
                tls_key=None,
                max_prepared_statements=prepared,
            )
        except PostgresUnavailable as exc:
            log(f"{name} pooler left out: {exc}")
            continue
        pooler.start()
        version = ".".join(map(str, pooler.version))
        log(f"{name} pooler: PgBouncer {version}, max_prepared_statements {prepared}")
        poolers[name] = pooler
    assert "tracking" not in poolers or poolers["tracking"].version >= TRACKING_PGBOUNCER
    return poolers


def make_targets(
    projects: dict[str, Path],
    url: str,
    poolers: dict[str, PgBouncer],
    through_proxy: Callable[[int], str],
) -> list[Target]:
    def app(name: str, style: str, env: dict[str, str]) -> Target:
        path = projects[style]
        return Target(name, path, path / ".venv", "app.main:app", env)

    def baseline(name: str, url: str) -> Target:
        env = {"BENCH_DATABASE_URL": url, "BENCH_POOL_RESET": "off"}
        return Target(name, ROOT / "bench", projects["async"] / ".venv", "baseline_app:app", env)

    safe = {"DATABASE_TRANSACTION_POOLING": "true"}
    targets = [
        baseline("baseline", url),
        app("async", "async", {"DATABASE_URL": url}),
        app("sync", "sync", {"DATABASE_URL": url}),
        app("async pooler-safe", "async", {"DATABASE_URL": url, **safe}),
        app("sync pooler-safe", "sync", {"DATABASE_URL": url, **safe}),
    ]
    if tracking := poolers.get("tracking"):
        assert tracking.port is not None
        pooled = through_proxy(tracking.port)
        targets += [
            baseline("baseline pooled", pooled),
            app("async pooled", "async", {"DATABASE_URL": pooled}),
            app("sync pooled", "sync", {"DATABASE_URL": pooled}),
        ]
    if plain := poolers.get("plain"):
        assert plain.port is not None
        pooled = through_proxy(plain.port)
        targets += [
            app("async pooled-safe", "async", {"DATABASE_URL": pooled, **safe}),
            app("sync pooled-safe", "sync", {"DATABASE_URL": pooled, **safe}),
        ]
    return targets


def report(
    medians: dict[str, dict[str, list[float]]], args: argparse.Namespace, loads: list[float]
) -> None:
    print(
        f"\nmedian latency in ms over {args.runs} runs ({args.rounds} requests per route and run),"
        f" proxy delay {args.delay_ms} ms each way;\nratio = baseline / target latency in the"
        " same run (median of the runs); 1-minute load average after each target:"
        f" {min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f})"
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
