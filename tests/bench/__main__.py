"""``make bench``: sched's benchmarks, with its peers measured in the same run.

Not a test (``make test`` and CI do not run it); the figures go to BENCHMARKS.md.

W1 throughput: 2,000 workflows of 3 activities, started as fast as the client can.
W2 latency: 200 sequential workflows of 3 activities, start-to-result.
W1L, W2L: W1 and W2 with 3 local activities instead (one workflow task per workflow); DBOS's
   W1 and W2 (steps, its like-for-like) are compared with them too.
W3 timers: 200 workflows that each sleep 1 s; wake-up lateness.
W4 long history: one workflow of 2,000 sequential activities; the mean time per activity of
   the last 200 over that of the first 200.
Each runs on SQLite and on PostgreSQL + Redis (when reachable), with one engine process, one
worker process and one client process. The PostgreSQL single-row commit rate is measured in
the same run. Then W1 and W2 run on DBOS Transact and on Celery (each in a virtualenv of its
own under bench-results/venvs/) against the same PostgreSQL and Redis, and, with
``--baseline REF``, sched's workloads run again on a worktree of REF: every figure is also
given as a ratio, sched ÷ peer and current ÷ baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.bench import report
from tests.bench.measure import pg_reachable
from tests.bench.peers_run import redis_reachable, run_peer
from tests.bench.sched_run import Checkout, run_sched

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results"
PG_BASE = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "when": datetime.now().isoformat(timespec="seconds")}


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def add_baseline(ref: str) -> Path:
    """A detached worktree of ``ref`` under bench-results/ (removed by ``remove_baseline``)."""
    commit = git("rev-parse", "--verify", ref + "^{commit}")
    path = RESULTS / f"baseline-{commit[:12]}"
    if path.exists():
        if git("rev-parse", "HEAD", cwd=path) == commit:
            return path
        remove_baseline(path)
    RESULTS.mkdir(exist_ok=True)
    git("worktree", "add", "--detach", str(path), commit)
    return path


def remove_baseline(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                   capture_output=True, check=False)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join((__doc__ or "").splitlines()[2:]))
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all",
                        help="sched's database (peers always run on PostgreSQL)")
    parser.add_argument("--w1", type=int, default=2000, help="W1 workflows (0: skip)")
    parser.add_argument("--w1l", type=int, default=None,
                        help="W1L workflows (local activities; default: as --w1; 0: skip)")
    parser.add_argument("--w2", type=int, default=200, help="W2 workflows (0: skip)")
    parser.add_argument("--w2l", type=int, default=None,
                        help="W2L workflows (local activities; default: as --w2; 0: skip)")
    parser.add_argument("--w3", type=int, default=200, help="W3 workflows (0: skip)")
    parser.add_argument("--w4", type=int, default=2000, help="W4 activities (0: skip)")
    parser.add_argument("--peers", default="dbos,celery",
                        help="comma-separated peers among dbos,celery, or none")
    parser.add_argument("--baseline", metavar="REF", default=None,
                        help="also run sched's workloads on a worktree of git REF")
    parser.add_argument("--settle", type=float, default=11.0,
                        help="seconds waited around W1 for PostgreSQL's commit counters "
                             "to be published (0: read them at once)")
    parser.add_argument("--celery-concurrency", type=int, default=os.cpu_count() or 2,
                        help="Celery worker processes (default: one per core)")
    parser.add_argument("--engines", type=int, choices=[1, 2], default=1,
                        help="2: also W1 on PostgreSQL with two engines (a worker on each, "
                             "the starts spread over both), beside the one-engine W1")
    parser.add_argument("--out", default=str(RESULTS / "latest.json"))
    args = parser.parse_args()
    args.w1l = args.w1 if args.w1l is None else args.w1l
    args.w2l = args.w2 if args.w2l is None else args.w2l
    peers = [] if args.peers in ("", "none") else args.peers.split(",")
    for peer in peers:
        if peer not in report.PEER_NAMES:
            parser.error(f"unknown peer {peer!r} (dbos, celery or none)")
    args.peer_list = peers
    return args


def on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so every child is stopped on the way out


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    results: dict[str, Any] = {"machine": machine()}
    failures: list[str] = []
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    pg_down = pg_reachable(PG_BASE)
    if "postgres" in backends and pg_down:
        print(f"PostgreSQL at {PG_BASE} unreachable ({pg_down}): sched on PostgreSQL skipped",
              flush=True)
        backends.remove("postgres")
    try:
        baseline_path = add_baseline(args.baseline) if args.baseline else None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--baseline {args.baseline}: {exc.stderr.strip()}") from exc
    try:
        with tempfile.TemporaryDirectory(prefix="sched-bench-") as tmp_name:
            tmp = Path(tmp_name)
            checkouts = [Checkout(ROOT, "current")]
            if baseline_path:
                checkouts.append(Checkout(baseline_path, "baseline"))
                results["baseline"] = {"ref": args.baseline}
            for backend in backends:
                for checkout in checkouts:
                    target = results if checkout.label == "current" else results["baseline"]
                    try:
                        target[backend] = run_sched(checkout, backend, args, tmp, PG_BASE,
                                                    REDIS)
                    except Exception as exc:  # the other runs' figures are still worth having
                        failures.append(f"sched {checkout.label} on {backend}: {exc}")
                        print(f"[{checkout.label} {backend}] FAILED: {exc}", flush=True)
            if args.engines > 1 and "postgres" in backends:
                w1_only = argparse.Namespace(**{**vars(args), "w1l": 0, "w2": 0, "w2l": 0,
                                                "w3": 0, "w4": 0})
                try:
                    results["postgres_engines"] = run_sched(
                        checkouts[0], "postgres", w1_only, tmp, PG_BASE, REDIS,
                        engines=args.engines)
                except Exception as exc:
                    failures.append(f"sched with {args.engines} engines: {exc}")
                    print(f"[current postgres x{args.engines}] FAILED: {exc}", flush=True)
            if args.peer_list:
                results["peers"] = run_peers(args, tmp)
    finally:
        if baseline_path:
            remove_baseline(baseline_path)
    tables = summarize(results)
    if failures:
        results["failures"] = failures
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(tables)
    print(f"\nfigures: {out}, tables: {out.with_suffix('.md')}")
    if failures:
        raise SystemExit("failed: " + "; ".join(failures))


def run_peers(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    pg_down, redis_down = pg_reachable(PG_BASE), redis_reachable(REDIS)
    for peer in args.peer_list:
        why = (f"PostgreSQL at {PG_BASE} unreachable ({pg_down})" if pg_down else None)
        if peer == "celery":
            why = f"Redis at {REDIS} unreachable ({redis_down})" if redis_down else None
        if why:
            print(f"[{peer}] skipped: {why}", flush=True)
            peers[peer] = {"skipped": why}
            continue
        try:
            peers[peer] = run_peer(peer, args, tmp, RESULTS / "venvs", PG_BASE, REDIS)
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            print(f"[{peer}] failed, skipped: {exc}", flush=True)
            peers[peer] = {"skipped": f"failed: {exc}"}
    return peers


def summarize(results: dict[str, Any]) -> str:
    """Adds the ratios to ``results``; prints the tables and returns them (Markdown)."""
    sched_label = "PG + Redis" if "postgres" in results else "SQLite"
    sched = results.get("postgres") or results.get("sqlite") or {}
    parts: list[str] = [f"Run of {results['machine']['when']} on {results['machine']['cpu']}"
                        f" ({results['machine']['cores']} cores)."]
    if "peers" in results:
        results["ratios_sched_over_peer"] = report.peer_ratios(sched, results["peers"])
        for peer, figures in results["peers"].items():
            if "skipped" in figures:
                parts.append(f"{report.PEER_NAMES[peer]}: skipped ({figures['skipped']}).")
        if "skipped" not in results["peers"].get("celery", {"skipped": True}):
            parts.append("Celery is not durable: a chain's progress is Redis messages and "
                         "results, nothing is recorded in a database.")
        parts.append(report.peers_table(sched_label, sched, results["peers"]))
    columns = {"current": sched}
    base = results.get("baseline", {})
    if base:
        columns["baseline"] = base.get("postgres") or base.get("sqlite") or {}
    if report.dig(sched, "W1", "engine_threads_cpu_ms_per_workflow"):
        parts.append(f"sched ({sched_label}), W1, the engine's threads:\n\n"
                     + report.threads_table(columns))
    for backend in ("sqlite", "postgres"):
        if "code" in results.get(backend, {}) and "code" in base.get(backend, {}):
            ratios = report.baseline_ratios(results[backend], base[backend])
            base.setdefault("ratios_current_over_baseline", {})[backend] = ratios
            parts.append(
                f"sched on {backend}, current ({results[backend]['code']['commit'][:12]}"
                f"{' + uncommitted changes' if results[backend]['code']['dirty'] else ''}) "
                f"÷ baseline {base['ref']} ({base[backend]['code']['commit'][:12]}):\n\n"
                + report.baseline_table(results[backend], base[backend]))
    two = report.dig(results, "postgres_engines", "W1", "workflows_per_second")
    one = report.dig(results, "postgres", "W1", "workflows_per_second")
    if two and one:
        results["ratio_two_engines_over_one"] = round(two / one, 3)
        parts.append(f"W1 on PostgreSQL with two engines (the dispatch shards shared, a worker "
                     f"on each): {two} workflows/s, against {one} with one: "
                     f"**{two / one:.2f}** of it.")
    text = "\n\n".join(parts) + "\n"
    print("\n" + text)
    return text


if __name__ == "__main__":
    main()
