#!/usr/bin/env python3
"""Scripted traffic through a running pipgate, for deploy/grafana/render.py's picture.

Starts two small simple-API indexes on 127.0.0.1 ("corp", private, and "pypi", public), prints
their URLs, waits for pipgate's URL on stdin, then drives four clients through four phases:
normal use; corp down (stale pages, fail-closed lookups for new names); corp back, with one
private project deleted there while PyPI has its name (a hold) and a private name newly
published on PyPI (a shadow); normal use again. Everything stays on loopback.
"""
import hashlib
import json
import os
import random
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PHASE_SECONDS = float(os.environ.get("PHASE_SECONDS", "60"))


class Index:
    def __init__(self, projects):
        self.projects = projects  # name -> [(filename, bytes)]
        self.down = False
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if index.down:
                    return self.answer(503, "text/plain", b"down")
                path = self.path.split("?")[0]
                if path == "/simple/":
                    body = json.dumps({"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in index.projects]})
                    return self.answer(200, "application/vnd.pypi.simple.v1+json", body.encode())
                if path.startswith("/files/"):
                    name = path[len("/files/"):]
                    for files in list(index.projects.values()):
                        for filename, data in files:
                            if filename == name:
                                return self.answer(200, "application/octet-stream", data)
                    return self.answer(404, "text/plain", b"no")
                name = path[len("/simple/"):].strip("/")
                files = index.projects.get(name)
                if files is None:
                    return self.answer(404, "text/plain", b"no")
                page = {"meta": {"api-version": "1.1"}, "name": name, "files": [
                    {"filename": f, "url": f"../../files/{f}", "hashes": {"sha256": hashlib.sha256(d).hexdigest()}, "size": len(d)}
                    for f, d in files]}
                self.answer(200, "application/vnd.pypi.simple.v1+json", json.dumps(page).encode())

            def answer(self, status, content_type, body):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple/"


def wheel(name, version, size):
    return (f"{name.replace('-', '_')}-{version}-py3-none-any.whl", random.randbytes(size))


def get(url, accept="application/vnd.pypi.simple.v1+json"):
    request = urllib.request.Request(url, headers={"Accept": accept, "Cache-Control": "max-age=0"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except Exception:
        return 0, b""


def main():
    random.seed(7)
    private = {f"acme-{i}": [wheel(f"acme-{i}", "1.0", 150_000 + 20_000 * i)] for i in range(8)}
    public = {f"pkg-{i}": [wheel(f"pkg-{i}", "2.0", 100_000 + 30_000 * i)] for i in range(12)}
    public["acme-5"] = [wheel("acme-5", "99.0", 50_000)]
    corp, pypi = Index(private), Index(public)
    print(corp.url(), pypi.url(), flush=True)
    pipgate = sys.stdin.readline().strip()

    names = list(private) + list(public)
    phase = {"n": 0}
    stop = time.time() + 4 * PHASE_SECONDS

    def client(seed):
        rng = random.Random(seed)
        fresh = 0
        while time.time() < stop:
            if phase["n"] == 1 and rng.random() < 0.2:
                fresh += 1
                get(f"{pipgate}/simple/pkg-new-{seed}-{fresh}/")
            name = rng.choice(names)
            status, body = get(f"{pipgate}/simple/{name}/")
            if status == 200:
                for f in json.loads(body)["files"]:
                    get(urllib.parse.urljoin(f"{pipgate}/simple/{name}/", f["url"]), accept="*/*")
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(PHASE_SECONDS)
    phase["n"], corp.down = 1, True
    time.sleep(PHASE_SECONDS)
    phase["n"], corp.down = 2, False
    del corp.projects["acme-5"]
    pypi.projects["acme-3"] = [wheel("acme-3", "99.0", 40_000)]
    time.sleep(PHASE_SECONDS)
    phase["n"] = 3
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
