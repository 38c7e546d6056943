#!/usr/bin/env bash
# Cold-page benchmark: the first request for a project whose page lists FILES files (PyPI-like
# JSON entries), upstream on loopback (nginx serving static JSON), through pipgate against the
# same request through nginx proxy_cache (which passes the upstream's bytes through) and
# straight to the upstream. Each project is asked for once per server, so every answer is cold.
#
#   benches/cold.sh        # ~1 minute; installs nginx-light and curl from Debian if missing
#
# Prints the median and p90 of time_total for each, the ratios, pipgate's split of its time
# (the medians of its `Server-Timing`: asking the upstream, parse, render, gzip) and its
# RSS after. Digests are real sha256 values: patterned ones compress, and so cost, far less.
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
import hashlib, json, os, sys
root, files, projects = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for p in range(projects):
    name = f"cold{p}"
    entries = []
    for i in range(files):
        version, kind = divmod(i, 8)
        filename = (f"{name}-1.{version}.0.tar.gz" if kind == 0 else
                    f"{name}-1.{version}.0-cp3{kind}-cp3{kind}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
        digest = hashlib.sha256(f"{p}-{i}".encode()).hexdigest()
        metadata = hashlib.sha256(f"{p}-{i}-metadata".encode()).hexdigest()
        entries.append({"filename": filename, "url": f"https://files.example/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}",
                        "hashes": {"sha256": digest}, "requires-python": ">=3.8", "core-metadata": {"sha256": metadata},
                        "data-dist-info-metadata": {"sha256": metadata},
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
# pipgate's answers carry their split (Server-Timing): total, upstream, parse, render, gzip.
split="$work/split"
for p in $(seq 0 $((PROJECTS - 1))); do
  curl -s -o /dev/null -H "Accept: $JSON" -H 'Accept-Encoding: gzip' \
    -w '%{time_total} %header{server-timing}\n' "http://127.0.0.1:$PIPGATE/simple/cold$p/"
  sleep "$PAUSE"
done | sed 's/[a-z]*;dur=//g; s/,//g' | awk '{printf "%.2f %s %s %s %s\n", $1 * 1000, $2, $3, $4, $5}' >"$split"
median_of() { awk -v c="$1" '{print $c}' "$split" | stats | cut -d' ' -f1; }
read -r pg pg90 <<<"$(awk '{print $1}' "$split" | stats)"
rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PIPGATE_PID/status")
printf '%-36s median %8s ms   p90 %8s ms\n' "upstream (nginx static), direct" "$up" "$up90" \
  "nginx proxy_cache, cold" "$px" "$px90" "pipgate, cold" "$pg" "$pg90"
python3 -c "import sys; a, b, c = map(float, sys.argv[1:]); print(f'pipgate / nginx proxy_cache: {c / b:.2f}x, pipgate - upstream transfer: {c - a:.1f} ms')" "$up" "$px" "$pg"
echo "pipgate split (medians, Server-Timing): upstream $(median_of 2) ms, parse $(median_of 3) ms, render $(median_of 4) ms, gzip $(median_of 5) ms"
cached=$(curl -s "http://127.0.0.1:$PIPGATE/metrics" | awk '/^pipgate_cache_bytes\{cache="index"\}/ {printf "%.1f", $2 / 1048576}')
sleep 10
echo "pipgate RSS after: $rss MiB, after 10 s idle: $(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PIPGATE_PID/status") MiB; the page cache counts $cached MiB (cap 256 MiB)"
