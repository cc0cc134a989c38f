"""imgclone boot-test: log parsing, waiting, QEMU arguments and the injected unit with fakes, and its refusals of bad
input; the real boots are the e2e tests' (test_e2e.py, test_e2e_more.py), which check boot-test's report too."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgclone.check import boottest
from imgclone.check.boottest import BootResult, BootTestOptions, LogScan
from imgclone.cli.parser import build_parser
from imgclone.errors import UsageError
from imgclone.model.layout import PartFlag
from imgclone.model.parttypes import GPT_TYPES
from tests.fakes import FakeAppliances, FakeGuest

Run = Callable[..., subprocess.CompletedProcess[bytes]]

CONSOLE = (
    "\x1b[0;32m  OK  \x1b[0m] Reached target multi-user.target - Multi-User System.\r\n"
    "         Starting imgclone-boot-tes…oot test (report and power off)...\r\n"
    "IMGCLONE-BOOT-OK imgclone-fixture 31.33\r\n"
    "[   31.306289] IMGCLONE-BOOT-OK imgclone-fixture 31.33\r\n"
)


# -- the serial log --------------------------------------------------------------------------------
def test_scan_log_finds_the_marker_line() -> None:
    scan = boottest.scan_log(CONSOLE, None)
    assert scan == LogScan("IMGCLONE-BOOT-OK imgclone-fixture 31.33", False)
    assert scan.done(None)


def test_scan_log_marker_inside_other_output() -> None:
    text = "[   31.3] systemd[1]: foo IMGCLONE-BOOT-OK host 12.50\x1b[0m trailing"
    assert boottest.scan_log(text, None).marker_line == "IMGCLONE-BOOT-OK host 12.50"


def test_scan_log_unit_description_is_not_a_marker() -> None:
    assert boottest.MARKER not in boottest.UNIT_TEXT
    assert boottest.scan_log("Starting imgclone-boot-test.service - imgclone boot test...\n", None).marker_line is None


def test_scan_log_expect() -> None:
    assert boottest.scan_log(CONSOLE, "Multi-User System").done("Multi-User System")
    scan = boottest.scan_log(CONSOLE, "never printed")
    assert scan.marker_line and not scan.expect_found and not scan.done("never printed")
    assert boottest.scan_log("first-boot: done\n", "first-boot: done") == LogScan(None, True)


def test_scan_log_expect_ignores_terminal_codes() -> None:
    """systemd colours unit names on the serial console; the line as the log tail shows it must match."""
    line = "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n"
    assert boottest.scan_log(line, "Reached target multi-user.target - Multi-User").expect_found
    assert boottest.log_tail(line) == ("[  OK  ] Reached target multi-user.target - Multi-User System.",)
    assert not boottest.scan_log(line, "Reached target graphical.target").expect_found


def test_log_tail_strips_terminal_codes() -> None:
    tail = boottest.log_tail(CONSOLE + "".join(f"line {i}\r\n" for i in range(40)))
    assert len(tail) == 30
    assert tail[-1] == "line 39"
    assert all("\x1b" not in line and "\r" not in line for line in tail)
    assert boottest.log_tail("\x1b[0;32m  OK  \x1b[0m] x\r\n") == ("  OK  ] x",)


# -- waiting ---------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(chunks: list[str], exit_at: float | None, timeout: float, expect: str | None) -> tuple[Any, float, str]:
    clock = FakeClock()

    def read() -> str:  # one more chunk of console output each poll
        return "".join(chunks[: int(clock.now / boottest.POLL_SECONDS) + 1])

    def exited() -> int | None:
        return 0 if exit_at is not None and clock.now >= exit_at else None

    return boottest.wait_for_marker(read, exited, timeout, expect, clock=clock, sleep=clock.sleep)


def test_wait_stops_at_the_marker() -> None:
    scan, seconds, reason = _wait(["booting\n"] * 10 + [CONSOLE], None, 300, None)
    assert reason == "marker" and seconds == pytest.approx(5.0) and scan.marker_line


def test_wait_keeps_going_for_expect_until_qemu_powers_off() -> None:
    scan, seconds, reason = _wait([CONSOLE] + ["more\n"] * 100, 7.0, 300, "never printed")
    assert reason == "qemu exited (code 0)" and seconds == pytest.approx(7.0)
    assert scan.marker_line and not scan.expect_found


def test_wait_expect_after_marker() -> None:
    _, seconds, reason = _wait([CONSOLE, "x\n", "x\n", "first boot done\n"], None, 300, "first boot done")
    assert reason == "marker" and seconds == pytest.approx(1.5)


def test_wait_times_out() -> None:
    scan, seconds, reason = _wait(["nothing\n"], None, 10, None)
    assert reason == "timeout" and seconds == pytest.approx(10.0) and scan.marker_line is None


def test_wait_qemu_died_before_the_marker() -> None:
    _, _, reason = _wait(["panic\n"], 2.0, 300, None)
    assert reason == "qemu exited (code 0)"


# -- QEMU, options, CLI ----------------------------------------------------------------------------
def test_qemu_argv_bios(tmp_path: Path) -> None:
    argv = boottest.qemu_argv("tcg", tmp_path / "o.qcow2", tmp_path / "s.log", None)
    assert argv[:1] == ["qemu-system-x86_64"]
    assert ["-accel", "tcg", "-cpu", "max"] == argv[3:7]
    for flag in ("-no-reboot", "-nodefaults"):
        assert flag in argv
    assert f"file:{tmp_path}/s.log" in argv
    assert f"file={tmp_path}/o.qcow2,format=qcow2,if=virtio,cache=unsafe" in argv
    assert not any("pflash" in a for a in argv)


def test_qemu_argv_uefi(tmp_path: Path) -> None:
    argv = boottest.qemu_argv("kvm", tmp_path / "o.qcow2", tmp_path / "s.log", ("/code.fd", tmp_path / "vars.fd"))
    assert "host" in argv
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/code.fd" in argv
    assert f"if=pflash,format=raw,unit=1,file={tmp_path}/vars.fd" in argv


def test_qemu_argv_further_disks_follow_the_image(tmp_path: Path) -> None:
    extra = [tmp_path / "disk1.qcow2", tmp_path / "disk2.qcow2"]
    argv = boottest.qemu_argv("tcg", tmp_path / "o.qcow2", tmp_path / "s.log", None, extra)
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives == [f"file={tmp_path}/{n},format=qcow2,if=virtio,cache=unsafe"
                      for n in ("o.qcow2", "disk1.qcow2", "disk2.qcow2")]  # fmt: skip


def test_prepare_overlay_gives_the_appliance_every_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VG spanning the disks is only whole (and its root mountable) when the appliance sees all of them."""
    appliances = FakeAppliances()
    monkeypatch.setattr(boottest, "Appliance", appliances)
    monkeypatch.setattr(boottest, "mount_guest", lambda g, image: None)
    monkeypatch.setattr(boottest, "install_unit", lambda g, image: None)
    monkeypatch.setattr(boottest, "detect_firmware", lambda g: "bios")
    opts = BootTestOptions("a.qcow2", disks=("b.qcow2",))
    assert boottest.prepare_overlay(opts, tmp_path / "o.qcow2", [tmp_path / "disk1.qcow2"]) == "bios"
    added = [(path, opts["readonly"], opts["format"]) for a in appliances.made for path, opts in a.drives]
    assert added == [(f"{tmp_path}/o.qcow2", False, "qcow2"), (f"{tmp_path}/disk1.qcow2", False, "qcow2")]


