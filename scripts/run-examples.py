#!/usr/bin/env python3
"""Builds every example of the `go-go-scope-examples` package, and those published with the
`go-go-scope` crate (`scope/examples/`), and runs the self-contained ones.

Examples listed under `[package.metadata.examples] needs-services` in examples/Cargo.toml
talk to servers outside the example (an OTLP collector, a Pushgateway); they are built here and
exercised by the end-to-end checks instead. Every other example must exit with status 0 within
the timeout.

Usage: scripts/run-examples.py [--timeout SECONDS] [NAME ...]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples" / "Cargo.toml"


def build():
    """Builds the examples and returns {name: executable path}."""
    result = subprocess.run(
        ["cargo", "build", "-p", "go-go-scope-examples", "-p", "go-go-scope", "--examples",
         "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True,
    )
    executables = {}
    for line in result.stdout.splitlines():
        message = json.loads(line)
        target = message.get("target", {})
        if message.get("reason") == "compiler-artifact" and "example" in target.get("kind", []):
            executables[target["name"]] = message["executable"]
    return executables


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60, help="seconds per example")
    parser.add_argument("names", nargs="*", help="run only these examples")
    args = parser.parse_args()

    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    declared = [example["name"] for example in manifest.get("example", [])]
    # The crate's own examples, found by Cargo in scope/examples/.
    declared += sorted(path.stem for path in (ROOT / "scope" / "examples").glob("*.rs"))
    metadata = manifest.get("package", {}).get("metadata", {}).get("examples", {})
    needs_services = set(metadata.get("needs-services", []))
    unknown = (needs_services | set(args.names)) - set(declared)
    if unknown:
        print(f"run-examples: not declared in {MANIFEST.relative_to(ROOT)}: {sorted(unknown)}", file=sys.stderr)
        return 2

    executables = build()
    failures = []
    for name in args.names or declared:
        if name in needs_services and not args.names:
            print(f"-- {name}: built; needs external services, not run here")
            continue
        started = time.monotonic()
        try:
            run = subprocess.run(
                [executables[name]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=args.timeout,
            )
            status = "ok" if run.returncode == 0 else f"exit status {run.returncode}"
            output = run.stdout
        except subprocess.TimeoutExpired as expired:
            status = f"still running after {args.timeout:.0f} s (killed)"
            output = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        took = time.monotonic() - started
        print(f"-- {name}: {status} in {took:.1f} s")
        if status != "ok":
            failures.append(name)
            tail = output.splitlines()[-30:]
            print("\n".join("   | " + line for line in tail))
    if failures:
        print(f"run-examples: failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print("run-examples: every self-contained example ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
