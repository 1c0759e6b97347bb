#!/usr/bin/env python3
"""Runs criterion benchmark binaries several rounds and reports go-go-scope / raw-tokio ratios.

Each benchmark group has a `raw_tokio` and a `go_go_scope` function measured back to back, so
every round interleaves baseline and candidate; a group may add other hand-written forms named
`raw_tokio_<form>`, reported on rows of their own. The machines are noisy: the report takes the
median over rounds of each function's median time, and the median of the per-round ratios.

Usage: scripts/bench-ratios.py [--rounds N] [--measurement-time S] [--bench NAME ...]
Prints a Markdown table on stdout.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"


def run_round(benches, measurement_time):
    for bench in benches:
        subprocess.run(
            [
                "cargo", "bench", "-q", "-p", "go-go-scope", "--bench", bench, "--",
                "--warm-up-time", "1", "--measurement-time", str(measurement_time), "--noplot",
            ],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )


def read_medians():
    medians = {}
    for estimates in CRITERION.glob("*/*/new/estimates.json"):
        group, function = estimates.parts[-4], estimates.parts[-3]
        with open(estimates) as f:
            medians[(group, function)] = json.load(f)["median"]["point_estimate"]
    return medians


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--measurement-time", type=float, default=2)
    parser.add_argument("--bench", action="append", default=None)
    args = parser.parse_args()
    benches = args.bench or ["core", "resilience"]

    samples = {}
    for round_no in range(args.rounds):
        print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
        run_round(benches, args.measurement_time)
        for key, value in read_medians().items():
            samples.setdefault(key, []).append(value)

    groups = sorted({group for group, _ in samples})
    print("| operation | raw tokio | go-go-scope | ratio (median of rounds) |")
    print("|---|---:|---:|---:|")
    for group in groups:
        ours = samples.get((group, "go_go_scope"))
        # `raw_tokio` is the group's baseline; `raw_tokio_<form>` functions are further
        # hand-written forms of the same work, each reported on its own row.
        baselines = sorted(
            function for g, function in samples
            if g == group and (function == "raw_tokio" or function.startswith("raw_tokio_"))
        )
        for baseline in baselines:
            raw = samples[(group, baseline)]
            if not ours:
                continue
            rounds = min(len(raw), len(ours))
            ratios = [ours[i] / raw[i] for i in range(rounds)]
            label = group if baseline == "raw_tokio" else f"{group} (vs {baseline})"
            print(
                f"| {label} | {fmt_ns(statistics.median(raw))} | "
                f"{fmt_ns(statistics.median(ours))} | {statistics.median(ratios):.2f}× "
                f"(min {min(ratios):.2f}, max {max(ratios):.2f}) |"
            )


if __name__ == "__main__":
    main()
