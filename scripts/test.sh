#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests, and the end-to-end tests in which real
# pip and uv install real wheels through a running pipgate.
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
