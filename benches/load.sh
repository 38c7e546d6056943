#!/usr/bin/env bash
# Load benchmark: pipgate's cache hits against nginx serving the same bytes from disk, and
# against nginx serving them from its own proxy cache. Everything runs on 127.0.0.1.
#
#   benches/load.sh            # ~2 minutes; installs nginx-light and wrk from Debian if missing
#
# Prints, per case, requests/s (or MB/s) and p99 latency for each server, the ratio
# pipgate / nginx, and pipgate's peak RSS, including while 100 clients download a cold
# 100 MiB file at once.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
HUGE_MIB=${HUGE_MIB:-100}

source benches/common.sh
install_debian nginx wrk curl
build_pipgate
make_work load
STATIC=$(port); PROXY=$(port); PIPGATE=$(port)

python3 benches/load/make_fixtures.py "$work/root" "$HUGE_MIB"
mkdir -p "$work/root/direct"
chmod -R a+rX "$work/root"
start_nginx "
  types { }
  default_type application/octet-stream;
  # The static upstream: pages as JSON files, and the files they list.
  server {
    listen 127.0.0.1:$STATIC;
    root $work/root;
    location /simple/ { index index.json; default_type application/vnd.pypi.simple.v1+json; }
    location /direct/ { default_type application/vnd.pypi.simple.v1+json; }
    location /files/ { }
  }
$(proxy_cache_server "$PROXY" "$STATIC")"
start_pipgate "$PIPGATE" "http://127.0.0.1:$STATIC/simple/"
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$STATIC/simple/small/" >/dev/null 2>&1 && break
  sleep 0.1
done

peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$PIPGATE_PID/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PIPGATE_PID/status"; }
reset_peak() { echo 5 > "/proc/$PIPGATE_PID/clear_refs" 2>/dev/null || true; }

JSON='application/vnd.pypi.simple.v1+json'
HTML='text/html'

# 1. 100 clients at once on the cold 100 MiB file: one upstream download, bounded memory.
echo "load.sh: 100 concurrent downloads of a cold ${HUGE_MIB} MiB file"
reset_peak
start=$(date +%s.%N)
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PIPGATE/files/huge/huge-1.0.tar.gz" &
done
wait_failed=0
for job in $(jobs -p); do
  case " ${pids[*]} " in *" $job "*) continue ;; esac
  wait "$job" || wait_failed=$((wait_failed + 1))
done
cold_seconds=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
cold_rss=$(peak_rss_mib)
cold_after=$(rss_mib)

# Warm the pages, and copy pipgate's exact answers to the static root for the direct runs.
curl -sf -H "Accept: $JSON" "http://127.0.0.1:$PIPGATE/simple/small/" -o "$work/root/direct/small.json"
curl -sf -H "Accept: $JSON" "http://127.0.0.1:$PIPGATE/simple/big/" -o "$work/root/direct/big.json"
curl -sf -H "Accept: $HTML" "http://127.0.0.1:$PIPGATE/simple/big/" -o "$work/root/direct/big.html"
curl -sf -o /dev/null "http://127.0.0.1:$PROXY/direct/small.json"
curl -sf -o /dev/null "http://127.0.0.1:$PROXY/direct/big.json"
curl -sf -o /dev/null "http://127.0.0.1:$PROXY/direct/big.html"

# wrk prints "Requests/sec:", "Transfer/sec:" and, with --latency, a "99%" line.
run_wrk() { # url accept connections
  wrk -t2 -c"$3" -d"$DURATION" --latency -H "Accept: $2" -H "Accept-Encoding: identity" "$1" 2>/dev/null
}
summarize() { # wrk output -> "req/s MB/s p99"
  python3 -c '
import re, sys
text = sys.stdin.read()
if "Non-2xx" in text or "Socket errors" in text:
    sys.stderr.write("load.sh: errors in a run:\n" + text)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", text)
mbps = float(m.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[m.group(2)]
p = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
p99 = float(p.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p.group(2)]
print(f"{rps:.0f} {mbps:.1f} {p99:.2f}")'
}

printf '\n%-34s %14s %14s %14s %9s %9s\n' "case (${DURATION}, wrk -t2)" "pipgate" "nginx static" "nginx proxy" "vs static" "vs proxy"
compare() { # label unit pipgate-url direct-path accept connections
  local label=$1 unit=$2 ours=$3 direct=$4 accept=$5 conns=$6
  read -r p_rps p_mbps p_p99 < <(run_wrk "$ours" "$accept" "$conns" | summarize)
  read -r s_rps s_mbps s_p99 < <(run_wrk "http://127.0.0.1:$STATIC$direct" "$accept" "$conns" | summarize)
  read -r x_rps x_mbps x_p99 < <(run_wrk "http://127.0.0.1:$PROXY$direct" "$accept" "$conns" | summarize)
  if [ "$unit" = "MB/s" ]; then
    printf '%-34s %9s MB/s %9s MB/s %9s MB/s %8.2fx %8.2fx\n' "$label" "$p_mbps" "$s_mbps" "$x_mbps" \
      "$(python3 -c "print($p_mbps/$s_mbps)")" "$(python3 -c "print($p_mbps/$x_mbps)")"
  else
    printf '%-34s %11s r/s %11s r/s %11s r/s %8.2fx %8.2fx\n' "$label" "$p_rps" "$s_rps" "$x_rps" \
      "$(python3 -c "print($p_rps/$s_rps)")" "$(python3 -c "print($p_rps/$x_rps)")"
  fi
  printf '%-34s %11s ms  %11s ms  %11s ms   pipgate RSS now %s MiB\n' "  p99 latency" "$p_p99" "$s_p99" "$x_p99" "$(rss_mib)"
}

reset_peak
compare "hot small page (JSON)" "r/s" "http://127.0.0.1:$PIPGATE/simple/small/" "/direct/small.json" "$JSON" "$CONNECTIONS"
compare "hot 4,096-file page (JSON)" "r/s" "http://127.0.0.1:$PIPGATE/simple/big/" "/direct/big.json" "$JSON" "$CONNECTIONS"
compare "hot 4,096-file page (HTML)" "r/s" "http://127.0.0.1:$PIPGATE/simple/big/" "/direct/big.html" "$HTML" "$CONNECTIONS"
compare "hot ${HUGE_MIB} MiB file, 4 clients" "MB/s" "http://127.0.0.1:$PIPGATE/files/huge/huge-1.0.tar.gz" "/files/huge-1.0.tar.gz" "*/*" 4
hot_rss=$(peak_rss_mib)

echo
echo "cold ${HUGE_MIB} MiB file, 100 clients at once: ${cold_seconds}s, ${wait_failed} failed downloads, pipgate peak RSS ${cold_rss} MiB, ${cold_after} MiB after"
echo "pipgate peak RSS during the hot runs: ${hot_rss} MiB"
sleep 1
after=$(rss_mib)
sleep 10
echo "pipgate RSS after the benchmark: ${after} MiB, after 10 s idle: $(rss_mib) MiB (nginx workers: $(for pid in $(pgrep -P "$(cat "$work/nginx/nginx.pid")"); do awk '/VmRSS/ {print $2}' "/proc/$pid/status"; done | awk '{s += $1} END {printf "%.1f", s/1024}') MiB together)"
