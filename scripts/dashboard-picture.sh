#!/usr/bin/env bash
# Draws docs/dashboard.png: the dashboard's panels over a real Prometheus that scrapes a real
# pipgate while deploy/grafana/drive.py runs scripted traffic (an outage, a hold, a shadow)
# against two small indexes. Everything runs on 127.0.0.1; about 5 minutes.
#
#   scripts/dashboard-picture.sh      # PHASE_SECONDS=60 by default (four phases)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
install_debian prometheus curl
[ -x .e2e/venv/bin/python ] || bash scripts/e2e-setup.sh
.e2e/venv/bin/python -c 'import matplotlib' 2>/dev/null || .e2e/venv/bin/pip install --quiet matplotlib
build_pipgate
make_work picture
PIPGATE=$(port); PROM=$(port)

coproc DRIVE { exec .e2e/venv/bin/python deploy/grafana/drive.py; }
pids+=("$DRIVE_PID")
read -r CORP PYPI <&"${DRIVE[0]}"
cat > "$work/pipgate.toml" <<CONF
[server]
listen = "127.0.0.1:$PIPGATE"
[cache]
dir = "$work/cache"
index_ttl = "15s"
revalidate_interval = "5s"
[ownership]
health_interval = "5s"
shadow_recheck = "20s"
shadow_checks_per_second = 20
[admin]
token = "picture"
[[upstream]]
name = "corp"
url = "$CORP"
health_check = true
[[upstream]]
name = "pypi"
url = "$PYPI"
CONF
PIPGATE_LOG=warn target/release/pipgate serve --config "$work/pipgate.toml" &
pids+=($!)
cat > "$work/prometheus.yml" <<CONF
global: { scrape_interval: 2s }
scrape_configs:
  - job_name: pipgate
    static_configs: [{ targets: ["127.0.0.1:$PIPGATE"] }]
CONF
prometheus --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/prom" \
  --web.listen-address "127.0.0.1:$PROM" --log.level warn &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PIPGATE/healthz" >/dev/null && break; sleep 0.1; done
start=$(date +%s)
echo "dashboard-picture.sh: driving traffic for $((4 * ${PHASE_SECONDS:-60})) s"
echo "http://127.0.0.1:$PIPGATE" >&"${DRIVE[1]}"
wait "$DRIVE_PID" || true
sleep 4
end=$(date +%s)
mkdir -p docs
.e2e/venv/bin/python deploy/grafana/render.py "http://127.0.0.1:$PROM" "$start" "$end" docs/dashboard.png
echo "dashboard-picture.sh: wrote docs/dashboard.png"
