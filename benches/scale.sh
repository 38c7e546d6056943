#!/usr/bin/env bash
# Scale benchmark: how pipgate's cost grows with the work it holds, each figure beside a
# reference measured in the same run.
#
#   benches/scale.sh           # ~3 minutes; installs nginx-light, wrk and curl from Debian
#
# 1. Working set: PROJECTS (10,000) distinct small projects cached, hot requests spread at
#    random over all of them (wrk with a Lua script), against nginx serving the same pages as
#    static files; pipgate's RSS with them all cached.
# 2. Startup: pipgate started on a disk cache holding FILES (100,000) files, against an empty
#    one: time until /healthz answers, until the file cache is indexed, and RSS after.
# 3. Page size: one project of 32, 128, 512, 2,048 and 8,000 files, cold (first request) and
#    hot (wrk), against nginx serving the page pipgate rendered.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECTS=${PROJECTS:-10000}
FILES=${FILES:-100000}
DURATION=${DURATION:-5s}

source benches/common.sh
install_debian nginx wrk curl
build_pipgate
make_work scale
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
STATIC=$(port)
JSON='application/vnd.pypi.simple.v1+json'

python3 - "$work/root" "$PROJECTS" <<'PY'
import json, os, sys
root, projects = sys.argv[1], int(sys.argv[2])
def page(name, files):
    # Wheel names spell the project with underscores, never dashes.
    stem = name.replace("-", "_")
    entries = []
    for i in range(files):
        version, kind = divmod(i, 4)
        filename = (f"{stem}-1.{version}.0.tar.gz" if kind == 0 else
                    f"{stem}-1.{version}.0-cp31{kind}-cp31{kind}-manylinux_2_17_x86_64.whl")
        digest = f"{hash(name) & 0xffffffff:08x}{i:056x}"
        entries.append({"filename": filename, "url": f"https://files.example/{digest}/{filename}",
                        "hashes": {"sha256": digest}, "requires-python": ">=3.9", "size": 1000 + i})
    os.makedirs(f"{root}/simple/{name}", exist_ok=True)
    with open(f"{root}/simple/{name}/index.json", "w") as f:
        json.dump({"meta": {"api-version": "1.1"}, "name": name, "files": entries}, f)
for p in range(projects):
    page(f"p{p}", 4)
for files in (32, 128, 512, 2048, 8000):
    for copy in range(5):
        page(f"size{files}-{copy}", files)
PY
mkdir -p "$work/root/direct"
chmod -R a+rX "$work/root"
start_nginx "
  types { }
  default_type application/vnd.pypi.simple.v1+json;
  server {
    listen 127.0.0.1:$STATIC backlog=4096;
    root $work/root;
    location /simple/ { index index.json; }
  }"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$STATIC/simple/p0/" >/dev/null 2>&1 && break; sleep 0.1; done
upstream=('[[upstream]]' 'name = "static"' "url = \"http://127.0.0.1:$STATIC/simple/\"")
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
rps() { python3 -c 'import re, sys; print(round(float(re.search(r"Requests/sec:\s+([\d.]+)", sys.stdin.read()).group(1))))'; }

