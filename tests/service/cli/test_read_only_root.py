"""The service as its container runs it (k8s/base, docker-compose.yml): a read-only root
filesystem, a non-root user, and only the packs dir and /tmp writable. A real
`mplmm serve` of the default bundle runs in a private mount namespace, chrooted into a
read-only bind of this machine's root; it loads, answers, takes a pack upload into the
packs dir, and drains on SIGTERM (issue 13, item 5)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from service_helpers import REPO, edited_manifest, free_port, wait_served

UID = 10001  # the image's user (Dockerfile, k8s securityContext)
TOKEN = "read-only-token"

# $1 the new root, $2 the packs dir, $3 the repository; the rest is the command. /root
# holds this machine's Python (mode 700 there): a tmpfs with only its pyenv, read-only,
# lets the user reach it, as /opt/python is reachable in the image. A repository under
# /tmp (a CI clone) is bound back, read-only, under the new /tmp.
SCRIPT = r"""
root=$1; packs=$2; repo=$3; shift 3
mount --bind / "$root"
mount -o remount,bind,ro "$root"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777,size=1g tmpfs "$root/tmp"
mkdir "$root/tmp/packs"
mount --bind "$packs" "$root/tmp/packs"
case "$repo" in /tmp/*)
    mkdir -p "$root$repo"
    mount --bind "$repo" "$root$repo"
    mount -o remount,bind,ro "$root$repo";;
esac
mount -t tmpfs -o mode=755,size=1m tmpfs "$root/root"
mkdir "$root/root/.pyenv"
mount --bind /root/.pyenv "$root/root/.pyenv"
mount -o remount,bind,ro "$root/root/.pyenv"
cd /
exec chroot --userspec=10001:10001 "$root" "$@"
"""


@pytest.mark.slow
def test_serves_on_a_read_only_root_as_a_non_root_user(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("chroot")):
        pytest.skip("needs root, unshare and chroot to build the read-only root")
    if not (REPO / "bundle" / "encoders" / "text.json").is_file():
        pytest.fail("encoders not built: run `mplmm build-encoders` (scripts/test.sh does)")
    packs = tmp_path / "packs"
    shutil.copytree(REPO / "bundle" / "packs", packs)
    for path in [packs, *packs.rglob("*")]:
        os.chown(path, UID, UID)
    new_root = tmp_path / "root"
    new_root.mkdir()
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLMM_HOST": "127.0.0.1",
        "MPLMM_PORT": str(port),
        "MPLMM_BUNDLE_DIR": str(REPO / "bundle"),
        "MPLMM_PACKS_DIR": "/tmp/packs",
        "MPLMM_ADMIN_TOKEN": TOKEN,
        "MPLMM_LOG_LEVEL": "WARNING",
    }
    command = ["env", "-C", str(REPO), *(f"{k}={v}" for k, v in env.items()),
               sys.executable, "-m", "mplmm.cli", "serve"]  # fmt: skip
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", SCRIPT, "sh",
         str(new_root), str(packs), str(REPO), *command],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_served(proc, base)
        assert {p["name"] for p in ready["packs"]} == {"sentiment", "emotion"}
        r = httpx.post(f"{base}/predict", data={"text": "What a wonderful day"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["label"] in ("negative", "neutral", "positive")
        # An upload lands in the packs dir, the one writable place besides /tmp.
        current = sorted((packs / "sentiment").iterdir())[-1]
        files = {
            "manifest": ("manifest.json", edited_manifest(current, version="9.9.9"),
                         "application/json"),
            "weights": ("pack.safetensors", (current / "pack.safetensors").read_bytes(),
                        "application/octet-stream"),
        }  # fmt: skip
        put = httpx.put(f"{base}/packs/sentiment", files=files,
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)  # fmt: skip
        assert put.status_code == 200, put.text
        written = packs / "sentiment" / "9.9.9"
        assert (written / "pack.safetensors").is_file()
        assert written.stat().st_uid == UID  # written by the service's user
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "Read-only file system" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
