"""The old_rootvg rule: the clone's first-boot VG rename, checked with a fake lvm under a real sh. For real, a clone
booted with its source attached, it is checked in tests/test_bootnext.py (the host's VG renamed old_rootvg, with its
UUID, and the clone's own renamed rootvg): the helpers below serve it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from imgclone.check import boottest
from imgclone.guest.appliance import Appliance
from imgclone.phases.oldvg import dm_name, final_root_names, host_vg_names, lvm_uuid, script_text
from tests.fakes import FakeRunner, fail

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