def test_unit_orders_after_multi_user_without_a_cycle() -> None:
    unit = boottest.UNIT_TEXT
    for line in ("DefaultDependencies=no", "After=multi-user.target", "WantedBy=multi-user.target", "Type=oneshot"):
        assert line + "\n" in unit
    assert "/dev/ttyS0" in boottest.SCRIPT_TEXT and "poweroff" in boottest.SCRIPT_TEXT


def test_parser() -> None:
    args = build_parser().parse_args(["boot-test", "a.qcow2", "--uefi", "--timeout", "12.5", "--expect", "hi there",
                                      "--keep-log", "/tmp/x.log", "--json"])  # fmt: skip
    assert (args.command, args.image, args.uefi, args.timeout, args.expect, args.keep_log, args.json) == (
        "boot-test", "a.qcow2", True, 12.5, "hi there", "/tmp/x.log", True)  # fmt: skip
    args = build_parser().parse_args(["boot-test", "b.img"])
    assert (args.uefi, args.timeout, args.expect, args.keep_log, args.disk) == (False, 300.0, None, None, [])
    args = build_parser().parse_args(["boot-test", "a.qcow2", "--disk", "b.qcow2", "--disk", "c.raw"])
    assert args.disk == ["b.qcow2", "c.raw"]


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (BootTestOptions("x.qcow2", timeout=0), "--timeout 0"),
        (BootTestOptions("x.qcow2", keep_log="/nonexistent/dir/serial.log"), "--keep-log"),
        (BootTestOptions("x.qcow2", keep_log="/tmp"), "--keep-log"),
        (BootTestOptions("x.qcow2", disks=("y.qcow2", "./y.qcow2")), "--disk y.qcow2: this image is attached twice"),
        (BootTestOptions("x.qcow2", disks=("x.qcow2",)), "--disk x.qcow2: this image is attached twice"),
    ],
)
def test_check_options(opts: BootTestOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        boottest.check_options(opts)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["boot-test", "{tmp}/missing.qcow2"], "no such image or device"),
        (["boot-test", "{tmp}/missing.qcow2", "--timeout", "-1"], "expected a positive number"),
        (["boot-test"], "the following arguments are required: IMAGE"),
    ],
)
def test_bad_input(imgclone: Run, tmp_path: Path, args: list[str], message: str) -> None:
    r = imgclone(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2
    assert message in r.stderr.decode()
    assert "Traceback" not in r.stderr.decode()


def test_missing_further_disk_is_a_usage_error(imgclone: Run, tmp_path: Path) -> None:
    (tmp_path / "a.img").write_bytes(b"")
    r = imgclone("boot-test", str(tmp_path / "a.img"), "--disk", str(tmp_path / "missing.qcow2"))
    assert r.returncode == 2
    assert f"{tmp_path}/missing.qcow2: no such image or device" in r.stderr.decode()


def test_an_archive_is_refused_before_any_appliance(imgclone: Run, tmp_path: Path) -> None:
    import io
    import tarfile

    archive = tmp_path / "sys.mksysb"
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        t.addfile(info, io.BytesIO(b"{}"))
    r = imgclone("boot-test", str(archive))
    assert r.returncode == 2, r.stderr.decode()
    assert f"{archive}: an imgclone archive, not a disk image" in r.stderr.decode()
    assert "imgclone restore -a" in r.stderr.decode() and "Traceback" not in r.stderr.decode()


def test_result_text_and_dict() -> None:
    ok = BootResult("a.qcow2", True, 46.04, "tcg", "bios", "IMGCLONE-BOOT-OK h 31.33", None, None, ("l",), "marker")
    assert boottest.result_text(ok) == "a.qcow2: booted (bios, tcg) in 46.0 s: IMGCLONE-BOOT-OK h 31.33\n"
    d = ok.to_dict()
    assert {"image", "ok", "seconds", "accel", "firmware", "marker_line", "expect_found", "log"} <= set(d)
    assert d["log_tail"] == ["l"]
    bad = BootResult("a.qcow2", False, 300.0, "tcg", "uefi", None, None, None, (), "timeout")
    assert "FAILED" in boottest.result_text(bad) and "timeout" in boottest.result_text(bad)


# -- the appliance side, with a fake guest -------------------------------------------------------
def boot_guest(table: str, types: dict[int, str], mbr: bytes, files: dict[str, str]) -> FakeGuest:
    """A guest whose disk has the partitions of `types` (GPT type GUIDs, or MBR ids in hex), boot code `mbr` and
    the `files`."""
    return FakeGuest({
        "list_devices": ["/dev/sda"],
        "part_get_parttype": table,
        "part_list": [{"part_num": n} for n in types],
        "part_get_gpt_type": lambda dev, n: types[n],
        "part_get_mbr_id": lambda dev, n: int(types[n], 16),
        "pread_device": mbr,
    }, files=files)  # fmt: skip


ESP = GPT_TYPES[PartFlag.ESP]
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
EFI_FILES = {"/boot/efi/EFI/BOOT/BOOTX64.EFI": "", "/boot/efi/EFI/BOOT/grubx64.efi": ""}


@pytest.mark.parametrize(
    ("guest", "firmware"),
    [
        (boot_guest("gpt", {1: BIOS_BOOT, 2: ESP, 3: "X"}, b"\0" * 512, EFI_FILES), "uefi"),
        (boot_guest("gpt", {1: BIOS_BOOT, 2: ESP, 3: "X"}, b"\xebc GRUB", EFI_FILES), "bios"),  # both: BIOS
        (boot_guest("msdos", {1: "83", 2: "8e"}, b"\xebc GRUB", {"/boot/grub/i386-pc/core.img": ""}), "bios"),
        (boot_guest("gpt", {1: ESP}, b"\0" * 512, {}), "uefi"),  # an ESP without loaders: still UEFI
        (boot_guest("msdos", {1: "ef", 2: "83"}, b"\0" * 512, {"/boot/efi/EFI/debian/grubx64.efi": ""}), "uefi"),
    ],
)
def test_detect_firmware(guest: FakeGuest, firmware: str) -> None:
    assert boottest.detect_firmware(guest) == firmware


def test_install_unit_enables_it() -> None:
    g = boot_guest("msdos", {}, b"", {"/usr/lib/systemd/systemd": ""})
    boottest.install_unit(g, "a.qcow2")
    assert g.files[boottest.UNIT_PATH] == boottest.UNIT_TEXT.encode()
    assert g.files[boottest.SCRIPT_PATH] == boottest.SCRIPT_TEXT.encode()
    assert (boottest.UNIT_PATH, boottest.WANTS_LINK) in g.named("ln_sf")
    assert boottest.WANTS_LINK.startswith("/etc/systemd/system/multi-user.target.wants/")


def test_install_unit_needs_systemd() -> None:
    with pytest.raises(Exception, match="does not use systemd"):
        boottest.install_unit(boot_guest("msdos", {}, b"", {}), "a.qcow2")


# -- real boots: the e2e tests boot their clones with boot-test and check its report there (test_e2e.py: BIOS,
# --expect, --keep-log, the image left as it was; test_e2e_more.py: UEFI found by itself, an --expect that never
# comes) -----------------------------------------------------------------------------------------------------------
