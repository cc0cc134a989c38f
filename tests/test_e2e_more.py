"""More promises, end to end (capture → restore, all phases → boot-test), one per use case of docs/use-cases/:

- a UEFI system cloned into a raw VM image, GRUB at the ESP's removable path, booted with OVMF (boot-test finds
  the firmware by itself);
- an ext3 system upgraded to ext4 on the way (-T), restored onto a disk (a loop device), then customized (a
  package, -s, -R, -x) and made bootable, every phase on this host (--via host), booted (the boot also proves
  boot-test's --expect refusal);
- a volume group spread over two new images (each too small for it alone), booted with both attached.

After each clone, `imgclone archive verify --against` compares every file with the archive (one appliance).

Each test takes the archive of its fixture from a capture made once per run (conftest's bios_capture, shared with
test_e2e.py and others, uefi_capture, shared with test_bootnext.py, ext3_capture), works in tmp_path, and checks that
the fixture image is unchanged. Under TCG here each takes several minutes (restore 2-5 min, boot 1-2 min).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.debs import build_deb
from imgclone.guest.appliance import Appliance
from tests.conftest import FixtureCapture
from tests.treecmp import file_sha256

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]
GiB = 1024**3


def _ok(r: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    return dict(json.loads(r.stdout))


def _capture(captured: FixtureCapture) -> tuple[Path, str, Path]:
    """(fixture image, its sha256 before anything ran, the archive captured from it); the capture's run (--json)
    succeeded with its summary on stdout."""
    _ok(captured.run)
    return captured.source, captured.before, captured.archive


def _boot(imgclone: Run, *args: str) -> dict[str, Any]:
    boot = _ok(imgclone("boot-test", *args, "--timeout", "600", "--json"))
    assert boot["ok"] and boot["marker_line"].startswith("IMGCLONE-BOOT-OK "), boot["log_tail"]
    return boot


def _fidelity(imgclone: Run, archive: Path, *targets: Path, grub: bool = True) -> dict[str, Any]:
    """archive verify --against the clone (one read-only appliance): every file as the archive holds it, but for
    what imgclone's phases write (fstab, GRUB after Phase 3, initramfs), listed apart; returns the report."""
    r = imgclone("archive", "verify", str(archive), "--against", " ".join(map(str, targets)), "--json")
    report = dict(json.loads(r.stdout))
    errors = [d for f in report["filesystems"] for d in f["differences"] if not d["rule"]]
    assert r.returncode == 0 and report["ok"], (errors[:50], report["notes"], r.stderr.decode()[-2000:])
    assert report["mapping"] == "the journal"
    changed = {d["path"] for f in report["filesystems"] for d in f["differences"] if d["rule"]}
    assert "/etc/fstab" in changed and ("/boot/grub/grub.cfg" in changed) == grub, changed
    assert report["summary"]["compared"] > 1000, report["summary"]  # a whole Debian system was compared
    return report


def _image_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True)
    return dict(json.loads(out.stdout))


def test_uefi_clone_to_raw_image_boots(tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch,
                                      uefi_capture: FixtureCapture) -> None:  # fmt: skip
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive = _capture(uefi_capture)
    clone = tmp_path / "clone.raw"

    result = _ok(imgclone("restore", "-a", str(archive), "-d", str(clone), "--size", "3G", "--no-progress", "--json"))
    target = result["plan"]["target"]
    assert [d["table"] for d in target["disks"]] == ["gpt"]
    assert any("esp" in p["flags"] for p in target["partitions"])
    actions = result["phase3"]["actions"]
    assert "installed GRUB for UEFI at EFI/BOOT/BOOTX64.EFI" in actions
    assert not any("BIOS" in a for a in actions), "the source booted with UEFI only"
    assert "renamed volume group altinst_rootvg → rootvg" in actions
    info = _image_info(clone)
    assert (info["format"], info["virtual-size"]) == ("raw", 3 * GiB)

    _fidelity(imgclone, archive, clone)
    boot = _boot(imgclone, str(clone))  # no --uefi: boot-test finds that the image boots with UEFI only
    assert boot["firmware"] == "uefi"
    assert file_sha256(source) == before, "the source fixture was modified"


