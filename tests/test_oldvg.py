"""The old_rootvg rule: the clone's first-boot VG rename, checked with a fake lvm under a real sh, and once for real
(make test-long): a clone booted with its source attached."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclone.archive.reader import read_manifest_doc
from imgclone.check import boottest
from imgclone.guest.appliance import Appliance
from imgclone.host import accel
from imgclone.phases.oldvg import dm_name, final_root_names, host_vg_names, lvm_uuid, script_text
from tests.conftest import FixtureCapture
from tests.fakes import FakeRunner, fail
from tests.treecmp import file_sha256

Run = Callable[..., subprocess.CompletedProcess[bytes]]

OWN = "AAAAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGGGG"
SOURCE = "zzzzzz-yyyy-xxxx-wwww-vvvv-uuuu-tttttt"

# answers `lvm vgs ... --select "vg_name=rootvg && vg_uuid!=OWN"` and `--select "vg_uuid=OWN"`; logs every call
FAKE_LVM = f"""#!/bin/sh
PATH=/usr/bin:/bin
echo "$*" >> "$LOG"
case "$*" in
  *"vg_name=rootvg && vg_uuid!={OWN}"*) [ -e "$STATE/source-renamed" ] || echo "  {SOURCE}" ;;
  *"vg_uuid={OWN}"*) if [ -e "$STATE/own-renamed" ]; then echo "  rootvg"; else echo "  altinst_rootvg"; fi ;;
  "vgrename {SOURCE} old_rootvg") touch "$STATE/source-renamed" ;;
  "vgrename {OWN} rootvg") touch "$STATE/own-renamed" ;;
esac
"""


def _run_script(tmp_path: Path) -> list[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "lvm").write_text(FAKE_LVM)
    (bindir / "lvm").chmod(0o755)
    text = script_text({OWN: "rootvg"}).replace(". /scripts/functions", "wait_for_udev() { :; }")
    text = text.replace(">/dev/console", "")
    script = tmp_path / "imgclone-vgname"
    script.write_text(text)
    # PATH holds only lvm: a klibc initramfs has no tr, sed or awk, so the script may use shell builtins only
    env = {"PATH": str(bindir), "LOG": str(tmp_path / "log"), "STATE": str(tmp_path)}
    r = subprocess.run(["/bin/sh", str(script)], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return (tmp_path / "log").read_text().splitlines()


def test_first_boot_renames_source_then_own(tmp_path: Path) -> None:
    calls = _run_script(tmp_path)
    renames = [c for c in calls if c.startswith(("vgrename", "vgchange"))]
    assert renames == [f"vgrename {SOURCE} old_rootvg", "vgchange --setautoactivation n old_rootvg",
                       f"vgrename {OWN} rootvg"]  # fmt: skip


def test_second_boot_changes_nothing(tmp_path: Path) -> None:
    _run_script(tmp_path)
    (tmp_path / "log").unlink()
    calls = _run_script(tmp_path)
    assert not [c for c in calls if c.startswith(("vgrename", "vgchange"))]


def test_script_is_valid_sh_and_answers_prereqs(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text(script_text({OWN: "rootvg"}))
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    r = subprocess.run(["sh", str(script), "prereqs"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == ""


def test_grub_cfg_gets_final_names() -> None:
    cfg = ("linux /vmlinuz root=/dev/mapper/altinst_rootvg-root ro quiet\n"
           "linux /vmlinuz root=/dev/mapper/altinst_my--vg-root ro resume=/dev/altinst_rootvg/swap\n"
           "root=/dev/mapper/altinst_rootvg--x-y\n")  # fmt: skip
    out = final_root_names(cfg, {"altinst_rootvg": "rootvg", "altinst_my-vg": "my-vg"})
    assert "root=/dev/mapper/rootvg-root ro quiet" in out
    assert "root=/dev/mapper/my--vg-root" in out and "resume=/dev/rootvg/swap" in out
    assert "/dev/mapper/altinst_rootvg--x-y" in out, "VG altinst_rootvg-x (dm: altinst_rootvg--x) is another VG"


def test_uuid_and_dm_names() -> None:
    assert lvm_uuid("AAAAAABBBBCCCCDDDDEEEEFFFFGGGGGG") == OWN
    assert lvm_uuid(OWN) == OWN
    assert dm_name("my-vg", "lv-1") == "my--vg-lv--1"


def test_host_vg_names() -> None:
    run = FakeRunner({("vgs",): '{"report": [{"vg": [{"vg_name": "rootvg"}, {"vg_name": "data"}]}]}'})
    assert host_vg_names(run) == {"rootvg", "data"}
    assert host_vg_names(FakeRunner({("vgs",): fail(5, "no lvm")})) == set()


# -- for real: the BIOS fixture's clone boots next to the fixture --------------------------------------------------
def _vgs(disk: Path) -> dict[str, str]:
    """{VG name: uuid} of one disk, read-only (one disk at a time: two VGs of one name would hide each other)."""
    g = Appliance()
    g.add_drive(str(disk), readonly=True, format="qcow2")
    with g:
        return {str(v["vg_name"]): lvm_uuid(str(v["vg_uuid"])) for v in g.vgs_full()}


def _boot_until_poweroff(argv: list[str], serial: Path, timeout: float) -> tuple[str, float]:
    """QEMU until the marker unit has powered the guest off by itself (the serial log, seconds): boot-test kills QEMU
    at the marker, and with cache=unsafe the guest's last writes (the first boot's VG renames) may not reach the
    overlays. Here the guest's flushes count and QEMU ends on its own."""
    argv = [a.replace("cache=unsafe", "cache=writeback") for a in argv]
    t0 = time.monotonic()
    with open(serial.with_suffix(".err"), "wb") as err:
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            rc = qemu.wait(timeout)
        finally:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait()
    assert rc == 0, serial.with_suffix(".err").read_text()[-2000:]
    return boottest.plain_text(serial.read_bytes().decode("utf-8", "replace")), time.monotonic() - t0


