#!/usr/bin/env bash
# Cold-install benchmark: `uv pip install` of PACKAGES projects (no dependencies between them)
# through a pipgate that has never seen them, against the same install through nginx
# proxy_cache that has never seen them, both in front of one nginx static upstream. Each
# project's page lists VERSIONS versions (a wheel and an sdist each, real sha256 digests, PEP
# 658 metadata as PyPI offers it); uv fetches the newest wheel (WHEEL_KIB of incompressible
# payload) and its metadata. All on 127.0.0.1.
#
#   benches/cold_install.sh     # ~1 minute; needs scripts/test.sh's .e2e venv (uv)
#
# Each round starts a fresh pipgate (empty cache) and uses a fresh URL prefix on nginx (so its
# cache is cold too: the prefix is part of the cache key), and which of the two goes first
# alternates; uv runs with --no-cache. Prints the median wall time of ROUNDS installs for
# each, their ratio, the median of the rounds' own ratios (the two installs of a round run back
# to back, so they share the machine's phase, which moves both by up to 2x here), and the CPU
# each server used per install: pipgate's, and nginx's during its own install (proxy and
# upstream) and during pipgate's (upstream only), whose difference is the proxy's share.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-8}
PACKAGES=${PACKAGES:-20}
VERSIONS=${VERSIONS:-100}
WHEEL_KIB=${WHEEL_KIB:-256}
source benches/common.sh
need_e2e venv/bin/uv
VENV=$E2E/venv
install_debian nginx curl
build_pipgate
make_work cold-install
STATIC=$(port); PROXY=$(port)
python3 - "$work/root" "$PACKAGES" "$VERSIONS" "$WHEEL_KIB" <<'PY'
import hashlib, io, json, os, sys, zipfile
root, packages, versions, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(f"{root}/files", exist_ok=True)
names = []
for p in range(packages):
    name = f"coldpkg{p}"
    names.append(name)
    entries = []
    for v in range(versions):
        version = f"1.{v}"
        wheel = f"{name}-{version}-py3-none-any.whl"
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        if v == versions - 1:
            # The one uv installs: a real wheel, with its metadata file beside it.
            data = io.BytesIO()
            with zipfile.ZipFile(data, "w", zipfile.ZIP_STORED) as z:
                z.writestr(f"{name}/__init__.py", "")
                z.writestr(f"{name}/payload.bin", os.urandom(kib * 1024))
                info = f"{name}-{version}.dist-info"
                z.writestr(f"{info}/METADATA", metadata)
                z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
                z.writestr(f"{info}/RECORD", "")
            body = data.getvalue()
            open(f"{root}/files/{wheel}", "wb").write(body)
            open(f"{root}/files/{wheel}.metadata", "wb").write(metadata)
            digest, size = hashlib.sha256(body).hexdigest(), len(body)
        else:
            # Listed only, as the older versions on a real page are.
            digest, size = hashlib.sha256(f"{wheel}".encode()).hexdigest(), kib * 1024
        entries.append({"filename": wheel, "url": f"../../files/{wheel}", "hashes": {"sha256": digest},
                        "requires-python": ">=3.8", "core-metadata": {"sha256": hashlib.sha256(metadata).hexdigest()},
                        "size": size, "upload-time": "2024-01-01T00:00:00.000000Z", "yanked": False})
        sdist = f"{name}-{version}.tar.gz"
        entries.append({"filename": sdist, "url": f"../../files/{sdist}",
                        "hashes": {"sha256": hashlib.sha256(sdist.encode()).hexdigest()}, "requires-python": ">=3.8",
                        "size": kib * 1024, "upload-time": "2024-01-01T00:00:00.000000Z", "yanked": False})
    os.makedirs(f"{root}/simple/{name}", exist_ok=True)
    json.dump({"meta": {"api-version": "1.1"}, "name": name, "files": entries, "versions": []},
              open(f"{root}/simple/{name}/index.json", "w"))
print(" ".join(names), file=open(f"{root}/projects", "w"))
PY
chmod -R a+rX "$work/root"
mkdir -p "$work/nginx/proxy-cache" && chmod 777 "$work/nginx/proxy-cache"
start_nginx "
  log_format cache_status '\$upstream_cache_status \$request_uri';
$(static_index_server "$STATIC")
  proxy_cache_path $work/nginx/proxy-cache levels=1:2 keys_zone=pages:16m max_size=4g inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$PROXY;
    # /rN/… is the upstream's /…: a new N is a cold cache, since the key is the URI as asked.
    # Set, not left to the default: the default key left /rN/ out here, so every round after
    # the first was answered from a warm cache. The log below checks each round was cold.
    location ~ ^/r[0-9]+(/.*)\$ {
      proxy_pass http://127.0.0.1:$STATIC\$1;
      proxy_cache pages;
      proxy_cache_key \$request_uri;
      proxy_cache_valid 200 1h;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      access_log $work/nginx/logs/proxy.log cache_status;
    }
  }"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$STATIC/simple/coldpkg0/" >/dev/null 2>&1 && break; sleep 0.1; done

