"""The boot order for real: a UEFI host sets BootNext to a clone on its second disk and reboots
into it, as `imgclone copy` then `-r` would on a physical machine.

The "host" is a QEMU guest with OVMF: the UEFI fixture (on an overlay) with efibootmgr installed, and its second
disk a clone of it made with --beside-source. imgclone's own set_boot_order() and reboot() run their commands in
that guest, through a runner that sends each command line over a second serial port to a small shell loop the test
installed in the host's overlay. The next boot must be the clone's (only the clone has boot-test's marker unit), and
its first boot renames the host's volume group old_rootvg.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from imgclone.archive.reader import read_manifest_doc
from imgclone.check import boottest
from imgclone.errors import CommandError
from imgclone.guest.appliance import Appliance
from imgclone.host import accel
from imgclone.host.run import Argv, Result
from imgclone.model import journal as state
from imgclone.phases import bootorder
from tests.conftest import FixtureCapture
from tests.test_oldvg import _install_marker, _vgs
from tests.treecmp import file_sha256

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]

# efibootmgr and the libraries the fixture lacks, from Debian (bookworm, as the fixture)
DEBS = ("efibootmgr", "libefiboot1", "libefivar1", "libpopt0")
CHANNEL_SCRIPT = "/etc/imgclone-channel.sh"
CHANNEL_UNIT = "/etc/systemd/system/imgclone-channel.service"
READY = "IMGCLONE-CHANNEL-READY"
RC_RE = re.compile(r"IMGCLONE-RC (\d+)\n")

# each line read from ttyS1 runs in sh; its output, then "IMGCLONE-RC <status>", goes back
CHANNEL_SCRIPT_TEXT = f"""\
#!/bin/sh
stty -F /dev/ttyS1 raw -echo 115200
exec 3<>/dev/ttyS1
echo {READY} >&3
while IFS= read -r line <&3; do
    sh -c "$line" >/run/imgclone-channel.out 2>&1
    rc=$?
    cat /run/imgclone-channel.out >&3
    echo "IMGCLONE-RC $rc" >&3
