#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests, the end-to-end tests in which real
# pip and uv install real wheels through a running pipgate, and a bounded fuzzing run of the
# parsers (scripts/fuzz.sh).
#
# It first installs what those tests need into .e2e/ (a virtualenv with pip, uv and pypiserver,
# and a few real public wheels). That is the only step that uses the network, and it talks only
# to the package registries; the tests themselves talk to 127.0.0.1 alone.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
e2e="$root/.e2e"

bash scripts/e2e-setup.sh

export PIPGATE_E2E_DIR="$e2e"
cargo test --locked --all-targets --no-fail-fast "$@"
# The whole suite (no arguments narrowing it) ends with the fuzzing run.
if [ $# -eq 0 ]; then
  bash scripts/fuzz.sh
fi
