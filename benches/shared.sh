#!/usr/bin/env bash
# Shared-tier benchmark: a second replica's cold install (empty local cache, warm shared store)
# against the first replica's (both cold), through pipgate in front of a feed that sends at
# FEED_RATE per connection (a feed across a network), with moto's S3 server as the store. All
# on 127.0.0.1.
#
#   benches/shared.sh      # ~1 minute; needs scripts/test.sh's .e2e (uv, moto)
#
# Each round: replica A installs `app` (3 wheels of WHEEL_MIB MiB each, see
# benches/resolve/make_wheels.py) with uv --no-cache through a fresh cache; once A has written
# the files to the store, replica B, with a fresh cache of its own, installs the same. Prints
# the median times, their ratio, and what the feed sent for each.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
WHEEL_MIB=${WHEEL_MIB:-8}
FEED_RATE=${FEED_RATE:-20m}
source benches/common.sh
need_e2e venv/bin/uv storage/bin/moto_server
install_debian nginx curl
build_pipgate
make_work shared
FEED=$(port); STORE=$(port)
python3 benches/resolve/make_wheels.py "$work/root" "$WHEEL_MIB" >/dev/null
chmod -R a+rX "$work/root"
start_nginx "
  types { }
  default_type application/octet-stream;
  log_format sent '\$request_uri \$body_bytes_sent';
  server {
    listen 127.0.0.1:$FEED;
    root $work/root;
    access_log $work/feed.log sent;
    location /simple/ { index index.json; default_type application/vnd.pypi.simple.v1+json; }
    location /files/ { limit_rate $FEED_RATE; }
  }"
"$E2E/storage/bin/moto_server" -H 127.0.0.1 -p "$STORE" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s "http://127.0.0.1:$STORE/" >/dev/null 2>&1 && break; sleep 0.1; done
"$E2E/storage/bin/python" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$STORE', aws_access_key_id='k', aws_secret_access_key='s', region_name='us-east-1').create_bucket(Bucket='bench')"
echo k > "$work/key-id"; echo s > "$work/secret"

feed_file_bytes() { awk '$1 ~ /^\/files\// {s += $2} END {print s + 0}' "$work/feed.log" 2>/dev/null || echo 0; }
now_ms() { date +%s%3N; }

replica() { # NAME PREFIX: a pipgate with a fresh cache on the shared store; sets $INDEX, $BASE
  run_pipgate "$1" "$(port)" '[cache.shared]' 'kind = "s3"' 'container = "bench"' \
    "url = \"http://127.0.0.1:$STORE\"" 'region = "us-east-1"' "prefix = \"$2\"" \
    "access_key_id_file = \"$work/key-id\"" "secret_access_key_file = \"$work/secret\"" \
    '[[upstream]]' 'name = "feed"' "url = \"http://127.0.0.1:$FEED/simple/\""
  replica_pid=$PIPGATE_PID
  INDEX="$BASE/simple/"
}
install() { # INDEX: a cold uv install of app; prints milliseconds
  local start; start=$(now_ms)
  rm -rf "$work/target" "$work/uv-home"
  HOME=$work/uv-home UV_NO_CONFIG=1 "$E2E/venv/bin/uv" pip install --quiet --no-cache \
    --python "$E2E/venv/bin/python" --target "$work/target" --index-url "$1" app
  echo $(( $(now_ms) - start ))
}
writes_ok() { curl -s "$1/metrics" | awk -F' ' '/^pipgate_shared_store_writes_total\{result="ok"\}/ {print $2}'; }

first=(); second=(); first_bytes=0; second_bytes=0
for round in $(seq "$ROUNDS"); do
  replica a "round-$round"; a_pid=$replica_pid; a_base=$BASE
  before=$(feed_file_bytes); first+=("$(install "$INDEX")"); first_bytes=$(( $(feed_file_bytes) - before ))
  for _ in $(seq 300); do [ "$(writes_ok "$a_base")" = 3 ] && break; sleep 0.1; done
  [ "$(writes_ok "$a_base")" = 3 ] || { echo "shared.sh: replica A did not write the 3 wheels" >&2; exit 1; }
  kill "$a_pid"; wait "$a_pid" 2>/dev/null || true
  replica b "round-$round"; b_pid=$replica_pid
  before=$(feed_file_bytes); second+=("$(install "$INDEX")"); second_bytes=$(( $(feed_file_bytes) - before ))
  kill "$b_pid"; wait "$b_pid" 2>/dev/null || true
  echo "round $round: first replica ${first[-1]} ms, second replica ${second[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
a=$(median "${first[@]}"); b=$(median "${second[@]}")
echo
echo "cold install of 3 wheels of $WHEEL_MIB MiB, feed at $FEED_RATE per connection, median of $ROUNDS:"
echo "  first replica (empty store):            $a ms, $first_bytes file bytes from the feed"
echo "  second replica (store warm, disk cold): $b ms, $second_bytes file bytes from the feed"
python3 -c "import sys; print(f'  second / first: {int(sys.argv[2]) / int(sys.argv[1]):.2f}')" "$a" "$b"
