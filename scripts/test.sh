#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, doc and trybuild tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-features
