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

python=${PYTHON:-python3}
if [ ! -x "$e2e/venv/bin/python" ]; then
  echo "test.sh: creating $e2e/venv"
  "$python" -m venv "$e2e/venv"
fi
stamp="$e2e/venv/.requirements"
if ! cmp -s tests/e2e/requirements.txt "$stamp"; then
  echo "test.sh: installing Python test tools (pip, uv, pypiserver)"
  "$e2e/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
  cp tests/e2e/requirements.txt "$stamp"
fi
wheels_stamp="$e2e/wheels/.list"
if ! cmp -s tests/e2e/public-wheels.txt "$wheels_stamp"; then
  echo "test.sh: downloading real public wheels"
  rm -rf "$e2e/wheels"
  mkdir -p "$e2e/wheels"
  "$e2e/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: -d "$e2e/wheels" -r tests/e2e/public-wheels.txt
  cp tests/e2e/public-wheels.txt "$wheels_stamp"
fi

export PIPGATE_E2E_DIR="$e2e"
cargo test --locked --all-targets "$@"