def _root_fs_and_fstab(partition: str) -> tuple[str, str]:
    """The filesystem type of the clone's root partition and its /etc/fstab, read on the host (blkid, debugfs)."""
    fstype = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", partition], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", partition], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    return fstype, fstab


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    """A 3 GiB loop device: the second disk of a host."""
    backing = tmp_path / "disk.raw"
    with open(backing, "wb") as f:
        f.truncate(3 * GiB)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    try:
        yield dev
    finally:
        subprocess.run(["partx", "-d", dev], capture_output=True, check=False)  # what parted told the kernel
        subprocess.run(["losetup", "-d", dev], check=False)


def test_ext3_upgraded_to_ext4_on_a_disk_via_host_boots(tmp_path: Path, imgclone: Run, disk: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        ext3_capture: FixtureCapture) -> None:  # fmt: skip
    """Every phase on this host (--via host), onto a disk (a loop device): the host's parted and mkfs, tar into
    /alt_inst; Phase 2's package with the clone's dpkg, resolv.conf, first-boot script and the -s script run
    on the host with the clone at /alt_inst; Phase 3's grub-install and update-grub, in a chroot of the clone."""
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive = _capture(ext3_capture)
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    build_deb(pkgs, "hello-imgclone", "1.2-3", {"/usr/bin/hello-imgclone": "#!/bin/sh\necho hello-from-deb\n"})
    (pkgs / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    script, firstboot = tmp_path / "host.sh", tmp_path / "firstboot.sh"
    script.write_text('#!/bin/sh\nset -e\ntest -x "$ALT_INST/usr/bin/hello-imgclone"\n'
                      'echo "$ALT_INST" > "$ALT_INST/etc/imgclone-s-test"\n')  # fmt: skip
    firstboot.write_text("#!/bin/sh\necho \"IMGCLONE-FIRSTBOOT say=$(/usr/bin/hello-imgclone) "
                         "s=$(cat /etc/imgclone-s-test) $(grep nameserver /etc/resolv.conf)\"\n")  # fmt: skip
    script.chmod(0o755)
    firstboot.chmod(0o755)

    r = imgclone("restore", "-a", str(archive), "-d", disk, "-T", "--via", "host", "-P1", "--no-progress", "--json")
    result = _ok(r)
    assert result["via"] == {"via": "host", "why": "--via host"}
    assert "/ becomes ext4: the target's initramfs must carry the ext4 driver" in r.stderr.decode()
    fs = {f["mountpoint"]: f for f in result["plan"]["target"]["filesystems"]}
    src = {f["mountpoint"]: f for f in result["plan"]["source"]["filesystems"]}
    assert (src["/"]["type"], fs["/"]["type"]) == ("ext3", "ext4")
    report = _fidelity(imgclone, archive, Path(disk), grub=False)
    assert {f["mountpoint"]: f["type"] for f in report["filesystems"]}["/"] == "ext4"
    fstype, fstab = _root_fs_and_fstab(f"{disk}p1")
    assert fstype == "ext4"
    root_line = next(line.split() for line in fstab.splitlines() if line.split()[1:2] == ["/"])
    assert root_line[2:4] == ["ext4", "errors=remount-ro"], fstab  # ext3's options all apply to ext4: kept
    assert root_line[0] == f"UUID={result['phase1']['uuids']['fs-root']}", fstab

    r = imgclone("restore", "-d", disk, "-P23", "--via", "host", "-l", str(pkgs), "-w", "hello-imgclone",
                 "-s", str(script), "-R", str(pkgs / "resolv.conf"), "-x", str(firstboot), "--json")  # fmt: skip
    result = _ok(r)
    assert result["via"] == {"via": "host", "why": "--via host"}
    assert any("hello-imgclone" in a for a in result["phase2"]["actions"]), result["phase2"]
    assert any(a.startswith(f"ran {script} with the clone at /alt_inst") for a in result["phase2"]["actions"])
    # Debian's ext4.ko mounts ext3 too, so the source's initramfs already carries it: Phase 3 keeps it
    assert not any("regenerated /boot/initrd" in a for a in result["phase3"]["actions"]), result["phase3"]
    assert "installed GRUB for BIOS (i386-pc) on the first target" in result["phase3"]["actions"]

    # one boot proves the clone boots and boot-test's --expect: the marker comes, the expected text never does, the
    # guest powers off after it (no waiting for the timeout) → exit 1, said in one report
    log = tmp_path / "serial.log"
    r = imgclone("boot-test", disk, "--expect", "THIS TEXT NEVER APPEARS", "--timeout", "600", "--keep-log", str(log))
    out = r.stdout.decode()
    assert r.returncode == 1, (out, r.stderr.decode()[-2000:])
    said = [line for line in log.read_text(errors="replace").splitlines() if "IMGCLONE-FIRSTBOOT" in line]
    assert any("say=hello-from-deb s=/alt_inst" in line and "nameserver 192.0.2.53" in line for line in said), said
    assert "FAILED" in out and "'IMGCLONE-BOOT-OK imgclone-fixture " in out and "not the expected text" in out
    assert "qemu exited (code 0)" in out
    tail = [line for line in r.stderr.decode().splitlines() if line.startswith("  | ")]
    assert 0 < len(tail) <= 30 and any("reboot: Power down" in line for line in tail), tail
    assert file_sha256(source) == before, "the source fixture was modified"


def _pv_use(a: Path, b: Path) -> dict[str, tuple[int, int]]:
    """PV name → (extents, extents allocated), both images attached read-only."""
    g = Appliance()
    for image in (a, b):
        g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        return {str(p["pv_name"]): (int(p["pv_pe_count"]), int(p["pv_pe_alloc_count"])) for p in g.pvs_full()}


def test_vg_across_two_disks_boots(tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch,
                                   bios_capture: FixtureCapture) -> None:  # fmt: skip
    """--size 1500M: /boot (256 MiB) and a 1.2 GiB PV on the first image cannot hold root (1.5 GiB) + var + swap,
    so the planner's second PV, the whole second image, takes the rest and root spans both disks."""
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive = _capture(bios_capture)  # shared with test_e2e.py
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"

    result = _ok(imgclone("restore", "-a", str(archive), "-d", f"{a} {b}", "--size", "1500M", "--no-progress",
                          "--json"))  # fmt: skip
    target = result["plan"]["target"]
    parts = {p["id"]: p for p in target["partitions"]}
    (vg,) = target["vgs"]
    assert [parts[pv]["disk"] for pv in vg["pvs"]] == ["disk-t0", "disk-t1"]
    root = next(lv for lv in target["lvs"] if lv["name"] == "alt_root")
    assert root["size"] > parts[vg["pvs"][0]]["size"], "root must not fit on the first PV alone"
    assert "renamed volume group altinst_rootvg → rootvg" in result["phase3"]["actions"]
    assert [_image_info(p)["virtual-size"] for p in (a, b)] == [1500 * 1024**2] * 2

    use = _pv_use(a, b)
    assert set(use) == {"/dev/sda2", "/dev/sdb1"}
    assert all(alloc > 0 for _, alloc in use.values()), use  # both disks hold extents
    # where LVM put root (it fills the larger free area first: the second disk) matters less than that root
    # has more extents than either PV holds, so it needs both disks
    assert root["size"] > max(count for count, _ in use.values()) * vg["extent_size"], use

    _fidelity(imgclone, archive, a, b)
    # Alone, the first image is not a whole system: its VG misses a PV, root cannot be found
    r = imgclone("boot-test", str(a), "--timeout", "600", "--json")
    assert r.returncode == 1 and "expected one operating system, found none" in r.stderr.decode(), r.stderr
    boot = _boot(imgclone, str(a), "--disk", str(b))
    assert boot["firmware"] == "bios"
    assert file_sha256(source) == before, "the source fixture was modified"


def _disk_facts(image: Path) -> dict[str, Any]:
    """What a clone beside its source must not share with it, read through one read-only appliance."""
    g = Appliance()
    g.add_drive(str(image), readonly=True, format=_image_info(image)["format"], label="disk")  # appliance_command's
    with g:
        pv, vg, vg_name = g.appliance_command(["lvm", "pvs", "--noheadings", "-o", "pv_uuid,vg_uuid,vg_name"]).split()
        devs = ("/dev/sda1", "/dev/rootvg/root", "/dev/rootvg/var", "/dev/rootvg/swap")
        facts = {"pv": pv, "vg": vg, "vg_name": vg_name, "fs": {dev: g.vfs_uuid(dev) for dev in devs},
                 "disk_id": g.appliance_command(["sfdisk", "--disk-id", "/dev/sda"]).strip(),
                 "lvs": {lv: g.blockdev_getsize64(lv) for lv in g.lvs()}}  # fmt: skip
        g.mount_ro("/dev/rootvg/var", "/")
        facts["scratch"] = bool(g.exists("/tmp/imgclone-scratch"))
        return facts


def _holds(image: Path, text: bytes) -> bool:
    """Whether the image file holds these bytes anywhere (a qcow2 stores clusters as they are)."""
    return subprocess.run(["grep", "-a", "-q", "-F", text, str(image)], check=False).returncode == 0


def test_image_copied_by_blocks_is_a_clone_beside_its_source_and_boots(
    tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch, bios_capture: FixtureCapture
) -> None:
    """copy --by blocks: the fixture's blocks copied on the host, then grown, renamed and renewed in one appliance.
    Every file is as the archive of the same fixture holds it (the image's exclude rule included), no UUID or id is
    the source's, and the clone boots."""
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive = _capture(bios_capture)
    clone = tmp_path / "clone.qcow2"
    out = _ok(imgclone("copy", "--source", str(source), "-d", str(clone), "--size", "4G", "--by", "blocks",
                       "--no-progress", "--json"))  # fmt: skip
    assert out["by"] == "blocks"
    steps = out["phase1"]["timings"]
    assert "copy_blocks" in steps and "exclude_files" in steps and "extract_streams" not in steps, steps
    assert "renamed volume group altinst_rootvg → rootvg" in out["phase3"]["actions"]
    assert _image_info(clone)["virtual-size"] == 4 * GiB

    src, got = _disk_facts(source), _disk_facts(clone)
    assert src["scratch"] is True and got["scratch"] is False, "the fixture's /etc/exclude.rootvg leaves it out"
    text = b"scratch that capture leaves out"  # its content (fixtures/rootfs.py): not in the image's blocks either
    assert [_holds(image, text) for image in (source, clone)] == [True, False]
    assert got["vg_name"] == "rootvg" and got["pv"] != src["pv"] and got["vg"] != src["vg"]
    assert got["disk_id"] != src["disk_id"]
    assert all(got["fs"][d] != src["fs"][d] for d in src["fs"]), (src["fs"], got["fs"])
    planned = {f"/dev/rootvg/{lv['name'].removeprefix('alt_')}": lv["size"] for lv in out["plan"]["target"]["lvs"]}
    assert got["lvs"] == planned and planned["/dev/rootvg/root"] > src["lvs"]["/dev/rootvg/root"]

    report = _fidelity(imgclone, archive, clone)  # every file; /var/tmp/imgclone-scratch in neither
    assert any("copied these targets' blocks" in n for n in report["notes"]), report["notes"]
    _boot(imgclone, str(clone))
    assert file_sha256(source) == before, "the source fixture was modified"
