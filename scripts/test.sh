#!/usr/bin/env bash
# Runs every test: the workspace's unit, integration, doc and UI tests, then the end-to-end
# checks of the observability integrations against real components (scripts/e2e.py): a
# Prometheus server, a Pushgateway and an OTLP/HTTP receiver, on 127.0.0.1.
#
# The components are installed when missing (Debian packages and a Python venv, which needs
# root and network access to the package registries; otherwise it says what to install) and
# started here unless already running, then stopped on exit. They start before the cargo tests
# so that Prometheus's first scrape (about 6 s after start) overlaps the build.
# GOSCOPE_SKIP_E2E=1 runs the cargo tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."

e2e=1
[[ ${GOSCOPE_SKIP_E2E:-} == 1 ]] && e2e=""

# shellcheck source=scripts/services.sh
source scripts/services.sh
started_here=""
cleanup() {
    if [[ -n $started_here ]]; then
        services_stop
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n $e2e ]] && ! services_ready; then
    services_install
    started_here=1
    services_start
fi

cargo test --workspace --all-features

if [[ -n $e2e ]]; then
    python3 scripts/e2e.py
else
    echo "GOSCOPE_SKIP_E2E=1: end-to-end checks skipped"
fi