projects=$(cat "$work/root/projects")
install_ms() { # INDEX_URL: wall ms of one cold uv install
  rm -rf "$work/target"
  local start end
  start=$(date +%s%N)
  "$VENV/bin/uv" pip install --quiet --no-cache --python "$VENV/bin/python" --target "$work/target" \
    --index-url "$1" $projects
  end=$(date +%s%N)
  [ "$(ls "$work/target" | grep -c '^coldpkg[0-9]*$')" -eq "$PACKAGES" ] || { echo "cold_install.sh: not all installed" >&2; exit 1; }
  echo $(((end - start) / 1000000))
}
cpu_ms() { # PID...: CPU time (user and system) in ms the processes have used so far
  awk -v hz="$(getconf CLK_TCK)" '{t += $14 + $15} END {printf "%d", t * 1000 / hz}' \
    $(for pid in "$@"; do echo "/proc/$pid/stat"; done)
}
# nginx's workers (the upstream's and the proxy's: one nginx serves both).
nginx_workers=$(pgrep -P "${pids[-1]}" | tr '\n' ' ')
measure() { # WHO INDEX_URL: one install, its wall ms to $work/WHO.ms and the CPU ms pipgate and
  # nginx used meanwhile to $work/WHO.cpu
  local pipgate_before nginx_before
  pipgate_before=$(cpu_ms "$PIPGATE_PID"); nginx_before=$(cpu_ms $nginx_workers)
  install_ms "$2" >>"$work/$1.ms"
  echo "$(($(cpu_ms "$PIPGATE_PID") - pipgate_before)) $(($(cpu_ms $nginx_workers) - nginx_before))" >>"$work/$1.cpu"
}
echo "cold_install.sh: $PACKAGES projects of $VERSIONS versions, ${WHEEL_KIB} KiB wheels, $ROUNDS rounds"
: >"$work/pipgate.ms"; : >"$work/proxy.ms"; : >"$work/pipgate.cpu"; : >"$work/proxy.cpu"
for round in $(seq "$ROUNDS"); do
  port_now=$(port)
  run_pipgate "round$round" "$port_now" '[[upstream]]' 'name = "static"' "url = \"http://127.0.0.1:$STATIC/simple/\""
  # Which goes first alternates, so what the first install of a round pays (the client's own
  # start, the machine waking) falls on both alike.
  if [ $((round % 2)) -eq 1 ]; then
    measure pipgate "http://127.0.0.1:$port_now/simple/"
    measure proxy "http://127.0.0.1:$PROXY/r$round/simple/"
  else
    measure proxy "http://127.0.0.1:$PROXY/r$round/simple/"
    measure pipgate "http://127.0.0.1:$port_now/simple/"
  fi
  kill "$PIPGATE_PID"; wait "$PIPGATE_PID" 2>/dev/null || true
  if grep -q "^HIT /r$round/" "$work/nginx/logs/proxy.log"; then
    echo "cold_install.sh: round $round: nginx answered from its cache, so it was not cold" >&2
    exit 1
  fi
  echo "  round $round: pipgate $(tail -1 "$work/pipgate.ms") ms, nginx proxy_cache $(tail -1 "$work/proxy.ms") ms"
done
python3 - "$work" <<'PY'
import statistics, sys
work = sys.argv[1]
def rows(name):
    return [[int(v) for v in line.split()] for line in open(f"{work}/{name}")]
pipgate, proxy = [r[0] for r in rows("pipgate.ms")], [r[0] for r in rows("proxy.ms")]
a, b = statistics.median(pipgate), statistics.median(proxy)
rounds = statistics.median(p / q for p, q in zip(pipgate, proxy))
print(f"cold uv install, median: pipgate {a:.0f} ms, nginx proxy_cache {b:.0f} ms, pipgate / nginx {a / b:.2f}x; "
      f"median of the rounds' ratios {rounds:.2f}x")
pipgate_cpu, proxy_cpu = rows("pipgate.cpu"), rows("proxy.cpu")
mean = lambda values: sum(values) / len(values)
own, upstream_only = mean([r[0] for r in pipgate_cpu]), mean([r[1] for r in pipgate_cpu])
both = mean([r[1] for r in proxy_cpu])
print(f"CPU per install (mean, /proc ticks): pipgate {own:.0f} ms; nginx {both:.0f} ms as proxy and upstream, "
      f"{upstream_only:.0f} ms as pipgate's upstream, so about {both - upstream_only:.0f} ms as proxy")
PY
