#!/usr/bin/env bash
# Installs what the end-to-end tests and the install benchmark need into .e2e/: a virtualenv
# with pinned pip, uv, pypiserver and the deploy checkers (hadolint, kubernetes-validate,
# check-jsonschema), poetry and pdm in virtualenvs of their own, the storage emulators (moto,
# Azurite), and a few real public wheels; and promtool (Debian's `prometheus` package), which checks the alert rules and the
# metrics exposition. It talks only to the package registries, and does nothing when
# everything is already in place.
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
# poetry, pdm and the storage emulators' Python side (moto's S3 server, the Azure Blob SDK) each
# in a virtualenv of their own: their dependency sets are large and pinned whole
# (tests/e2e/requirements-{poetry,pdm,storage}.txt).
for tool in poetry pdm storage; do
  requirements="tests/e2e/requirements-$tool.txt"
  if ! cmp -s "$requirements" "$e2e/$tool/.requirements"; then
    echo "test.sh: installing $tool into $e2e/$tool"
    rm -rf "$e2e/$tool"
    "$python" -m venv "$e2e/$tool"
    "$e2e/$tool/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$e2e/$tool/.requirements"
  fi
done
# Azurite, the Azure Storage emulator of the shared-tier tests, from the npm registry
# (tests/e2e/azurite, npm ci).
if ! cmp -s tests/e2e/azurite/package-lock.json "$e2e/azurite/.package-lock"; then
  if ! command -v npm >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { echo "test.sh: npm is needed to install Azurite: apt-get install nodejs npm" >&2; exit 1; }
    echo "test.sh: installing nodejs and npm from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "test.sh: installing Azurite into $e2e/azurite"
  rm -rf "$e2e/azurite"
  mkdir -p "$e2e/azurite"
  cp tests/e2e/azurite/package.json tests/e2e/azurite/package-lock.json "$e2e/azurite/"
  (cd "$e2e/azurite" && npm ci --silent --no-audit --no-fund >/dev/null)
  cp tests/e2e/azurite/package-lock.json "$e2e/azurite/.package-lock"
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

# promtool (Debian's prometheus package) checks the alert rules and the exposition; curl is the
# real HTTP/2 client of the hostile-client tests.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} from Debian"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: installing needs root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