done
"""
CHANNEL_UNIT_TEXT = f"""\
[Unit]
Description=imgclone test: run commands read from ttyS1
[Service]
ExecStart=/bin/sh {CHANNEL_SCRIPT}
[Install]
WantedBy=multi-user.target
"""


class SerialRunner:
    """imgclone's Runner, for a guest: each argv goes over the guest's ttyS1 (a UNIX socket of QEMU's) to the loop."""

    def __init__(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + 30
        while not path.exists():  # QEMU makes the socket as it starts
            assert time.monotonic() < deadline, f"QEMU made no socket {path}"
            time.sleep(0.2)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.fspath(path))
        self.buffer = b""
        self._read_until(re.compile(READY + r"\n"), timeout)  # the host has booted

    def _read_until(self, pattern: re.Pattern[str], timeout: float) -> tuple[str, re.Match[str]]:
        deadline = time.monotonic() + timeout
        while True:
            text = self.buffer.decode("utf-8", "replace")
            m = pattern.search(text)
            if m:
                self.buffer = self.buffer[len(text[: m.end()].encode()) :]
                return text[: m.start()], m
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern.pattern!r} from the guest within {timeout:g} s; got {text[-2000:]!r}"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            assert chunk, "the guest's serial port closed"
            self.buffer += chunk

    def run(self, argv: Argv, *, input: bytes | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:  # fmt: skip
        assert input is None and env is None, "the channel passes neither stdin nor an environment"
        args = [os.fspath(a) for a in argv]
        self.sock.sendall((shlex.join(args) + "\n").encode())
        if args == ["systemctl", "reboot"]:
            return Result(args, 0, b"", "")  # the shutdown stops the loop before it can answer
        out, m = self._read_until(RC_RE, timeout or 120)
        rc = int(m.group(1))
        if check and rc != 0:
            raise CommandError(args, rc, out)
        return Result(args, rc, out.encode(), "")


def _debs(directory: Path) -> list[Path]:
    directory.mkdir()
    r = subprocess.run(["apt-get", "download", *DEBS], cwd=directory, capture_output=True, text=True, check=False)
    assert r.returncode == 0, f"apt-get download {' '.join(DEBS)}: {r.stderr[-1000:]}"
    return sorted(directory.glob("*.deb"))


def _prepare_host(overlay: Path, debs: list[Path]) -> None:
    """efibootmgr installed with the host's own dpkg, and the channel loop enabled; no marker unit."""
    g = Appliance()
    g.add_drive(str(overlay), readonly=False, format="qcow2")
    with g:
        boottest.mount_guest(g, str(overlay))
        g.mkdir_p("/var/cache/imgclone-test")
        remote = []
        for deb in debs:
            remote.append(f"/var/cache/imgclone-test/{deb.name}")
            g.upload(str(deb), remote[-1])
        g.sh(shlex.join(["dpkg", "--install", *remote]))
        g.rm_rf("/var/cache/imgclone-test")
        g.write(CHANNEL_SCRIPT, CHANNEL_SCRIPT_TEXT.encode())
        g.write(CHANNEL_UNIT, CHANNEL_UNIT_TEXT.encode())
        g.mkdir_p("/etc/systemd/system/multi-user.target.wants")
        g.ln_sf(CHANNEL_UNIT, "/etc/systemd/system/multi-user.target.wants/imgclone-channel.service")
        g.umount_all()


def test_uefi_host_boots_its_clone_next_through_bootnext(
    tmp_path: Path,
    imgclone: Run,
    monkeypatch: pytest.MonkeyPatch,
    uefi_capture: FixtureCapture,
    figures: Callable[[str], None],
) -> None:
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    source, before, archive, _, captured = uefi_capture  # made once per run (conftest), with test_e2e_more.py
    debs = _debs(tmp_path / "debs")
    clone = tmp_path / "clone.qcow2"
    t0 = time.monotonic()
    (src_vg,) = read_manifest_doc(archive)["layout"]["vgs"]
    r = imgclone("restore", "-a", str(archive), "-d", str(clone), "--beside-source", "--no-progress", "--json")
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    result = json.loads(r.stdout)
    assert "the targets are images, nothing to set" in result["boot_order"][0]
    actions = result["phase3"]["actions"]
    assert any(a.startswith("kept volume group altinst_rootvg: on its first boot") for a in actions), actions
    cloned = captured + time.monotonic() - t0
    doc = state.load((str(clone),))
    assert doc is not None and "uefi" in doc.firmware, doc and doc.boot
    booted, after = boot_host_then_clone(tmp_path, source, clone, doc, debs, src_vg["uuid"])
    assert file_sha256(source) == before, "the source fixture was modified"
    p3 = result["phase3"]["timings"]
    figures(f"bootnext: clone (capture, all phases) {cloned:.0f} s (Phase 3 {sum(p3.values()):.0f} s, its initramfs "
            f"{p3.get('install_vg_rename', 0):.0f} s), host up {booted:.0f} s, BootNext to the clone's poweroff "
            f"{after:.0f} s")  # fmt: skip


def boot_host_then_clone(tmp_path: Path, source: Path, clone: Path, doc: state.Journal, debs: list[Path],
                         src_vg_uuid: str) -> tuple[float, float]:  # fmt: skip
    """Boot the host (an overlay of source) with the clone as its second disk; set_boot_order() and reboot() in it;
    the clone must be what boots next. Returns (seconds until the host answered, seconds from there to the end)."""
    on_host, on_clone = tmp_path / "host.qcow2", tmp_path / "clone-boot.qcow2"
    boottest.create_overlay(str(source), "qcow2", on_host)
    boottest.create_overlay(str(clone), "qcow2", on_clone)
    _prepare_host(on_host, debs)
    _install_marker(on_clone)
    code, vars_template = boottest.ovmf_files()
    shutil.copyfile(vars_template, tmp_path / "OVMF_VARS.fd")
    serial, channel = tmp_path / "serial.log", tmp_path / "channel.sock"
    argv = boottest.qemu_argv(accel.choose(), on_host, serial, (code, tmp_path / "OVMF_VARS.fd"), [on_clone])
    # a reboot must restart the guest (the firmware then reads BootNext), and the guest's flushes must count
    argv = [a.replace("cache=unsafe", "cache=writeback") for a in argv if a != "-no-reboot"]
    argv += ["-serial", f"unix:{channel},server=on,wait=off"]

    t1 = time.monotonic()
    with open(tmp_path / "qemu.err", "wb") as err:
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            host = SerialRunner(channel, timeout=900)
            booted = time.monotonic() - t1
            # the host runs from its first disk; the clone is /dev/vdb, as a second disk of a real machine would be
            assert host.run(["findmnt", "-no", "SOURCE", "/"]).text.strip() == "/dev/mapper/rootvg-root"
            order_before = re.search(r"^BootOrder: (\S+)", host.run(["efibootmgr"]).text, re.MULTILINE)
            on_vdb = dataclasses.replace(doc, targets=(state.TargetRecord("/dev/vdb", "device"),))
            lines = bootorder.set_boot_order(on_vdb, runner=host, firmware="uefi")
            assert re.fullmatch(r"boot order: created UEFI entry Boot[0-9A-F]{4} 'imgclone clone on vdb' and set "
                                r"BootNext to it", lines[0]), lines  # fmt: skip
            listing = host.run(["efibootmgr", "-v"]).text
            entry = bootorder.parse_entry(listing, "imgclone clone on vdb")
            assert f"BootNext: {entry}" in listing, listing
            order_after = re.search(r"^BootOrder: (\S+)", listing, re.MULTILINE)
            assert (order_after and order_after.group(1)) == (order_before and order_before.group(1)), listing
            # a second run replaces its entry instead of adding one
            bootorder.set_boot_order(on_vdb, runner=host, firmware="uefi")
            listing = host.run(["efibootmgr"]).text
            (entry,) = bootorder.entries(listing, "imgclone clone on vdb")
            bootorder.reboot(host)
            rc = qemu.wait(900)  # the clone's marker unit powers it off
        finally:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait()
    assert rc == 0, (tmp_path / "qemu.err").read_text()[-2000:]
    text = boottest.plain_text(serial.read_bytes().decode("utf-8", "replace"))
    # OVMF says which entry it started: the host's disk first, then (BootNext) the clone's
    first = re.findall(r'BdsDxe: starting Boot[0-9A-F]{4} "([^"]*)"', text.split("reboot: Restarting system")[0])
    assert first and "imgclone" not in first[0], first
    assert f'BdsDxe: starting Boot{entry} "imgclone clone on vdb"' in text, boottest.log_tail(text)
    assert boottest.scan_log(text, None).marker_line, boottest.log_tail(text)
    # the clone's first boot beside its source (AIX's old_rootvg rule, phases/oldvg.py): its initramfs renamed the
    # host's VG old_rootvg and its own altinst_rootvg rootvg, and said so on the console
    assert f"imgclone: volume group rootvg ({src_vg_uuid}) renamed old_rootvg" in text, boottest.log_tail(text)
    assert "imgclone: volume group altinst_rootvg renamed rootvg" in text, boottest.log_tail(text)
    assert _vgs(on_host) == {"old_rootvg": src_vg_uuid}
    (own,) = _vgs(on_clone).items()
    assert own[0] == "rootvg" and own[1] != src_vg_uuid, own
    print(f"\n{lines[0]}\n{listing}")
    return booted, time.monotonic() - t1 - booted
