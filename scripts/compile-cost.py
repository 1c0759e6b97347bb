#!/usr/bin/env python3
"""Compile-time cost of `#[scoped]`: builds a generated crate of N scoped fns and the same crate
without the attribute, and reports the ratio of their build times.

Two numbers:
- crate only: dependencies are built once and shared; each round cleans and rebuilds just the
  generated crate. This is the cost the attribute adds to a user's own crate.
- clean build: everything from scratch (dependencies included), as a first `cargo build` sees it.

Rounds alternate between the two variants so machine noise hits both alike.

    scripts/compile-cost.py [--fns 100] [--rounds 5] [--clean-rounds 1]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "target" / "compile-cost"

HEADER = """\
#![allow(dead_code)]
use go_go_scope::prelude::*;

#[derive(Debug)]
pub struct AppError(pub Error);

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError(error)
    }
}
"""

FN = """
{attribute}pub async fn handler_{n}(id: u64) -> Result<u64, AppError> {{
    let a = go!(async move {{ id + {n} }});
    let b = go!(async move {{ Ok::<_, std::io::Error>(id * 2) }});
    let (err, value) = try_go!(format!("{{id}}").parse::<u64>());
    if err.is_some() {{
        return Ok(0);
    }}
    Ok(a.result().await? + b.result().await? + value.unwrap_or(0))
}}
"""


def write_crate(name: str, fns: int, attribute: str) -> Path:
    root = WORK / name
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "Cargo.toml").write_text(
        f"""[package]
name = "{name}"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
go-go-scope = {{ path = "{REPO / 'scope'}" }}

[workspace]
"""
    )
    body = HEADER + "".join(FN.format(n=n, attribute=attribute) for n in range(fns))
    (root / "src" / "lib.rs").write_text(body)
    return root


def cargo(root: Path, *args: str, target: Path) -> float:
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), CARGO_TERM_COLOR="never")
    start = time.perf_counter()
    subprocess.run(
        ["cargo", *args, "--manifest-path", str(root / "Cargo.toml")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clean-rounds", type=int, default=1)
    args = parser.parse_args()

    variants = {
        "scoped": write_crate("gen_scoped", args.fns, '#[scoped(timeout = "5s", concurrency = 4)]\n'),
        "plain": write_crate("gen_plain", args.fns, ""),
    }
    shared = WORK / "target-shared"
    for name, root in variants.items():
        cargo(root, "build", target=shared)  # dependencies, once

    crate_times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, root in variants.items():
            package = root.name
            cargo(root, "clean", "-p", package, target=shared)
            crate_times[name].append(cargo(root, "build", target=shared))

    clean_times = {name: [] for name in variants}
    for _ in range(args.clean_rounds):
        for name, root in variants.items():
            target = WORK / f"target-clean-{name}"
            shutil.rmtree(target, ignore_errors=True)
            clean_times[name].append(cargo(root, "build", target=target))
            shutil.rmtree(target, ignore_errors=True)

    def report(label: str, times: dict) -> None:
        scoped, plain = statistics.median(times["scoped"]), statistics.median(times["plain"])
        print(f"{label}: {args.fns} fns with #[scoped] {scoped:.2f} s, without {plain:.2f} s, "
              f"ratio {scoped / plain:.2f}x (median of {len(times['scoped'])})")
        print(f"  with:    {', '.join(f'{t:.2f}' for t in times['scoped'])}")
        print(f"  without: {', '.join(f'{t:.2f}' for t in times['plain'])}")

    report("crate only", crate_times)
    report("clean build", clean_times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