def _install_marker(overlay: Path) -> None:
    """boot-test's report-and-power-off unit, in the clone's root. (boot-test itself cannot prepare this clone: its
    fstab names /dev/mapper/rootvg-root, which exists only once the first boot has renamed altinst_rootvg.)"""
    g = Appliance()
    g.add_drive(str(overlay), readonly=False, format="qcow2")
    with g:
        g.vg_activate_all(True)
        g.mount("/dev/altinst_rootvg/root", "/")
        boottest.install_unit(g, str(overlay))
        g.umount_all()


@pytest.mark.integration
@pytest.mark.long  # a clone, an initramfs made under TCG and a boot: `make test-long`, not in CI's make test
def test_clone_beside_its_source_renames_the_source_old_on_first_boot(
    tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch, bios_capture: FixtureCapture
) -> None:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive, _, _ = bios_capture
    (src_vg,) = read_manifest_doc(archive)["layout"]["vgs"]
    clone = tmp_path / "clone.qcow2"
    t0 = time.monotonic()
    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "--beside-source", "--no-progress", "--json")
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    actions = json.loads(r.stdout)["phase3"]["actions"]
    assert any(a.startswith("kept volume group altinst_rootvg: on its first boot") for a in actions), actions
    cloned = time.monotonic() - t0
    # both disks on throw-away overlays (the cached fixture is never written); the marker unit in the clone's only
    on_clone, on_source = tmp_path / "clone-boot.qcow2", tmp_path / "source-boot.qcow2"
    boottest.create_overlay(str(clone), "qcow2", on_clone)
    boottest.create_overlay(str(source), "qcow2", on_source)
    _install_marker(on_clone)
    serial = tmp_path / "serial.log"
    argv = boottest.qemu_argv(accel.choose(), on_clone, serial, None, [on_source])  # the clone is the boot disk
    text, seconds = _boot_until_poweroff(argv, serial, 900)
    assert boottest.scan_log(text, None).marker_line, boottest.log_tail(text)
    # the initramfs script said what it did, on the serial console
    assert f"imgclone: volume group rootvg ({src_vg['uuid']}) renamed old_rootvg" in text, boottest.log_tail(text)
    assert "imgclone: volume group altinst_rootvg renamed rootvg" in text
    assert _vgs(on_source) == {"old_rootvg": src_vg["uuid"]}
    (own,) = _vgs(on_clone).items()
    assert own[0] == "rootvg" and own[1] != src_vg["uuid"], own
    assert file_sha256(source) == before, "the source fixture was modified"
    print(f"\nclone (all phases) {cloned:.0f} s, boot to its poweroff {seconds:.0f} s")
