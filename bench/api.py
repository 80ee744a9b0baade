"""HTTP benchmark: the generated app (sync and async) against a raw FastAPI + asyncpg baseline.

Run from the repository root:  uv run python bench/api.py [--runs 3] [--duration 10]

Renders the sync and async variants (UUID keys, Better Auth and Alembic off),
installs each with `uv sync --no-dev`, starts a throwaway PostgreSQL cluster
(tests/postgres.py), seeds 200 todos through the API, then serves each target with uvicorn
(one worker) and loads it with wrk (one thread, --connections) on two routes: the list (20
rows) and one todo by id. Targets: the raw baseline (bench/baseline_app.py), each variant
with default settings, and each variant in pooler-safe mode (DATABASE_TRANSACTION_POOLING=
true, no prepared statements), all on the same database. Each run visits every target in
turn; the report gives medians over the runs and ratios to the baseline of the same runs.
Not a test: nothing is asserted. Needs wrk (Debian: apt-get install wrk; installed here
when missing and running as root).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from copier import run_copy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from postgres import PostgresCluster, find_bindir, free_port  # noqa: E402
from variants import answers  # noqa: E402

ROUTES = {"list": "/api/todos?limit=20", "get": "/api/todos/{id}"}
SEED_ROWS = 200


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    if os.geteuid() != 0:
        sys.exit("wrk is missing: apt-get install wrk")
    log("installing wrk (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("wrk did not install")


def render(style: str, dest: Path, template: Path = ROOT) -> Path:
    """Render and install a variant from a checkout's last commit; returns its directory."""
    path = dest / style
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DirtyLocalWarning on an uncommitted tree
        data = answers(f"{style}-uuid-noauth-noalembic")  # Better Auth and Alembic off
        run_copy(str(template), path, data=data, defaults=True, vcs_ref="HEAD", quiet=True)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV"}}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    subprocess.run(["uv", "sync", "--no-dev", "-q"], cwd=path, env=env, check=True)
    return path


@dataclass
class Target:
    name: str
    cwd: Path
    venv: Path
    app: str
    env: dict[str, str]
    results: dict[str, list[dict[str, float]]] = field(default_factory=dict)


