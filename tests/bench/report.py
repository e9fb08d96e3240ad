"""Ratios of one run's figures, and the Markdown tables printed at its end."""

from __future__ import annotations

from typing import Any

PEER_NAMES = {"dbos": "DBOS", "celery": "Celery"}


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 3)
    return None


def dig(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def flatten(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, int | float) and not isinstance(d, bool):
        out[prefix] = d
    return out


PEER_FIGURES: list[tuple[str, tuple[str, ...]]] = [
    ("W1 workflows/s", ("W1", "workflows_per_second")),
    ("W2 p50 ms (client)", ("W2", "client_ms", "p50")),
    ("W2 p95 ms (client)", ("W2", "client_ms", "p95")),
    ("W2 p99 ms (client)", ("W2", "client_ms", "p99")),
    ("W1 CPU ms per workflow, all processes", ("W1", "cpu_ms_per_workflow", "total")),
    ("W1 PostgreSQL commits per workflow", ("W1", "pg_commits_per_workflow")),
]


# sched's local-activity workloads against the peers' W1/W2 (DBOS's steps are checkpointed
# inside the workflow, as local activities are recorded inside the workflow task).
LOCAL_PEER_FIGURES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("W1L workflows/s (peer: W1)", ("W1L", "workflows_per_second"),
     ("W1", "workflows_per_second")),
    ("W2L p50 ms (client; peer: W2)", ("W2L", "client_ms", "p50"), ("W2", "client_ms", "p50")),
    ("W2L p95 ms (client; peer: W2)", ("W2L", "client_ms", "p95"), ("W2", "client_ms", "p95")),
    ("W2L p99 ms (client; peer: W2)", ("W2L", "client_ms", "p99"), ("W2", "client_ms", "p99")),
    ("W1L CPU ms per workflow, all processes (peer: W1)",
     ("W1L", "cpu_ms_per_workflow", "total"), ("W1", "cpu_ms_per_workflow", "total")),
    ("W1L PostgreSQL commits per workflow (peer: W1)", ("W1L", "pg_commits_per_workflow"),
     ("W1", "pg_commits_per_workflow")),
]


def peer_ratios(sched: dict[str, Any], peers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for peer, figures in peers.items():
        if "skipped" in figures:
            continue
        out[peer] = {label: ratio(dig(sched, *path), dig(figures, *path))
                     for label, path in PEER_FIGURES}
        out[peer].update({label: ratio(dig(sched, *ours), dig(figures, *theirs))
                          for label, ours, theirs in LOCAL_PEER_FIGURES})
    return out


def baseline_ratios(current: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    a, b = flatten(current), flatten(baseline)
    skip = ("code.", "workflows", "activities")
    return {k: r for k in a if k in b and not k.startswith(skip)
            and not k.endswith((".workflows", ".activities"))
            and (r := ratio(a[k], b[k])) is not None}


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def better(key: str) -> str:
    if key.endswith(("workflows_per_second", "pg_single_row_commits_per_second")):
        return "higher"
    if key.endswith(("pg_commits_per_second", "pg_idle_commits_per_second")):
        return ""
    return "lower"


def peers_table(sched_label: str, sched: dict[str, Any], peers: dict[str, Any]) -> str:
    ran = {p: f for p, f in peers.items() if "skipped" not in f}
    header = [" ", f"sched ({sched_label})"]
    for p, f in ran.items():
        header.append(f"{PEER_NAMES[p]} {f.get('version', '')}"
                      + ("" if f.get("durable") else " (not durable)"))
    header += [f"sched ÷ {PEER_NAMES[p]}" for p in ran]
    header.append("better if")
    rows: list[list[Any]] = []
    for label, path in PEER_FIGURES[:4]:
        rows.append([label, dig(sched, *path), *(dig(f, *path) for f in ran.values()),
                     *(ratio(dig(sched, *path), dig(f, *path)) for f in ran.values()),
                     better(path[-1])])
    processes: list[str] = []
    for figures in (sched, *ran.values()):
        for name in dig(figures, "W1", "cpu_ms_per_workflow") or {}:
            if name != "total" and name not in processes:
                processes.append(name)
    for name in processes:
        path = ("W1", "cpu_ms_per_workflow", name)
        rows.append([f"W1 CPU ms per workflow: {name}", dig(sched, *path),
                     *(dig(f, *path) for f in ran.values()), *([None] * len(ran)), "lower"])
    for label, path in PEER_FIGURES[4:]:
        rows.append([label, dig(sched, *path), *(dig(f, *path) for f in ran.values()),
                     *(ratio(dig(sched, *path), dig(f, *path)) for f in ran.values()),
                     "lower"])
    for label, ours, theirs in LOCAL_PEER_FIGURES:
        if dig(sched, *ours) is None:
            continue
        rows.append([label, dig(sched, *ours), *(dig(f, *theirs) for f in ran.values()),
                     *(ratio(dig(sched, *ours), dig(f, *theirs)) for f in ran.values()),
                     better(ours[-1]) if ours[-1] == "workflows_per_second" else "lower"])
    rate = sched.get("pg_single_row_commits_per_second")
    if rate:
        rows.append(["PostgreSQL single-row commits/s (this run)", rate,
                     *([None] * (2 * len(ran))), ""])
        tps = dig(sched, "W1", "pg_commits_per_second")
        rows.append(["W1 commits/s ÷ single-row commits/s", ratio(tps, rate),
                     *(ratio(dig(f, "W1", "pg_commits_per_second"), rate)
                       for f in ran.values()), *([None] * len(ran)), ""])
    return table(header, rows)


def threads_table(columns: dict[str, dict[str, Any]]) -> str:
    names: list[str] = []
    for figures in columns.values():
        for name in dig(figures, "W1", "engine_threads_cpu_ms_per_workflow") or {}:
            if name not in names:
                names.append(name)
    rows = [[name, *(dig(f, "W1", "engine_threads_cpu_ms_per_workflow", name)
                     for f in columns.values())] for name in names]
    return table(["engine thread (W1)", *(f"{c} CPU ms/workflow" for c in columns)], rows)


def baseline_table(current: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Every figure of both (raw CPU seconds and window lengths left to the JSON)."""
    a, b = flatten(current), flatten(baseline)
    rows = [[k, a[k], b[k], r, better(k)]
            for k, r in baseline_ratios(current, baseline).items()
            if not k.startswith(("W1.cpu_seconds.", "W1.window_seconds", "W1.seconds"))]
    return table(["figure", "current", "baseline", "current ÷ baseline", "better if"], rows)
