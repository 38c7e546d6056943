#!/usr/bin/env bash
# Cold-page benchmark: the first request for a project whose page lists FILES files (PyPI-like
# JSON entries), upstream on loopback (nginx serving static JSON), through pipgate against the
# same request through nginx proxy_cache (which passes the upstream's bytes through) and
# straight to the upstream. Each project is asked for once per server, so every answer is cold.
#
#   benches/cold.sh        # ~1 minute; installs nginx-light and curl from Debian if missing
#
# Prints the median and p90 of time_total for each, the ratios, and pipgate's RSS after.
# FILES, PROJECTS and PAUSE (seconds between requests) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${FILES:-8000}
PROJECTS=${PROJECTS:-30}
# Between two cold requests, so each is measured alone (not beside the background work, disk
# write and level-6 compression, that the one before left).
PAUSE=${PAUSE:-0.3}

source benches/common.sh
install_debian nginx curl
build_pipgate
make_work cold
STATIC=$(port); PROXY=$(port); PIPGATE=$(port)
python3 - "$work/root" "$FILES" "$PROJECTS" <<'PY'
import json, os, sys
root, files, projects = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for p in range(projects):
    name = f"cold{p}"
    entries = []
    for i in range(files):
        version, kind = divmod(i, 8)
        filename = (f"{name}-1.{version}.0.tar.gz" if kind == 0 else
                    f"{name}-1.{version}.0-cp3{kind}-cp3{kind}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
        digest = f"{p:08x}{i:056x}"
        entries.append({"filename": filename, "url": f"https://files.example/packages/{digest[:2]}/{digest[2:4]}/{digest}/{filename}",
                        "hashes": {"sha256": digest}, "requires-python": ">=3.8", "core-metadata": {"sha256": digest},
                        "size": 1000 + i, "upload-time": "2024-01-01T00:00:00.000000Z", "yanked": False})
    os.makedirs(f"{root}/simple/{name}", exist_ok=True)
    with open(f"{root}/simple/{name}/index.json", "w") as f:
        json.dump({"meta": {"api-version": "1.1"}, "name": name, "files": entries, "versions": []}, f)
PY
chmod -R a+rX "$work/root"
start_nginx "
  types { }
  server {
    listen 127.0.0.1:$STATIC;
    root $work/root;
    location /simple/ { index index.json; default_type application/vnd.pypi.simple.v1+json; }
  }
$(proxy_cache_server "$PROXY" "$STATIC")"
start_pipgate "$PIPGATE" "http://127.0.0.1:$STATIC/simple/"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$STATIC/simple/cold0/" >/dev/null 2>&1 && break; sleep 0.1; done
size=$(curl -s "http://127.0.0.1:$STATIC/simple/cold0/" | wc -c)
echo "cold.sh: $PROJECTS projects of $FILES files, $((size / 1024)) KiB of JSON each"

JSON='application/vnd.pypi.simple.v1+json'
times() { # BASE: time_total in ms of one cold request per project, one per line
  for p in $(seq 0 $((PROJECTS - 1))); do
    curl -s -o /dev/null -H "Accept: $JSON" -H 'Accept-Encoding: gzip' -w '%{time_total}\n' "$1/simple/cold$p/"
    sleep "$PAUSE"
  done | awk '{printf "%.2f\n", $1 * 1000}'
}
stats() { sort -n | awk '{v[NR] = $1} END {printf "%s %s", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)]}'; }
read -r up up90 <<<"$(times "http://127.0.0.1:$STATIC" | stats)"
read -r px px90 <<<"$(times "http://127.0.0.1:$PROXY" | stats)"
read -r pg pg90 <<<"$(times "http://127.0.0.1:$PIPGATE" | stats)"
rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PIPGATE_PID/status")
printf '%-36s median %8s ms   p90 %8s ms\n' "upstream (nginx static), direct" "$up" "$up90" \
  "nginx proxy_cache, cold" "$px" "$px90" "pipgate, cold" "$pg" "$pg90"
python3 -c "import sys; a, b, c = map(float, sys.argv[1:]); print(f'pipgate / nginx proxy_cache: {c / b:.2f}x, pipgate - upstream transfer: {c - a:.1f} ms')" "$up" "$px" "$pg"
echo "pipgate RSS after: $rss MiB"
