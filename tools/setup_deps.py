"""Fetch the MicroPython-only dependencies that pip cannot install.

umqtt.simple is frozen into the ESP32 firmware (1.8 there). For the unix port we take
the upip-format sdist `micropython-umqtt.simple` from the package index that pip is
configured with, check it against a pinned sha256 and unpack its `umqtt/` package into
`.deps/` (git-ignored), which `tools/sim` and the tests put on MICROPYPATH.
"""
import hashlib
import io
import os
import re
import ssl
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPS = os.path.join(ROOT, ".deps")

PACKAGES = [
    # (index project name, file name, sha256, member prefix to keep)
    ("micropython-umqtt-simple", "micropython-umqtt.simple-1.3.4.tar.gz",
     "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f", "umqtt/"),
]


def index_url():
    """The index pip itself would use: PIP_INDEX_URL, pip's config, else pip's default."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                             capture_output=True, text=True)
        url = out.stdout.strip() if out.returncode == 0 else ""
    if not url:
        from pip._internal.models.index import PyPI
        url = PyPI.simple_url
    return url.rstrip("/")


def ssl_context():
    cafile = os.environ.get("PIP_CERT") or None
    return ssl.create_default_context(cafile=cafile)


def fetch(project, filename, sha256):
    ctx = ssl_context()
    page_url = "%s/%s/" % (index_url(), project)
    page = urllib.request.urlopen(page_url, context=ctx, timeout=60).read().decode()
    links = [m.group(1) for m in re.finditer(r'href="([^"]+)"', page)]
    matches = [link for link in links if link.split("#")[0].endswith("/" + filename)]
    if not matches:
        raise SystemExit("setup_deps: %s not listed by the package index" % filename)
    url = urllib.parse.urljoin(page_url, matches[0].split("#")[0])
    data = urllib.request.urlopen(url, context=ctx, timeout=120).read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise SystemExit("setup_deps: sha256 mismatch for %s: got %s" % (filename, got))
    return data


def unpack(data, keep_prefix):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not parts[1].startswith(keep_prefix) or not member.isfile():
                continue
            rel = os.path.normpath(parts[1])
            if rel.startswith(".."):
                continue
            dest = os.path.join(DEPS, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(tar.extractfile(member).read())


def main():
    os.makedirs(DEPS, exist_ok=True)
    for project, filename, sha256, prefix in PACKAGES:
        stamp = os.path.join(DEPS, filename + ".ok")
        if os.path.exists(stamp):
            continue
        unpack(fetch(project, filename, sha256), prefix)
        open(stamp, "w").close()
        print("setup_deps: %s unpacked into .deps/" % filename)


if __name__ == "__main__":
    main()
