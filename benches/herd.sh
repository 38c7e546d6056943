#!/usr/bin/env bash
# Herd benchmark: N clients start together on one cold file that the upstream sends at a fixed
# rate, through pipgate and through nginx proxy_cache with proxy_cache_lock (one upstream
# request, the other clients wait for it), each with two client kinds: hey (a compiled load
# tool, Go) and benches/herd/reader.py (a thread per client that hashes what it reads).
#
#   benches/herd.sh            # ~3 minutes; installs nginx-light, hey and curl from Debian
#
# For every server, client kind and N (CLIENTS, default "100 500"): the cold wall time, time to
# first byte p50/p99, upstream GETs, the hot fan-out (the same herd on the now-cached file), the
# target ratio cold / (upstream transfer + hot fan-out), the server's peak RSS, and the kernel's
# TCP counters over the cold run (retransmits, RTO timeouts, receive-queue drops, accept-queue
# overflows), which say whether the limit was the server or the loopback TCP stack.
set -euo pipefail
cd "$(dirname "$0")/.."

MIB=${MIB:-20}
RATE_MIB=${RATE_MIB:-4}
CLIENTS=${CLIENTS:-"100 500"}
KINDS=${KINDS:-"hey reader"}
SERVERS=${SERVERS:-"pipgate nginx"}

source benches/common.sh
install_debian nginx hey curl
build_pipgate
make_work herd
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
STATIC=$(port); PROXY=$(port)

