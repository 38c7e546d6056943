"""A herd of simple clients: N threads that start together, each downloading one URL over its
own connection, hashing what it reads. Prints one line: wall seconds, time to first body byte
p50 and p99 in ms, and failed downloads (a wrong sha256 included; the first is told on stderr).

    python3 reader.py URL N SHA256
"""
import hashlib
import http.client
import sys
import threading
import time
import urllib.parse

url, clients, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parts = urllib.parse.urlsplit(url)
barrier = threading.Barrier(clients + 1)
ttfb, failures = [], []
lock = threading.Lock()


def read_one():
    barrier.wait()
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        # With the query: nginx's rounds differ only by it (a new cache key, a cold cache).
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        digest = hashlib.sha256()
        first = response.read(1)
        first_at = time.monotonic() - started
        digest.update(first)
        while True:
            chunk = response.read(256 * 1024)
            if not chunk:
                break
            digest.update(chunk)
        ok = response.status == 200 and digest.hexdigest() == want
        with lock:
            ttfb.append(first_at)
            if not ok:
                failures.append(f"status {response.status}, sha256 {digest.hexdigest()[:12]}")
    except Exception as error:  # a failed download is counted, not fatal
        with lock:
            failures.append(repr(error))


threads = [threading.Thread(target=read_one) for _ in range(clients)]
for thread in threads:
    thread.start()
barrier.wait()
started = time.monotonic()
for thread in threads:
    thread.join()
wall = time.monotonic() - started
ttfb.sort()


def percentile(p):
    return ttfb[min(len(ttfb) - 1, int(p * len(ttfb)))] if ttfb else float("nan")


if failures:
    print(f"reader.py: {len(failures)} failed, the first: {failures[0]}", file=sys.stderr)
print(f"{wall:.2f} {percentile(0.5) * 1000:.0f} {percentile(0.99) * 1000:.0f} {len(failures)}")
