"""`imgclone boot-test`: boot a disk image in QEMU and wait until it reports that it is up.

The image is never written: QEMU boots a throw-away qcow2 overlay in a temporary directory. Before
the boot, one appliance launch on the overlay mounts the guest's filesystems (by its fstab, through
inspection), decides BIOS or UEFI when not forced, and installs a one-shot systemd unit that writes
`IMGCLONE-BOOT-OK <hostname> <uptime>` to the serial port and the kernel log, then powers off.

Ordering of that unit: it is enabled in multi-user.target.wants and ordered After=multi-user.target,
so it starts once multi-user.target has been reached. A target orders itself after the units it
wants, which with After=multi-user.target would be a cycle, unless the wanted unit says
DefaultDependencies=no (systemd.target(5), "Default Dependencies"); so it does, and adds back the
shutdown conflict that default dependencies would have given it.

Further images (--disk, e.g. the second disk a volume group spans) get overlays of their own and
are attached, in order, after IMAGE: to the appliance (so that it finds a VG across them) and to QEMU
as further virtio disks. IMAGE stays the first disk, the one the firmware boots.

The serial console goes to a log file that is polled; QEMU is killed when the marker (and the
--expect text) is there, when it exits by itself, or at the timeout.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imgclone.archive.reader import is_archive
from imgclone.errors import GuestfsError, ImgcloneError, UsageError
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.guest.treemount import os_roots
from imgclone.host import accel
from imgclone.host.images import image_format
from imgclone.host.run import DEVNULL, HOST, Pipeline
from imgclone.model import parttypes
from imgclone.model.layout import PartFlag, mount_key
from imgclone.probe.bootfacts import decide_firmware, is_efi_loader

log = logging.getLogger("imgclone")

MARKER = "IMGCLONE-BOOT-OK"
MARKER_RE = re.compile(MARKER + r" ([^\s\x1b]+) ([0-9.]+)")
UNIT = "imgclone-boot-test.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT}"
SCRIPT_PATH = "/etc/imgclone-boot-test.sh"
TAIL_LINES = 30
POLL_SECONDS = 0.5
# (code, vars template) pairs from Debian's ovmf package, preferred first
OVMF = (("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"))  # fmt: skip

UNIT_TEXT = f"""\
# Installed by `imgclone boot-test` into a throw-away overlay of the image.
[Unit]
Description=imgclone boot test (report and power off)
# No default dependencies: otherwise multi-user.target, which wants this unit, would order itself
# after it and After=multi-user.target below would be a cycle (systemd.target(5)).
DefaultDependencies=no
After=multi-user.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=/bin/sh {SCRIPT_PATH}

[Install]
WantedBy=multi-user.target
"""

SCRIPT_TEXT = f"""\
#!/bin/sh
# Installed by `imgclone boot-test`: say the system is up, on the serial port and the kernel log.
line="{MARKER} $(cat /proc/sys/kernel/hostname) $(cut -d' ' -f1 /proc/uptime)"
echo "$line" > /dev/ttyS0 2>/dev/null || true
echo "$line" > /dev/kmsg 2>/dev/null || true
systemctl --no-block poweroff
"""


@dataclass(frozen=True)
class BootTestOptions:
    image: str
    uefi: bool = False  # force UEFI (else detected)
    disks: tuple[str, ...] = ()  # further images attached after IMAGE (--disk), each on its own overlay
    timeout: float = 300.0
    expect: str | None = None
    keep_log: str | None = None
    debug: bool = False


@dataclass(frozen=True)
class LogScan:
    """What the serial log shows so far."""

    marker_line: str | None
    expect_found: bool

    def done(self, expect: str | None) -> bool:
        return self.marker_line is not None and (expect is None or self.expect_found)


@dataclass(frozen=True)
class BootResult:
    image: str
    ok: bool
    seconds: float
    accel: str
    firmware: str
    marker_line: str | None
    expect_found: bool | None  # None when no --expect was given
    log: str | None  # where the serial log was kept (--keep-log), else None
    log_tail: tuple[str, ...]
    reason: str  # "marker", "timeout", "qemu exited (code N)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["log_tail"] = list(self.log_tail)
        return d


# -- pure helpers ----------------------------------------------------------------------------------
def scan_log(text: str, expect: str | None) -> LogScan:
    """The first marker line (cleaned of other console output around it) and whether expect appears.

    expect is looked for in the log as log_tail shows it: systemd colours unit names on the console
    ("Reached target \\x1b[0;1;39mmulti-user.target"), and a line copied from the tail must match.
    """
    m = MARKER_RE.search(text)
    marker = m.group(0) if m else None
    return LogScan(marker, expect is not None and expect in plain_text(text))


def plain_text(text: str) -> str:
    """The serial log without terminal control sequences and carriage returns."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[c()][0-9A-Za-z]?|\r", "", text)


def log_tail(text: str, lines: int = TAIL_LINES) -> tuple[str, ...]:
    """The last lines of the serial log, without terminal control sequences and carriage returns."""
    return tuple(plain_text(text).splitlines()[-lines:])


