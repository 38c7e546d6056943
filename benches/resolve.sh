#!/usr/bin/env bash
# Resolution benchmark: uv and pip resolving a set that backtracks, over a feed that offers no
# PEP 658 metadata and whose wheels are large (tens of MiB each), straight from the feed and
# through pipgate with and without synthesized metadata. The feed is nginx serving static
# files on 127.0.0.1 behaving as Azure Artifacts does: ranged GETs are answered (by blob
# storage, behind Azure's redirect), HEAD on a download is a 405 (uv probes range support with
# HEAD, so straight from such a feed it downloads whole wheels).
#
#   benches/resolve.sh         # ~2 minutes; needs scripts/test.sh's .e2e venv (uv, pip)
#
# Prints, per case, the median wall time of ROUNDS cold resolutions (fresh pipgate cache and
# fresh client cache each round), the bytes the feed sent per resolution, and ratios against
# the direct run of the same client.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
WHEEL_MIB=${WHEEL_MIB:-24}
source benches/common.sh
need_e2e venv/bin/uv
VENV=$E2E/venv
install_debian nginx curl
build_pipgate
make_work resolve
FEED=$(port)
total=$(python3 benches/resolve/make_wheels.py "$work/root" "$WHEEL_MIB")
chmod -R a+rX "$work/root"
start_nginx "
  types { }
  default_type application/octet-stream;
  log_format sent '\$body_bytes_sent';
  server {
    listen 127.0.0.1:$FEED;
    root $work/root;
    access_log $work/feed.log sent;
    location /simple/ { index index.json; default_type application/vnd.pypi.simple.v1+json; }
    location /files/ { if (\$request_method = HEAD) { return 405; } }
  }"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$FEED/simple/app/" >/dev/null 2>&1 && break; sleep 0.1; done
FEED_URL="http://127.0.0.1:$FEED/simple/"
echo "resolve.sh: 7 wheels of ${WHEEL_MIB} MiB payload, $((total / 1048576)) MiB in all"

feed_bytes() { awk '{s += $1} END {print s + 0}' "$work/feed.log" 2>/dev/null || echo 0; }
now_ms() { date +%s%3N; }

# pipgate_for SYNTH: a fresh pipgate (fresh cache) in front of the feed; sets $INDEX.
pipgate_pid=""
pipgate_for() {
  [ -n "$pipgate_pid" ] && { kill "$pipgate_pid"; wait "$pipgate_pid" 2>/dev/null || true; }
  run_pipgate resolve "$(port)" '[[upstream]]' 'name = "feed"' "url = \"$FEED_URL\"" "synthesize_metadata = $1"
  pipgate_pid=$PIPGATE_PID
  INDEX="$BASE/simple/"
}

echo app > "$work/requirements.in"
resolve() { # CLIENT INDEX: one cold resolution; prints the pins
  local home; home=$(mktemp -d "$work/home.XXXX")
  case "$1" in
    uv) HOME=$home UV_CACHE_DIR=$home/cache UV_NO_CONFIG=1 "$VENV/bin/uv" pip compile --quiet --no-header \
          --python "$VENV/bin/python" --index-url "$2" "$work/requirements.in" | grep -o '^[a-z]*==[0-9.]*' ;;
    pip) HOME=$home PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip install --quiet --dry-run --ignore-installed \
          --no-cache-dir --disable-pip-version-check --index-url "$2" --report "$home/report.json" app >/dev/null
         python3 -c 'import json, sys
for i in json.load(open(sys.argv[1]))["install"]:
    print(i["metadata"]["name"] + "==" + i["metadata"]["version"])' "$home/report.json" | sort ;;
  esac
}

# measure NAME CLIENT SYNTH|direct: median time and feed bytes per resolution over ROUNDS.
declare -A TIME BYTES
measure() {
  local times=() bytes=0 expected="" pins
  for _ in $(seq "$ROUNDS"); do
    local index=$FEED_URL
    [ "$3" != direct ] && { pipgate_for "$3"; index=$INDEX; }
    local before; before=$(feed_bytes)
    local start; start=$(now_ms)
    pins=$(resolve "$2" "$index" | tr '\n' ' ')
    times+=($(( $(now_ms) - start )))
    bytes=$(( $(feed_bytes) - before ))
    [ -z "$expected" ] && expected=$pins
    [ "$pins" = "$expected" ] || { echo "resolve.sh: $1 resolved differently: $pins vs $expected" >&2; exit 1; }
  done
  TIME[$1]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
  BYTES[$1]=$bytes
  printf '%-26s %7s ms  %12s feed bytes  (%s)\n' "$1" "${TIME[$1]}" "$bytes" "$pins"
}

measure uv-direct uv direct
measure uv-pipgate uv true
measure uv-pipgate-no-synthesis uv false
measure pip-direct pip direct
measure pip-pipgate pip true
measure pip-pipgate-no-synthesis pip false

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else 'inf')" "$1" "$2"; }
percent() { python3 -c "import sys; print(f'{100 * float(sys.argv[1]) / float(sys.argv[2]):.3f}%')" "$1" "$2"; }
echo
echo "ratios (lower is better for pipgate):"
for client in uv pip; do
  echo "  $client through pipgate / direct:               time $(ratio "${TIME[$client-pipgate]}" "${TIME[$client-direct]}"), feed bytes $(percent "${BYTES[$client-pipgate]}" "${BYTES[$client-direct]}")"
  echo "  $client through pipgate / without synthesis:    time $(ratio "${TIME[$client-pipgate]}" "${TIME[$client-pipgate-no-synthesis]}"), feed bytes $(percent "${BYTES[$client-pipgate]}" "${BYTES[$client-pipgate-no-synthesis]}")"
done
echo "  feed bytes per resolution through pipgate, of all the wheels: uv $(percent "${BYTES[uv-pipgate]}" "$total"), pip $(percent "${BYTES[pip-pipgate]}" "$total")"
