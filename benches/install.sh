#!/usr/bin/env bash
# Install benchmark: a warm `uv pip install` through pipgate against the same install from a
# static file server (nginx serving a PEP 503 tree of the same wheels). Everything on 127.0.0.1.
#
#   benches/install.sh     # ~1 minute; installs nginx-light and hyperfine from Debian if missing
#
# uv runs with --no-cache, so every run fetches the index pages and wheels from the server:
# what is compared is the server, warm, not uv's own cache.
set -euo pipefail
cd "$(dirname "$0")/.."

source benches/common.sh
install_debian nginx hyperfine curl
bash scripts/e2e-setup.sh
build_pipgate
make_work install
STATIC=$(port); PIPGATE=$(port)

# The static tree: /simple/{project}/index.html linking /files/{wheel}#sha256=…
python3 - "$work/root" .e2e/wheels <<'PY'
import hashlib, os, re, shutil, sys
root, wheels = sys.argv[1], sys.argv[2]
os.makedirs(f"{root}/files", exist_ok=True)
projects = {}
for name in sorted(os.listdir(wheels)):
    if not name.endswith(".whl"):
        continue
    shutil.copy(f"{wheels}/{name}", f"{root}/files/{name}")
    digest = hashlib.sha256(open(f"{wheels}/{name}", "rb").read()).hexdigest()
    project = re.sub(r"[-_.]+", "-", name.split("-")[0]).lower()
    projects.setdefault(project, []).append((name, digest))
for project, files in projects.items():
    os.makedirs(f"{root}/simple/{project}", exist_ok=True)
    links = "".join(f'<a href="../../files/{n}#sha256={d}">{n}</a><br>\n' for n, d in files)
    with open(f"{root}/simple/{project}/index.html", "w") as f:
        f.write(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
print(" ".join(projects), file=open(f"{root}/projects", "w"))
PY
chmod -R a+rX "$work/root"
start_nginx "
  types { text/html html; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:$STATIC; root $work/root; index index.html; }"
start_pipgate "$PIPGATE" "http://127.0.0.1:$STATIC/simple/"

projects=$(cat "$work/root/projects")
uv=".e2e/venv/bin/uv"
install() { # index-url
  echo "rm -rf $work/target && $uv pip install --quiet --no-cache --python .e2e/venv/bin/python --target $work/target --index-url $1 $projects"
}
# Warm pipgate's caches once.
eval "$(install "http://127.0.0.1:$PIPGATE/simple/")"
echo "install.sh: uv pip install $projects (--no-cache), warm pipgate vs nginx static"
hyperfine --warmup 2 --runs 20 --export-json "$work/result.json" \
  -n "through pipgate (warm)" "$(install "http://127.0.0.1:$PIPGATE/simple/")" \
  -n "from nginx static" "$(install "http://127.0.0.1:$STATIC/simple/")"
python3 - "$work/result.json" <<'PY'
import json, sys
results = {r["command"]: r["mean"] for r in json.load(open(sys.argv[1]))["results"]}
ours, static = results["through pipgate (warm)"], results["from nginx static"]
print(f"\nwarm install through pipgate: {ours*1000:.1f} ms, from nginx static: {static*1000:.1f} ms, ratio {static/ours:.2f}x (>1 means pipgate is faster)")
PY