mkdir -p "$work/root/simple/herd" "$work/root/files"
sha=$(python3 - "$work/root" "$MIB" "$STATIC" <<'PY'
import hashlib, json, os, sys
root, mib, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = os.urandom(mib << 20)
with open(f"{root}/files/herd-1.0.tar.gz", "wb") as f:
    f.write(data)
digest = hashlib.sha256(data).hexdigest()
page = {"meta": {"api-version": "1.1"}, "name": "herd", "versions": ["1.0"],
        "files": [{"filename": "herd-1.0.tar.gz", "url": f"http://127.0.0.1:{port}/files/herd-1.0.tar.gz",
                   "hashes": {"sha256": digest}, "size": len(data)}]}
with open(f"{root}/simple/herd/index.json", "w") as f:
    json.dump(page, f)
print(digest)
PY
)
chmod -R a+rX "$work/root"
# The upstream sends each response at RATE_MIB MiB/s and logs every request, so the GETs
# reaching it can be counted. The proxy's lock holds every other client until the first
# response is cached (it does not stream to them), for as long as the transfer takes.
start_nginx "
  types { }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$STATIC backlog=4096;
    root $work/root;
    access_log $work/upstream.log;
    location /simple/ { index index.json; default_type application/vnd.pypi.simple.v1+json; }
    location /files/ { limit_rate ${RATE_MIB}m; }
  }
  proxy_cache_path $work/nginx/herd-cache levels=1:2 keys_zone=herd:16m max_size=4g inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$PROXY backlog=4096;
    location / {
      proxy_pass http://127.0.0.1:$STATIC;
      proxy_cache herd;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10m;
      proxy_cache_lock_age 10m;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
mkdir -p "$work/nginx/herd-cache" && chmod 777 "$work/nginx/herd-cache"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$STATIC/simple/herd/" >/dev/null 2>&1 && break; sleep 0.1; done
# The reference: one client alone, straight from the upstream.
transfer=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$STATIC/files/herd-1.0.tar.gz")

# tcp_counters: "RetransSegs TCPTimeouts TCPRcvQDrop ListenOverflows" now.
tcp_counters() {
  python3 - <<'PY'
def table(path):
    lines = open(path).read().split("\n")
    values = {}
    for head, body in zip(lines[::2], lines[1::2]):
        prefix, names = head.split(":", 1)
        for name, value in zip(names.split(), body.split(":", 1)[1].split()):
            values[f"{prefix}.{name}"] = int(value)
    return values
v = table("/proc/net/snmp") | table("/proc/net/netstat")
print(v["Tcp.RetransSegs"], v.get("TcpExt.TCPTimeouts", 0), v.get("TcpExt.TCPRcvQDrop", 0), v.get("TcpExt.ListenOverflows", 0))
PY
}
upstream_gets() { grep -c "GET /files/herd-1.0.tar.gz" "$work/upstream.log" 2>/dev/null || true; }
# Peak RSS in MiB of the given pids (summed), since the last reset_peak. A pid that has gone
# counts nothing (and must not stop the script under pipefail).
peak_mib() {
  for pid in "$@"; do awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true; done |
    awk '{s += $1} END {print int(s / 1024)}'
}
reset_peak() { for pid in "$@"; do echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true; done; }
# nginx's worker processes, the ones that serve. Not every child: the cache loader exits about
# a minute after the start, and a run that had watched it stopped in the next row's peak_mib.
nginx_workers() { pgrep -P "$(cat "$work/nginx/nginx.pid")" -f 'worker process' | tr "\n" " " || true; }

# herd KIND URL N: runs N clients of KIND on URL; prints "wall ttfb_p50 ttfb_p99 failures".
herd() {
  local kind=$1 url=$2 n=$3
  if [ "$kind" = reader ]; then
    python3 benches/herd/reader.py "$url" "$n" "$sha"
  else
    local start csv
    start=$(date +%s.%N)
    csv=$(hey -n "$n" -c "$n" -t 120 -o csv "$url")
    python3 - "$start" "$(date +%s.%N)" "$csv" <<'PY'
import sys
start, end, csv = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rows = [line.split(",") for line in csv.splitlines()[1:] if line]
# response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
ttfb = sorted(float(r[1]) + float(r[3]) + float(r[4]) for r in rows)
failures = sum(1 for r in rows if r[6] != "200")
pick = lambda p: ttfb[min(len(ttfb) - 1, int(p * len(ttfb)))] * 1000 if ttfb else float("nan")
print(f"{end - start:.2f} {pick(0.5):.0f} {pick(0.99):.0f} {failures}")
PY
  fi
}

printf '\n%-8s %-7s %4s %8s %9s %9s %5s %8s %7s %6s %8s %8s %8s %9s\n' server client N "cold s" "ttfb p50" "ttfb p99" GETs "hot s" target "RSS" retrans timeouts rcvqdrop overflows
round=0
for n in $CLIENTS; do
  for kind in $KINDS; do
    for server in $SERVERS; do
      round=$((round + 1))
      if [ "$server" = pipgate ]; then
        run_pipgate "herd$round" "$(port)" '[[upstream]]' 'name = "static"' "url = \"http://127.0.0.1:$STATIC/simple/\""
        curl -sf -H 'Accept: application/vnd.pypi.simple.v1+json' "$BASE/simple/herd/" >/dev/null
        url="$BASE/files/herd/herd-1.0.tar.gz"
        watched=("$PIPGATE_PID")
      else
        # A new cache key per round: every nginx round starts cold too.
        url="http://127.0.0.1:$PROXY/files/herd-1.0.tar.gz?round=$round"
        read -ra watched <<< "$(nginx_workers)"
      fi
      gets_before=$(upstream_gets)
      read -r r0 t0 q0 o0 < <(tcp_counters)
      reset_peak "${watched[@]}"
      read -r cold p50 p99 failed < <(herd "$kind" "$url" "$n")
      read -r r1 t1 q1 o1 < <(tcp_counters)
      rss=$(peak_mib "${watched[@]}")
      gets=$(( $(upstream_gets) - gets_before ))
      read -r hot _ _ hot_failed < <(herd "$kind" "$url" "$n")
      target=$(python3 -c "print(f'{$cold / ($transfer + $hot):.2f}')")
      printf '%-8s %-7s %4s %8s %9s %9s %5s %8s %6sx %4sMiB %8s %8s %8s %9s' \
        "$server" "$kind" "$n" "$cold" "${p50}ms" "${p99}ms" "$gets" "$hot" "$target" "$rss" \
        $((r1 - r0)) $((t1 - t0)) $((q1 - q0)) $((o1 - o0))
      [ "$failed$hot_failed" = 00 ] && echo || echo "   ($failed cold, $hot_failed hot downloads failed)"
      if [ "$server" = pipgate ]; then kill "$PIPGATE_PID"; wait "$PIPGATE_PID" 2>/dev/null || true; fi
    done
  done
done
if [ -s "$work/nginx/logs/error.log" ]; then
  echo "nginx's error log:"
  sort "$work/nginx/logs/error.log" | cut -c21- | sort | uniq -c | sort -rn | head -5
fi
echo
echo "upstream: ${MIB} MiB at ${RATE_MIB} MiB/s, ${transfer}s for one client alone; target = cold / (${transfer}s + hot), goal <= 1.20x with 1 GET"