def qemu_argv(
    accel_name: str, overlay: Path, serial_log: Path, pflash: tuple[str, Path] | None, extra: Sequence[Path] = ()
) -> list[str]:
    """The QEMU command: no display, serial console to a file, no reboot, the overlays as virtio disks."""
    argv = ["qemu-system-x86_64", "-name", "imgclone-boot-test", *accel.qemu_accel_args(accel_name),
            "-m", "1024", "-smp", str(accel.vcpus(accel_name)), "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot",
            "-serial", f"file:{os.fspath(serial_log)}",
            "-drive", f"file={os.fspath(overlay)},format=qcow2,if=virtio,cache=unsafe"]  # fmt: skip
    for disk in extra:
        argv += ["-drive", f"file={os.fspath(disk)},format=qcow2,if=virtio,cache=unsafe"]
    if pflash:
        code, vars_copy = pflash
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={os.fspath(vars_copy)}"]  # fmt: skip
    return argv


def ovmf_files() -> tuple[str, str]:
    """OVMF code and variables template, from Debian's ovmf package."""
    for code, vars_ in OVMF:
        if os.path.exists(code) and os.path.exists(vars_):
            return code, vars_
    raise ImgcloneError("UEFI boot needs OVMF, which is not installed", "apt-get install ovmf, or run `make setup`")


def wait_for_marker(
    read: Callable[[], str],
    exited: Callable[[], int | None],
    timeout: float,
    expect: str | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[LogScan, float, str]:
    """Poll the log until the marker (and expect) shows, QEMU exits or timeout; (scan, seconds, reason)."""
    t0 = clock()
    while True:
        rc = exited()
        scan = scan_log(read(), expect)
        elapsed = clock() - t0
        if scan.done(expect):
            return scan, elapsed, "marker"
        if rc is not None:
            return scan, elapsed, f"qemu exited (code {rc})"
        if elapsed >= timeout:
            return scan, elapsed, "timeout"
        sleep(POLL_SECONDS)


# -- the overlay and the injected unit -------------------------------------------------------------
def create_overlay(image: str, fmt: str, overlay: Path) -> None:
    """A qcow2 whose backing file is the image: every write of the boot lands in the overlay."""
    HOST.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", os.path.abspath(image),
              os.fspath(overlay)])  # fmt: skip


def mount_guest(g: Guest, image: str) -> None:
    """Mount the one OS's filesystems read-write at their fstab mount points (only / must succeed)."""
    roots = os_roots(g)
    if len(roots) != 1:
        found = ", ".join(roots) or "none"
        raise ImgcloneError(f"{image}: expected one operating system, found {found}", "is it a system disk?")
    mountpoints = {str(k): str(v) for k, v in g.inspect_get_mountpoints(roots[0]).items()}
    for mp in sorted(mountpoints, key=mount_key):
        try:
            g.mount(mountpoints[mp], mp)
        except GuestfsError as e:
            if mp == "/":
                raise
            log.warning("boot-test: cannot mount %s at %s in the overlay (%s); going on", mountpoints[mp], mp, e)


