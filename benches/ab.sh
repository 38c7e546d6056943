#!/usr/bin/env bash
# A/B of cache-hit throughput: this checkout's pipgate against the one at REV, both in front of
# one nginx static upstream, in alternating rounds (so drift of the machine hits both alike).
#
#   benches/ab.sh REV [ROUNDS]      # e.g. benches/ab.sh HEAD~3 8; ~2 min plus two release builds
#
# Prints each round and the mean ratio new/old for a small and a 4,096-file JSON page.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: benches/ab.sh REV [ROUNDS]}
rounds=${2:-8}
source benches/common.sh
install_debian nginx wrk curl
build_pipgate
make_work ab
old_tree="$work/old-tree"
git worktree add --quiet --detach "$old_tree" "$rev"
trap 'git worktree remove --force "$old_tree" 2>/dev/null || true; cleanup' EXIT
echo "ab.sh: building $rev (release)"
(cd "$old_tree" && CARGO_TARGET_DIR="${AB_OLD_TARGET:-/tmp/pipgate-ab-target}" cargo build --release --quiet --bin pipgate)
old_bin="${AB_OLD_TARGET:-/tmp/pipgate-ab-target}/release/pipgate"

STATIC=$(port); OLD=$(port); NEW=$(port)
python3 benches/load/make_fixtures.py "$work/root" 1 >/dev/null
chmod -R a+rX "$work/root"
start_nginx "
$(static_index_server "$STATIC")"
for which in OLD NEW; do
  p=${!which}
  bin=target/release/pipgate; [ "$which" = OLD ] && bin=$old_bin
  printf '[server]\nlisten = "127.0.0.1:%s"\n[cache]\ndir = "%s"\nindex_ttl = "1h"\n[[upstream]]\nname = "static"\nurl = "http://127.0.0.1:%s/simple/"\n' \
    "$p" "$work/cache-$which" "$STATIC" > "$work/$which.toml"
  PIPGATE_LOG=warn "$bin" serve --config "$work/$which.toml" &
  pids+=($!)
done
JSON='application/vnd.pypi.simple.v1+json'
for p in $OLD $NEW; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done
  for page in small big; do curl -sf -H "Accept: $JSON" "http://127.0.0.1:$p/simple/$page/" >/dev/null; done
done
results=$(mktemp)
for round in $(seq "$rounds"); do
  order="OLD NEW"; [ $((round % 2)) = 0 ] && order="NEW OLD"
  for which in $order; do
    p=${!which}
    for page in small big; do
      r=$(wrk -t2 -c64 -d2s -H "Accept: $JSON" -H 'Accept-Encoding: identity' "http://127.0.0.1:$p/simple/$page/" | awk '/Requests\/sec/ {print $2}')
      echo "round $round $which $page $r" | tee -a "$results"
    done
  done
done
python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, _, which, page, rps = line.split()
    runs.setdefault((which, page), []).append(float(rps))
for page in ("small", "big"):
    old, new = statistics.mean(runs[("OLD", page)]), statistics.mean(runs[("NEW", page)])
    print(f"{page:5} page: old {old:10.0f} r/s   new {new:10.0f} r/s   new/old {new / old:.3f}")
PY