class Server:
    def __init__(self, target: Target, log_dir: Path | None = None) -> None:
        self.target = target
        self.port = free_port()
        uvicorn = target.venv / "bin" / "uvicorn"
        args = [str(uvicorn), target.app, "--port", str(self.port), "--host", "127.0.0.1"]
        args += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
        # The apps' log lines (one access line per request) go to a file, as in production.
        self.log = open(log_dir / "server.log", "ab") if log_dir else None  # noqa: SIM115
        self.process = subprocess.Popen(
            args, cwd=target.cwd, env={**env, **target.env}, stdin=subprocess.DEVNULL,
            stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url("/api/todos?limit=1"), timeout=5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    sys.exit(f"{target.name} exited at startup")
                time.sleep(0.2)
        self.stop()
        sys.exit(f"{target.name} did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.log:
            self.log.close()


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        return math.nan  # wrk prints "-nan" when no request completed
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[match[2]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        # A generous timeout: slow answers count in the latencies instead of vanishing.
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(latency[1]) if (latency := re.search(r"^\s+50%\s+(\S+)", out, re.M)) else math.nan
    p99 = to_ms(latency[1]) if (latency := re.search(r"^\s+99%\s+(\S+)", out, re.M)) else math.nan
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:.*", out)
    errors = float(bad.group(1)) if bad else 0.0
    if bad or sock:
        log(f"  wrk reported errors on {url}: {bad and bad.group(0)} {sock and sock.group(0)}")
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "requests": requests}


def seed(server: Server) -> str:
    """SEED_ROWS todos through the API; returns the id of one of them."""
    body = json.dumps([{"title": f"todo {n}", "description": "x" * 40} for n in range(100)])
    first = ""
    for _ in range(SEED_ROWS // 100):
        request = urllib.request.Request(
            server.url("/api/todos/bulk"),
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            first = first or json.load(response)[50]["id"]
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--template", type=Path, default=ROOT, help="checkout to render (default: this one)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="also serve the async variant of this checkout ('async before') in every run",
    )
    args = parser.parse_args()

    wrk = ensure_wrk()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found: apt-get install postgresql")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, PostgresCluster(bindir) as pg:
        log("rendering and installing the sync and async variants")
        projects = {style: render(style, Path(tmp), args.template) for style in ("sync", "async")}
        url = pg.create_database("bench")
        app_env = {"DATABASE_URL": url}
        safe_env = {**app_env, "DATABASE_TRANSACTION_POOLING": "true"}
        baseline_env = {"BENCH_DATABASE_URL": url}

        def app(name: str, style: str, env: dict[str, str]) -> Target:
            path = projects[style]
            return Target(name, path, path / ".venv", "app.main:app", env)

        targets = [
            # The baseline runs from the async variant's venv: same FastAPI, uvicorn, asyncpg.
            Target("baseline", ROOT / "bench", projects["async"] / ".venv", "baseline_app:app",
                   baseline_env),
            app("async", "async", app_env),
            app("sync", "sync", app_env),
            app("async pooler-safe", "async", safe_env),
            app("sync pooler-safe", "sync", safe_env),
            app("async no pre-ping", "async", {**app_env, "DATABASE_POOL_PRE_PING": "false"}),
        ]  # fmt: skip
        if args.before:
            before = render("async", Path(tmp) / "before", args.before)
            targets.insert(2, Target("async before", before, before / ".venv", "app.main:app",
                                     app_env))  # fmt: skip
        # The first app start creates the table; then the same rows serve every target.
        server = Server(targets[1])
        todo_id = seed(server)
        server.stop()
        paths = {name: path.format(id=todo_id) for name, path in ROUTES.items()}

        for run in range(1, args.runs + 1):
            for target in targets:
                server = Server(target, Path(tmp))
                try:
                    for route, path in paths.items():
                        run_wrk(wrk, server.url(path), args.warmup, args.connections)
                        cpu = cpu_seconds(server.process.pid)
                        result = run_wrk(wrk, server.url(path), args.duration, args.connections)
                        # CPU per request is steadier than req/s on a shared machine.
                        cpu = cpu_seconds(server.process.pid) - cpu
                        result["cpu_ms"] = 1000 * cpu / max(result["requests"], 1)
                        target.results.setdefault(route, []).append(result)
                        log(
                            f"run {run} {target.name:<18} {route:<4} {result['rps']:8.0f} req/s"
                            f"  p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms"
                            f"  cpu {result['cpu_ms']:.2f} ms/req"
                        )
                finally:
                    server.stop()

        report(targets, args)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({t.name: t.results for t in targets}, indent=2))


def report(targets: list[Target], args: argparse.Namespace) -> None:
    baseline = targets[0]
    print(
        f"\nmedians of {args.runs} runs; wrk -t1 -c{args.connections} -d{args.duration}s; "
        "uvicorn, 1 worker; ratio = target req/s / baseline req/s in the same run"
    )
    header = f"{'target':<18} {'route':<5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    print(f"{header} {'cpu ms/req':>10} {'ratio':>6}")
    for target in targets:
        for route, results in target.results.items():
            ratios = [
                r["rps"] / b["rps"] for r, b in zip(results, baseline.results[route], strict=True)
            ]
            print(
                f"{target.name:<18} {route:<5}"
                f" {statistics.median(r['rps'] for r in results):>8.0f}"
                f" {statistics.median(r['p50'] for r in results):>7.1f}"
                f" {statistics.median(r['p99'] for r in results):>7.1f}"
                f" {statistics.median(r['cpu_ms'] for r in results):>10.2f}"
                f" {statistics.median(ratios):>6.2f}"
            )
    by_name = {t.name: t for t in targets}
    print("\npooler-safe cost (req/s of pooler-safe / default, median of per-run ratios):")
    for style in ("async", "sync"):
        default, safe = by_name[style], by_name[f"{style} pooler-safe"]
        for route in ROUTES:
            ratios = [
                s["rps"] / d["rps"]
                for s, d in zip(safe.results[route], default.results[route], strict=True)
            ]
            print(f"  {style:<5} {route:<4} {statistics.median(ratios):.2f}")
    print("pre-ping cost (req/s of async with pre-ping / without):")
    for route in ROUTES:
        ratios = [
            d["rps"] / n["rps"]
            for d, n in zip(
                by_name["async"].results[route],
                by_name["async no pre-ping"].results[route],
                strict=True,
            )
        ]
        print(f"  async {route:<4} {statistics.median(ratios):.2f}")
    if "async before" in by_name:
        print("cost of this checkout over --before (cpu ms/req of async / async before):")
        for route in ROUTES:
            ratios = [
                a["cpu_ms"] / b["cpu_ms"]
                for a, b in zip(
                    by_name["async"].results[route],
                    by_name["async before"].results[route],
                    strict=True,
                )
            ]
            print(f"  async {route:<4} {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
