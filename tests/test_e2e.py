"""The promise: a clone made by imgclone boots, customized as asked.

BIOS fixture → capture → restore -P1 (root and /var to XFS, smaller image) → archive verify --against
the clone (every file as the archive holds it, fstab rewritten by rule) → in a new process
-P23 with a local .deb (-l/-w), a host script through /alt_inst (-s), resolv.conf (-R), a
device reset with a serial console (-O -c) and a first-boot script (-x) → boot-test: the
first-boot line on the serial console shows the package, the script's file and resolv.conf.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.debs import build_deb
from tests.conftest import FixtureCapture
from tests.treecmp import file_sha256

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]

FIRSTBOOT = """\
#!/bin/sh
echo "IMGCLONE-FIRSTBOOT pkg=$(dpkg-query -W -f '${Version}' hello-imgclone) say=$(/usr/bin/hello-imgclone) \
s=$(cat /etc/imgclone-s-test) $(grep nameserver /etc/resolv.conf) mid=$(wc -c < /etc/machine-id)"
"""
HOST_SCRIPT = """\
#!/bin/sh
set -e
test -d "$ALT_INST/etc" && test -d "$ALT_INST/var/lib"   # the clone's /var (its own XFS LV) is mounted under it
echo "written by -s" > "$ALT_INST/etc/imgclone-s-test"
"""


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_bios_clone_customized_and_converted_boots(tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch,
                                                    bios_capture: FixtureCapture) -> None:  # fmt: skip
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive, _, _ = bios_capture
    clone = tmp_path / "clone.qcow2"
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    build_deb(pkgs, "hello-imgclone", "1.2-3", {"/usr/bin/hello-imgclone": "#!/bin/sh\necho hello-from-deb\n"})
    (pkgs / "resolv.conf").write_text("nameserver 192.0.2.53\n")

    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "--size", "4G", "--resize", "fit",
                 "--convert", "ext4=xfs", "-P1", "--no-progress", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert "phase3" not in json.loads(r.stdout)
    # after Phase 1, every file is the archive's (root and /var now XFS) but for restore's fstab rewrite
    r = imgclone("archive", "verify", str(archive), "--against", str(clone), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"], (report["summary"], report["notes"], r.stderr.decode()[-2000:])
    changed = {d["path"] for f in report["filesystems"] for d in f["differences"] if d["rule"]}
    assert "/etc/fstab" in changed and not any(p.startswith("/boot/grub") for p in changed), changed
    assert {f["mountpoint"]: f["type"] for f in report["filesystems"]}["/var"] == "xfs"

    r = imgclone("restore", "-d", str(clone), "-P23", "-l", str(pkgs), "-w", "hello-imgclone",
                 "-s", _script(tmp_path / "host.sh", HOST_SCRIPT), "--alt-inst", str(tmp_path / "alt_inst"),
                 "-R", str(pkgs / "resolv.conf"), "-O", "-c", "ttyS0,115200",
                 "-x", _script(tmp_path / "firstboot.sh", FIRSTBOOT), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    result = json.loads(r.stdout)
    assert "installed hello-imgclone 1.2-3 from hello-imgclone_1.2-3_all.deb" in result["phase2"]["actions"]
    assert "emptied /etc/machine-id" in result["phase2"]["actions"]
    assert "renamed volume group altinst_rootvg → rootvg" in result["phase3"]["actions"]
    assert "installed GRUB for BIOS (i386-pc) on the first target" in result["phase3"]["actions"]
    assert "the targets are images, nothing to set" in result["boot_order"][0]
    assert not (tmp_path / "alt_inst").exists(), "the -s mount point this run made is gone"

    # the boot also proves boot-test itself: BIOS found, --expect, --keep-log, and the image never written
    expect = "IMGCLONE-FIRSTBOOT pkg=1.2-3 say=hello-from-deb s=written by -s nameserver 192.0.2.53 mid=33"
    kept, unbooted = tmp_path / "serial.log", file_sha256(clone)
    r = imgclone("boot-test", str(clone), "--timeout", "600", "--expect", expect, "--keep-log", str(kept), "--json")
    boot = json.loads(r.stdout)
    assert r.returncode == 0 and boot["ok"] and boot["expect_found"], r.stderr.decode()
    assert boot["firmware"] == "bios" and boot["marker_line"].startswith("IMGCLONE-BOOT-OK ")
    log = kept.read_text(errors="replace")
    assert boot["log"] == str(kept) and "IMGCLONE-BOOT-OK" in log
    assert "Mounted var.mount" in log.replace("\x1b[0;1;39m", "").replace("\x1b[0m", ""), "the clone's XFS /var"
    assert file_sha256(clone) == unbooted, "boot-test changed the image"
    assert file_sha256(source) == before, "the source fixture was modified"
