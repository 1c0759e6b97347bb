#!/usr/bin/env python3
"""Runs the instruction-count benchmark (scope/benches/instructions.rs) once and prints
instructions per operation as a Markdown table: raw TaskTracker, raw JoinSet, go-go-scope, and
the ratios.

The benchmark runs each measured function once under Callgrind (through gungraun) on a
current-thread runtime, so one run is enough: the counts do not depend on the machine's load.
Each function runs a batch of operations; the batch sizes are read from the benchmark's source
(`BATCH`, and `MESSAGES` for the channel rows) and divided out here.

Needs valgrind and `gungraun-runner` of the same version as the `gungraun` dev-dependency.

Usage: scripts/instructions.py [--from FILE] [--save FILE]
  --from FILE   read gungraun's JSON lines from FILE instead of running the benchmark
  --save FILE   also write the JSON lines the run produced to FILE
Exits non-zero if the benchmark does not build or run, or a measured function is missing; the
figures themselves never fail it.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "scope" / "benches" / "instructions.rs"

# (operation, TaskTracker function, JoinSet function, go-go-scope function, batch constant)
ROWS = [
    ("scope create + close", "create_close_tracker", "create_close_joinset",
     "create_close_scope", "BATCH"),
    ("spawn + await one task (one scope per 1 000 tasks)", "spawn_await_tracker",
     "spawn_await_joinset", "spawn_await_scope", "BATCH"),
    ("the same with `go!` in a `#[scoped]` fn", "spawn_await_tracker", "spawn_await_joinset",
     "go_scoped_scope", "BATCH"),
    ("task with a 5 s timeout", "timeout_tracker", "timeout_joinset", "timeout_scope", "BATCH"),
    ("task that fails once, retried at once", "retry_once_tracker", "retry_once_joinset",
     "retry_once_scope", "BATCH"),
    ("spawn + await, `metrics(true)` (raw: two clock reads + an atomic add)",
     "metrics_tracker", "metrics_joinset", "metrics_scope", "BATCH"),
    ("spawn + await, `introspect(false)` (no record in the live tree)",
     "spawn_await_tracker", "spawn_await_joinset", "unrecorded_scope", "BATCH"),
    ("`parallel` of 3 trivial tasks", "parallel3_tracker", "parallel3_joinset",
     "parallel3_scope", "BATCH"),
    ("channel, per message, capacity 100 (raw: tokio mpsc)", "channel_tokio", None,
     "channel_scope", "MESSAGES"),
]


# Local scopes: (operation, TaskTracker function, local-scope function, moro-local function,
# batch constant)
LOCAL_ROWS = [
    ("spawn + await one task (one local scope per 1 000 tasks)", "spawn_await_tracker",
     "spawn_await_local", "spawn_await_moro", "BATCH"),
    ("3 tasks spawned and awaited together (one local scope per 1 000 operations)",
     "parallel3_tracker", "parallel3_local", "parallel3_moro", "BATCH"),
    ("the same, a local scope built and closed for every 3 tasks", "parallel3_tracker",
     "parallel3_local_each", "parallel3_moro_each", "BATCH"),
    ("one of 10 000 tasks under a limit of 100 (raw: a semaphore)", "limited_tracker",
     "limited_local", None, "LIMITED"),
]


def batch_sizes():
    source = BENCH.read_text()
    sizes = {}
    for name in ("BATCH", "MESSAGES", "LIMITED"):
        m = re.search(rf"^const {name}: \w+ = ([0-9_]+);", source, re.MULTILINE)
        if not m:
            sys.exit(f"error: no `const {name}` in {BENCH.relative_to(ROOT)}")
        sizes[name] = int(m.group(1).replace("_", ""))
    return sizes


def run_bench():
    cmd = ["cargo", "bench", "-q", "-p", "go-go-scope", "--bench", "instructions", "--",
           "--output-format=json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(f"error: `{' '.join(cmd)}` failed (exit {proc.returncode})")
    return proc.stdout


def parse(lines):
    """Function name -> instructions (Callgrind's `Ir`) of the whole measured batch."""
    counts = {}
    for line in lines.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        summary = json.loads(line)
        for profile in summary["profiles"]:
            if profile["tool"] != "Callgrind":
                continue
            ir = profile["data"]["total"]["metrics"]["Ir"]["values"]["new"]
            counts[summary["function_name"]] = ir
    return counts


def fmt(n):
    return f"{n:,.0f}".replace(",", " ")


def table(counts, sizes):
    wanted = ({f for row in ROWS for f in row[1:4]} | {f for row in LOCAL_ROWS for f in row[1:4]}
              | {"yield_scope", "yield_unrecorded"})
    missing = sorted({f for f in wanted if f and f not in counts})
    if missing:
        sys.exit(f"error: no instruction count for {', '.join(missing)}")
    out = [
        "| operation | TaskTracker | JoinSet | go-go-scope | vs TaskTracker | vs JoinSet |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, tracker, joinset, scope, batch in ROWS:
        n = sizes[batch]
        t = counts[tracker] / n
        s = counts[scope] / n
        j = counts[joinset] / n if joinset else None
        out.append(
            f"| {label} | {fmt(t)} | {fmt(j) if j else '—'} | {fmt(s)} | {s / t:.2f}× | "
            f"{f'{s / j:.2f}×' if j else '—'} |"
        )
    go = counts["go_scoped_scope"] / counts["spawn_await_scope"]
    registry = counts["spawn_await_scope"] / counts["unrecorded_scope"] - 1
    recorded = counts["yield_scope"] / counts["yield_unrecorded"] - 1
    per_record = (counts["yield_scope"] - counts["yield_unrecorded"]) / sizes["BATCH"]
    out.append("")
    out.append(f"Instructions per operation (Callgrind `Ir`, batches of {fmt(sizes['BATCH'])} "
               f"operations, {fmt(sizes['MESSAGES'])} messages for the channel). "
               f"`go!` in a `#[scoped]` fn against `Scope::spawn`: {go:.2f}×; "
               f"the live registry (a task's record in the tree) against a scope built "
               f"with `introspect(false)`: {registry:+.1%}; for a task suspended once (it "
               f"yields), which the registry records: {fmt(counts['yield_unrecorded'] / sizes['BATCH'])} "
               f"→ {fmt(counts['yield_scope'] / sizes['BATCH'])} ({recorded:+.1%}, "
               f"{per_record:.0f} instructions per record).")
    out += [
        "",
        "| local scopes | TaskTracker | `Scope::local` | moro-local | local vs TaskTracker "
        "| local vs moro-local |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, tracker, local, moro, batch in LOCAL_ROWS:
        n = sizes[batch]
        t = counts[tracker] / n
        s = counts[local] / n
        m = counts[moro] / n if moro else None
        out.append(f"| {label} | {fmt(t)} | {fmt(s)} | {fmt(m) if m else '—'} | {s / t:.2f}× | "
                   f"{f'{s / m:.2f}×' if m else '—'} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=pathlib.Path)
    parser.add_argument("--save", type=pathlib.Path)
    args = parser.parse_args()
    sizes = batch_sizes()
    lines = args.source.read_text() if args.source else run_bench()
    if args.save:
        args.save.write_text(lines)
    print(table(parse(lines), sizes))


if __name__ == "__main__":
    main()
