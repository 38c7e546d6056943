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

# Free disk, for reading a failed run: a cold run needs a few GiB (target/, .e2e/, the fuzz build).
echo "test.sh: $(df -h --output=avail . | tail -1 | tr -d ' ') free on the disk of $root"
bash scripts/e2e-setup.sh

# The release binary exactly as the Dockerfile builds it (its `RUN cargo build` line, run
# verbatim), for the test that starts it with the image's command line.
build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[ -n "$build" ] || { echo "test.sh: no 'RUN cargo build' line in the Dockerfile" >&2; exit 1; }
echo "test.sh: $build"
$build

export PIPGATE_E2E_DIR="$e2e"
cargo test --locked --all-targets --no-fail-fast "$@"
# The whole suite (no arguments narrowing it) ends with the fuzzing run.
if [ $# -eq 0 ]; then
  bash scripts/fuzz.sh
fi
