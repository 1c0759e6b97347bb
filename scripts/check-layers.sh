#!/usr/bin/env bash
# The layering rule: the core (scope/src/core/) knows no feature by name. It may use its own
# modules, the plumbing in util/, and the seam that assembles a scope's features
# (crate::features); never the feature folders themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
features='observe|resilience|sync|time|combinators|testing|__private'
if hits=$(grep -rnE "crate::($features)\b" scope/src/core/); then
  echo "scope/src/core/ must not name a feature module; go through the seam (crate::core::observer, crate::features):"
  echo "$hits"
  exit 1
fi
echo "layers: scope/src/core/ names no feature module"
