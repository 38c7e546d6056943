# Shared by the benchmark scripts (sourced, not run): tools, a work dir cleaned on exit,
# free loopback ports, and starting nginx and pipgate in the background.

need() { command -v "$1" >/dev/null 2>&1; }

# install_debian TOOL… : installs the Debian packages that provide missing tools.
install_debian() {
  local missing=()
  for tool in "$@"; do
    need "$tool" || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local packages=()
  for tool in "${missing[@]}"; do
    case "$tool" in nginx) packages+=(nginx-light) ;; *) packages+=("$tool") ;; esac
  done
  echo "$(basename "$0"): installing ${packages[*]} from Debian"
  apt-get update -qq && apt-get install -y -qq "${packages[@]}" >/dev/null
}

# scripts/test.sh's tool directory (uv, moto), which a bench may be run with. Not passed on to
# what the bench starts: pipgate reads every PIPGATE_* variable as a config overlay and refuses
# this one.
E2E=${PIPGATE_E2E_DIR:-.e2e}
unset PIPGATE_E2E_DIR

# need_e2e PATH…: stops unless each PATH in $E2E is executable (scripts/test.sh installs them).
need_e2e() {
  for tool in "$@"; do
    [ -x "$E2E/$tool" ] || { echo "$(basename "$0"): no $tool in $E2E: run scripts/test.sh first" >&2; exit 1; }
  done
}

build_pipgate() {
  echo "$(basename "$0"): building pipgate (release)"
  cargo build --release --quiet --bin pipgate
}

# make_work NAME: sets $work to a fresh directory that, with every started process, is removed
# on exit. nginx workers drop to an unprivileged user, so the directory is world-readable.
pids=()
make_work() {
  work=$(mktemp -d "/tmp/pipgate-$1.XXXXXX")
  chmod 755 "$work"
  trap cleanup EXIT
}
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_nginx CONF_BODY: runs nginx in the foreground (as a child) with the given http {…} body.
start_nginx() {
  mkdir -p "$work/nginx/logs"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
$1
}
CONF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  pids+=($!)
}

# static_index_server PORT: the nginx http {} lines of a static PEP 691 index on PORT, serving
# $work/root (pages at simple/{name}/index.json, files as they lie): the upstream of most
# benchmarks.
static_index_server() {
  cat <<CONF
  types { }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$1;
    root $work/root;
    location /simple/ { index index.json; default_type application/vnd.pypi.simple.v1+json; }
  }
CONF
}

# proxy_cache_server PORT UPSTREAM_PORT: the nginx http {} lines of nginx as a caching proxy of
# the upstream on UPSTREAM_PORT (the reference for a cache hit and for a cold pass-through).
proxy_cache_server() {
  mkdir -p "$work/nginx/proxy-cache"
  chmod 777 "$work/nginx/proxy-cache"
  cat <<CONF
  proxy_cache_path $work/nginx/proxy-cache levels=1:2 keys_zone=pages:16m max_size=4g inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$1;
    location / {
      proxy_pass http://127.0.0.1:$2;
      proxy_cache pages;
      proxy_cache_valid 200 1h;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
CONF
}

# run_pipgate NAME PORT [TOML…]: pipgate on 127.0.0.1:PORT with a fresh cache of its own
# ($work/cache-NAME) and the given config lines after [server] and [cache] (upstreams, more
# [cache.*] tables), logging warnings only (a log line per request would measure the logger).
# Sets $PIPGATE_PID and $BASE; waits for /healthz.
run_pipgate() {
  local name=$1 port=$2
  shift 2
  rm -rf "$work/cache-$name"
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\n[cache]\ndir = "%s"\nindex_ttl = "1h"\n' "$port" "$work/cache-$name"
    printf '%s\n' "$@"
  } > "$work/$name.toml"
  PIPGATE_LOG=warn target/release/pipgate serve --config "$work/$name.toml" &
  PIPGATE_PID=$!
  pids+=("$PIPGATE_PID")
  BASE="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -sf "$BASE/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): pipgate did not start" >&2
  return 1
}

# start_pipgate PORT UPSTREAM_URL: pipgate in front of one upstream.
start_pipgate() {
  run_pipgate pipgate "$1" '[[upstream]]' 'name = "static"' "url = \"$2\""
}