echo "scale.sh: 1. $PROJECTS small projects"
run_pipgate working "$(port)" "${upstream[@]}"
# Every project once (cold), over one keep-alive connection.
python3 - "$BASE" "$PROJECTS" <<'PY'
import http.client, sys, time, urllib.parse
base, projects = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection(base.hostname, base.port)
started = time.monotonic()
for p in range(projects):
    connection.request("GET", f"/simple/p{p}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
print(f"scale.sh: {projects} cold pages in {time.monotonic() - started:.1f}s")
PY
# spread BASE SUFFIX: wrk requests spread at random over p0..p(PROJECTS-1), paths BASE/simple/pN/SUFFIX.
spread() {
  wrk -t2 -c64 -d"$DURATION" -s <(printf 'wrk.headers["Accept"] = "%s"\nrequest = function() return wrk.format("GET", "/simple/p" .. math.random(0, %d) .. "/%s") end\n' "$JSON" $((PROJECTS - 1)) "$2") "$1/" 2>/dev/null | rps
}
spread_pipgate=$(spread "$BASE" "")
spread_static=$(spread "http://127.0.0.1:$STATIC" "index.json")
one_pipgate=$(wrk -t2 -c64 -d"$DURATION" -H "Accept: $JSON" "$BASE/simple/p0/" 2>/dev/null | rps)
working_rss=$(rss_mib "$PIPGATE_PID")
kill "$PIPGATE_PID"; wait "$PIPGATE_PID" 2>/dev/null || true

echo "scale.sh: 2. startup on a disk cache of $FILES files"
startup() { # NAME FILES -> "healthz_ms indexed_ms rss"
  local name=$1 count=$2 dir="$work/cache-$1"
  rm -rf "$dir"
  python3 - "$dir" "$count" <<'PY'
import os, sys
dir, count = sys.argv[1], int(sys.argv[2])
for shard in range(256):
    os.makedirs(f"{dir}/files/{shard:02x}", exist_ok=True)
blob = b"x" * 2048
for i in range(count):
    sha = f"{i % 256:02x}{i:062x}"
    with open(f"{dir}/files/{sha[:2]}/{sha}", "wb") as f:
        f.write(blob)
PY
  local port; port=$(port)
  printf '[server]\nlisten = "127.0.0.1:%s"\n[cache]\ndir = "%s"\n%s\n%s\n%s\n' "$port" "$dir" "${upstream[@]}" > "$work/$name.toml"
  local start; start=$(date +%s%N)
  PIPGATE_LOG=info target/release/pipgate serve --config "$work/$name.toml" > "$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.005; done
  local up=$((($(date +%s%N) - start) / 1000000))
  until grep -q 'file cache indexed' "$work/$name.log"; do sleep 0.005; done
  local indexed=$((($(date +%s%N) - start) / 1000000))
  sleep 0.5
  echo "$up $indexed $(rss_mib "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
read -r empty_up empty_indexed empty_rss < <(startup empty 0)
read -r full_up full_indexed full_rss < <(startup full "$FILES")

echo "scale.sh: 3. page size"
run_pipgate sizes "$(port)" "${upstream[@]}"
sizes=()
for files in 32 128 512 2048 8000; do
  cold=$(for copy in 0 1 2 3 4; do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Accept: $JSON" "$BASE/simple/size$files-$copy/"
    sleep 0.2
  done | sort -n | sed -n 3p)
  curl -sf -H "Accept: $JSON" "$BASE/simple/size$files-0/" -o "$work/root/direct/size$files.json"
  chmod a+r "$work/root/direct/size$files.json"
  hot=$(wrk -t2 -c64 -d"$DURATION" -H "Accept: $JSON" -H "Accept-Encoding: identity" "$BASE/simple/size$files-0/" 2>/dev/null | rps)
  static=$(wrk -t2 -c64 -d"$DURATION" -H "Accept: $JSON" -H "Accept-Encoding: identity" "http://127.0.0.1:$STATIC/direct/size$files.json" 2>/dev/null | rps)
  sizes+=("$(printf '%-10s %10.1f ms %10s r/s %10s r/s %8.2fx' "$files" "$(python3 -c "print($cold*1000)")" "$hot" "$static" "$(python3 -c "print($hot/$static)")")")
done
sizes_rss=$(rss_mib "$PIPGATE_PID")

echo
echo "1. working set of $PROJECTS small projects (wrk -t2 -c64, $DURATION)"
printf '   spread over all: pipgate %s r/s, nginx static %s r/s (%sx); one project: pipgate %s r/s; pipgate RSS %s MiB\n' \
  "$spread_pipgate" "$spread_static" "$(python3 -c "print(f'{$spread_pipgate/$spread_static:.2f}')")" "$one_pipgate" "$working_rss"
echo "2. startup (start to /healthz, to the file cache indexed, RSS after)"
printf '   empty cache:      %6s ms %6s ms %6s MiB\n' "$empty_up" "$empty_indexed" "$empty_rss"
printf '   %6s files:    %6s ms %6s ms %6s MiB\n' "$FILES" "$full_up" "$full_indexed" "$full_rss"
echo "3. page size: cold median of 5, hot r/s against nginx static serving pipgate's page"
printf '   %-10s %13s %14s %14s %9s\n' files cold pipgate "nginx static" ratio
for line in "${sizes[@]}"; do echo "   $line"; done
echo "   pipgate RSS after: $sizes_rss MiB"
