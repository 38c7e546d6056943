"""Writes the static upstream's tree for the load benchmark.

root/simple/{small,big,huge}/index.json  PEP 691 pages (4, 4096 and 1 files)
root/files/...                           the files they list (only the ones the bench fetches are real)
"""
import hashlib
import json
import os
import sys

root = sys.argv[1]
huge_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def page(name, files):
    return {"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": []}


def entry(filename, data=None, digest=None, size=None):
    digest = digest or hashlib.sha256(data).hexdigest()
    return {
        "filename": filename,
        "url": f"../../files/{filename}",
        "hashes": {"sha256": digest},
        "requires-python": ">=3.8",
        "size": size if size is not None else len(data),
        "upload-time": "2024-01-01T00:00:00.000000Z",
        "yanked": False,
    }


os.makedirs(f"{root}/files", exist_ok=True)
for name, count in [("small", 4), ("big", 4096)]:
    files = []
    for i in range(count):
        version, kind = divmod(i, 8)
        filename = (
            f"{name}-1.{version}.0.tar.gz"
            if kind == 0
            else f"{name}-1.{version}.0-cp3{kind}-cp3{kind}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        )
        files.append(entry(filename, digest=hashlib.sha256(filename.encode()).hexdigest(), size=1000 + i))
    os.makedirs(f"{root}/simple/{name}", exist_ok=True)
    with open(f"{root}/simple/{name}/index.json", "w") as f:
        json.dump(page(name, files), f)

# The huge file: deterministic pseudo-random bytes, hashed while written.
digest = hashlib.sha256()
chunk = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
with open(f"{root}/files/huge-1.0.tar.gz", "wb") as f:
    for i in range(huge_mib):
        block = bytes([i % 251]) + chunk[1:]
        digest.update(block)
        f.write(block)
os.makedirs(f"{root}/simple/huge", exist_ok=True)
with open(f"{root}/simple/huge/index.json", "w") as f:
    json.dump(page("huge", [entry("huge-1.0.tar.gz", digest=digest.hexdigest(), size=huge_mib << 20)]), f)
