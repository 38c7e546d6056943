"""Writes the wheels and the PEP 691 pages of the resolution benchmark: a set that makes a
resolver backtrack, each wheel carrying MIB mebibytes of incompressible payload (compiled code
in a real wheel), with no PEP 658 metadata files (as Azure Artifacts serves them).

root/simple/{name}/index.json   pages listing the wheels with their sha256 and size
root/files/{wheel}              the wheels

app 3.0 and app 2.0 need lib>=2 with conflict==1.0, but lib 2.0 needs conflict==2.0: a resolver
looks at app 3.0 and 2.0, finds the conflict, and settles on app 1.0, lib 2.0, conflict 2.0.
"""
import hashlib
import json
import os
import sys
import zipfile

root = sys.argv[1]
mib = int(sys.argv[2]) if len(sys.argv) > 2 else 20

WHEELS = [
    ("app", "1.0", ["lib>=1"]),
    ("app", "2.0", ["lib>=2", "conflict==1.0"]),
    ("app", "3.0", ["lib>=2", "conflict==1.0"]),
    ("lib", "1.0", []),
    ("lib", "2.0", ["conflict==2.0"]),
    ("conflict", "1.0", []),
    ("conflict", "2.0", []),
]


def record_line(path, data):
    digest = hashlib.sha256(data).digest()
    import base64

    return f"{path},sha256={base64.urlsafe_b64encode(digest).rstrip(b'=').decode()},{len(data)}\n"


os.makedirs(f"{root}/files", exist_ok=True)
pages = {}
total = 0
for name, version, requires in WHEELS:
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires) + "\n"
    files = [
        (f"{name}/_native.so", os.urandom(mib << 20)),
        (f"{name}/__init__.py", f"VERSION = {version!r}\n".encode()),
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = "".join(record_line(p, d) for p, d in files) + f"{dist_info}/RECORD,,\n"
    filename = f"{name}-{version}-py3-none-any.whl"
    path = f"{root}/files/{filename}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files:
            z.writestr(p, d, compress_type=zipfile.ZIP_STORED if p.endswith(".so") else zipfile.ZIP_DEFLATED)
        z.writestr(f"{dist_info}/RECORD", record)
    data = open(path, "rb").read()
    total += len(data)
    pages.setdefault(name, []).append(
        {"filename": filename, "url": f"../../files/{filename}", "hashes": {"sha256": hashlib.sha256(data).hexdigest()}, "size": len(data)}
    )
for name, files in pages.items():
    os.makedirs(f"{root}/simple/{name}", exist_ok=True)
    with open(f"{root}/simple/{name}/index.json", "w") as f:
        json.dump({"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": []}, f)
print(total)
