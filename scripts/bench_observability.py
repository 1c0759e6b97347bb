#!/usr/bin/env python3
"""Runs the observability benchmarks several rounds and reports medians and ratios.

  scripts/bench_observability.py [--rounds 5] [--baseline REV] [--filter TEXT] [--best]

Each round runs `scope/benches/observability.rs` (short criterion runs: 1 s warm-up, 3 s
measurement) and prints every function's time and its ratio to `raw_tokio` of the same group
and round; the summary takes the median over rounds. With `--baseline REV`, each round also runs
the `core` benchmark of revision REV (exported with `git archive`, built in a temporary
directory) and of the working tree, interleaved, to compare `spawn_await_one/go_go_scope` with
and without what changed since REV. `--best` summarises with the fastest round instead of the
median: on a shared machine other processes only ever add time, so the fastest of many rounds
is the steadier estimate.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["--warm-up-time", "1", "--measurement-time", "3"]
UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
LINE = re.compile(r"^(\S+/\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", re.M)


def run_bench(cwd, bench, features, filter_=None):
    """Returns {"group/function": nanoseconds} from one `cargo bench` run."""
    cmd = ["cargo", "bench", "-q", "-p", "go-go-scope", "--bench", bench]
    if features:
        cmd += ["--features", features]
    cmd += ["--", *SHORT]
    if filter_:
        cmd.append(filter_)
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    # criterion puts the time on the next line when the name is long
    out = re.sub(r"\n\s+time:", " time:", out)
    return {m[0]: float(m[1]) * UNITS[m[2]] for m in LINE.findall(out)}


def ratios(times):
    out = {}
    for name, ns in times.items():
        group = name.split("/")[0]
        raw = times.get(f"{group}/raw_tokio")
        out[name] = ns / raw if raw else None
    return out


def export_revision(rev, into):
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="git revision to compare spawn+await against")
    parser.add_argument("--filter", help="only the benchmarks whose name contains this")
    parser.add_argument("--best", action="store_true", help="summarise with the fastest round")
    args = parser.parse_args()
    summary = min if args.best else statistics.median

    rounds = []
    baseline = []
    current = []
    with tempfile.TemporaryDirectory() as base_dir:
        if args.baseline:
            export_revision(args.baseline, base_dir)
        for r in range(args.rounds):
            times = run_bench(ROOT, "observability", "otel,metrics", args.filter)
            rounds.append(times)
            print(f"round {r + 1}:", flush=True)
            for name, ns in times.items():
                ratio = ratios(times)[name]
                print(f"  {name:55} {ns:9.1f} ns  x{ratio:.2f}" if ratio else f"  {name:55} {ns:9.1f} ns")
            if args.baseline:
                # Interleaved: the revision, then the working tree, same filter.
                b = run_bench(base_dir, "core", None, "spawn_await_one")
                c = run_bench(ROOT, "core", None, "spawn_await_one")
                baseline.append(b)
                current.append(c)
                print(f"  spawn_await_one/go_go_scope  {args.baseline}: {b['spawn_await_one/go_go_scope']:.1f} ns"
                      f"  now: {c['spawn_await_one/go_go_scope']:.1f} ns", flush=True)

    label = "fastest" if args.best else "median"
    print(f"\n{label} of {args.rounds} rounds (ratio: of the {label} times to the {label} raw_tokio"
          " of the same group)")
    best = {name: summary(t[name] for t in rounds if name in t) for name in rounds[0]}
    for name, ns in best.items():
        raw = best.get(name.split("/")[0] + "/raw_tokio")
        print(f"  {name:55} {ns:9.1f} ns  x{ns / raw:.2f}" if raw else f"  {name:55} {ns:9.1f} ns")
    if args.baseline:
        b = [t["spawn_await_one/go_go_scope"] / t["spawn_await_one/raw_tokio"] for t in baseline]
        c = [t["spawn_await_one/go_go_scope"] / t["spawn_await_one/raw_tokio"] for t in current]
        direct = [cur["spawn_await_one/go_go_scope"] / base["spawn_await_one/go_go_scope"]
                  for base, cur in zip(baseline, current)]
        base_ns = summary(t["spawn_await_one/go_go_scope"] for t in baseline)
        now_ns = summary(t["spawn_await_one/go_go_scope"] for t in current)
        print(f"  spawn_await_one/go_go_scope: {args.baseline} {base_ns:.1f} ns, now {now_ns:.1f} ns"
              f" (x{now_ns / base_ns:.2f}); per-round ratios to raw_tokio: {args.baseline}"
              f" x{statistics.median(b):.2f}, now x{statistics.median(c):.2f}, now / {args.baseline}"
              f" x{statistics.median(direct):.2f}")


if __name__ == "__main__":
    sys.exit(main())