def install_unit(g: Guest, image: str) -> None:
    """Write the report script and the unit, and enable it for multi-user.target."""
    if not any(g.is_file(p) for p in ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")):
        raise ImgcloneError(f"{image}: the guest does not use systemd", "boot-test needs a systemd guest")
    g.mkdir_p("/etc/systemd/system/multi-user.target.wants")
    g.write(SCRIPT_PATH, SCRIPT_TEXT.encode())
    g.chmod(0o755, SCRIPT_PATH)
    g.write(UNIT_PATH, UNIT_TEXT.encode())
    g.ln_sf(UNIT_PATH, WANTS_LINK)


def detect_firmware(g: Guest) -> str:
    """uefi when the disk has an ESP with an EFI loader and no BIOS boot loader, else bios."""
    disk = str(g.list_devices()[0])
    try:
        table = str(g.part_get_parttype(disk))
    except GuestfsError:
        return "bios"
    parts = [int(p["part_num"]) for p in g.part_list(disk)]
    if table == "gpt":
        esp = any(parttypes.gpt_flag(str(g.part_get_gpt_type(disk, n))) is PartFlag.ESP for n in parts)
    else:
        esp = any(parttypes.mbr_flag(int(g.part_get_mbr_id(disk, n))) is PartFlag.ESP for n in parts)
    efi_loader = esp and g.is_dir("/boot/efi") and any(is_efi_loader(str(f)) for f in g.find("/boot/efi"))
    bios_loader = b"GRUB" in bytes(g.pread_device(disk, 512, 0)) or g.is_dir("/boot/grub/i386-pc")
    fw = decide_firmware(esp=esp, efi_loader=efi_loader, bios_disk=True, bios_loader=bios_loader)
    return "uefi" if fw == "uefi" else "bios"


def prepare_overlay(opts: BootTestOptions, overlay: Path, extra: Sequence[Path] = ()) -> str:
    """Inject the unit into the overlay in one appliance launch; returns the firmware to boot with."""
    g = Appliance(trace=opts.debug)
    for disk in (overlay, *extra):  # all of them: the guest's VGs may span the disks
        g.add_drive(os.fspath(disk), readonly=False, format="qcow2")
    with g:
        mount_guest(g, opts.image)
        install_unit(g, opts.image)
        firmware = "uefi" if opts.uefi else detect_firmware(g)
        g.umount_all()
    return firmware


# -- the boot --------------------------------------------------------------------------------------
def run_qemu(argv: list[str], serial_log: Path, qemu_err: Path, opts: BootTestOptions) -> tuple[LogScan, float, str]:
    """Start QEMU, watch its serial log, and kill it whatever happened."""
    serial_log.touch()

    def read() -> str:
        return serial_log.read_bytes().decode("utf-8", "replace")

    with open(qemu_err, "wb") as err, Pipeline([argv], stdin=DEVNULL, stdout=err, stderr=err) as qemu:
        try:
            return wait_for_marker(read, qemu.procs[0].poll, opts.timeout, opts.expect)
        finally:
            qemu.kill()


def check_options(opts: BootTestOptions) -> None:
    """Usage errors before anything is started."""
    paths = [os.path.abspath(d) for d in (opts.image, *opts.disks)]
    for path in (opts.image, *opts.disks):
        if os.path.isfile(path) and is_archive(path):
            hint = f"restore it first (imgclone restore -a {path} -d IMAGE), then boot-test IMAGE"
            raise UsageError(f"{path}: an imgclone archive, not a disk image", hint)
    for disk, path in zip(opts.disks, paths[1:], strict=True):
        if paths.count(path) > 1:
            raise UsageError(f"--disk {disk}: this image is attached twice", "give each image once")
    if opts.timeout <= 0:
        raise UsageError(f"--timeout {opts.timeout:g}: expected a positive number of seconds")
    if opts.keep_log:
        parent = os.path.dirname(os.path.abspath(opts.keep_log))
        if os.path.isdir(opts.keep_log) or not os.path.isdir(parent):
            raise UsageError(f"--keep-log {opts.keep_log}: not a file in an existing directory")


def boot_test(opts: BootTestOptions) -> BootResult:
    """Boot opts.image on an overlay and report whether it reached multi-user."""
    check_options(opts)
    fmt = image_format(opts.image)
    formats = [image_format(d) for d in opts.disks]
    accel_name = accel.choose()
    with tempfile.TemporaryDirectory(prefix="imgclone-boot-test-") as tmpdir:
        tmp = Path(tmpdir)
        overlay, serial_log = tmp / "overlay.qcow2", tmp / "serial.log"
        create_overlay(opts.image, fmt, overlay)
        extra = [tmp / f"disk{i}.qcow2" for i in range(1, len(opts.disks) + 1)]
        for disk, disk_fmt, path in zip(opts.disks, formats, extra, strict=True):
            create_overlay(disk, disk_fmt, path)
        firmware = prepare_overlay(opts, overlay, extra)
        pflash = None
        if firmware == "uefi":
            code, vars_template = ovmf_files()
            shutil.copyfile(vars_template, tmp / "OVMF_VARS.fd")
            pflash = (code, tmp / "OVMF_VARS.fd")
        log.info("booting %s (%s, %s); timeout %g s", opts.image, firmware, accel_name, opts.timeout)
        scan, seconds, reason = run_qemu(qemu_argv(accel_name, overlay, serial_log, pflash, extra), serial_log,
                                         tmp / "qemu.err", opts)  # fmt: skip
        text = serial_log.read_bytes().decode("utf-8", "replace")
        if reason.startswith("qemu exited") and not scan.marker_line:
            text += _qemu_errors(tmp / "qemu.err")
        if opts.keep_log:
            shutil.copyfile(serial_log, opts.keep_log)
    return BootResult(
        image=opts.image, ok=scan.done(opts.expect), seconds=round(seconds, 1), accel=accel_name, firmware=firmware,
        marker_line=scan.marker_line, expect_found=scan.expect_found if opts.expect is not None else None,
        log=os.path.abspath(opts.keep_log) if opts.keep_log else None, log_tail=log_tail(text), reason=reason,
    )  # fmt: skip


def _qemu_errors(path: Path) -> str:
    text = path.read_text(errors="replace").strip()
    return f"\n[qemu] {text}\n" if text else ""


def result_text(r: BootResult) -> str:
    """The human summary (stdout); the log tail of a failure goes to stderr separately."""
    if r.ok:
        extra = ", expected text found" if r.expect_found else ""
        return f"{r.image}: booted ({r.firmware}, {r.accel}) in {r.seconds:.1f} s{extra}: {r.marker_line}\n"
    what = f"{r.marker_line!r} seen but not the expected text" if r.marker_line else f"no {MARKER} marker"
    return f"{r.image}: boot test FAILED ({r.firmware}, {r.accel}) after {r.seconds:.1f} s: {what}; {r.reason}\n"
