"""AIX's flag rules for copy and restore: usage errors before anything runs."""

from __future__ import annotations

import argparse
import os
import shlex
import stat

from imgclone.capture.common import check_exclude_list
from imgclone.errors import UsageError
from imgclone.phases import packages
from imgclone.phases.customize import CustomizeOptions

PHASE2_FLAGS = {"images": "-l", "install": "-w", "bundle": "-b", "fixes": "-F", "fix_file": "-f",
                "install_flags": "-I", "script": "-s", "resolv_conf": "-R", "first_boot": "-x",
                "managed_client": "-n", "device_reset": "-O", "console": "-c"}  # fmt: skip
PHASE3_FLAGS = {"skip_boot_checks": "-g", "no_bootlist": "-B", "reboot": "-r", "beside_source": "--beside-source"}
NEEDS_IMAGES = ("bundle", "fix_file", "fixes", "install", "install_flags")


def phases(value: str) -> set[str]:
    """-P: 1, 2, 3, 12, 23 or all."""
    return {"1", "2", "3"} if value == "all" else set(value)


def _given(args: argparse.Namespace, dest: str) -> bool:
    value = getattr(args, dest, None)
    return bool(value)


def check_rules(args: argparse.Namespace) -> None:
    """-b -f -F -w -I need -l; -c needs -O; -B excludes -r; flags of phases -P does not run; paths."""
    for dest in NEEDS_IMAGES:
        if _given(args, dest) and not args.images:
            raise UsageError(f"{PHASE2_FLAGS[dest]} needs -l DIR", "the directory that holds the packages")
    if args.console and not args.device_reset:
        raise UsageError("-c needs -O", "a console is set only on a device reset")
    if args.no_bootlist and args.reboot:
        raise UsageError("-B and -r exclude each other", "-r reboots into the clone, which needs the boot order")
    todo = phases(args.phases)
    for group, phase in ((PHASE2_FLAGS, "2"), (PHASE3_FLAGS, "3")):
        given = [flag for dest, flag in group.items() if _given(args, dest)]
        if given and phase not in todo:
            raise UsageError(f"{' '.join(given)}: options of Phase {phase}, which -P{args.phases} does not run")
    for dest, flag in (("exclude_list", "-e"), ("resolv_conf", "-R"), ("layout", "-i"), ("images", "-l")):
        value = getattr(args, dest, None)
        if value and not value.startswith("/"):
            raise UsageError(f"{flag} {value}: must be a full path name")
    if getattr(args, "exclude_list", None):
        check_exclude_list(args.exclude_list)
    _check_file(args.resolv_conf, "-R")
    _check_file(args.first_boot, "-x")
    _check_file(args.script, "-s", executable=True)
    if args.images and not os.path.isdir(args.images):
        raise UsageError(f"-l {args.images}: not a directory", "give the directory that holds the packages")


def _check_file(path: str | None, flag: str, *, executable: bool = False) -> None:
    if path is None:
        return
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"{flag} {path}: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{flag} {path}: not a regular file")
    if executable and not os.access(path, os.X_OK):
        raise UsageError(f"{flag} {path}: must be executable", f"chmod +x {path}")


def check_reboot(args: argparse.Namespace, target_paths: tuple[str, ...]) -> None:
    """-r reboots into a disk of this host: refused for images and loop/nbd/ram devices."""
    if not args.reboot:
        return
    images = [t for t in target_paths if not (os.path.exists(t) and stat.S_ISBLK(os.stat(t).st_mode))]
    if images:
        raise UsageError(f"-r: {images[0]} is an image, not a disk of this host", "boot it with `imgclone boot-test`")
    for t in target_paths:
        kind = os.path.basename(os.path.realpath(t)).rstrip("0123456789")
        if kind in ("loop", "nbd", "ram", "zram"):
            raise UsageError(f"-r: {t} is a {kind} device backed by this host's files or memory, not a disk firmware "
                             "can boot", "boot it with `imgclone boot-test`")  # fmt: skip


def customize_options(args: argparse.Namespace) -> CustomizeOptions:
    """The Phase 2 flags as options (after check_rules)."""
    request = None
    if args.images:
        request = packages.make_request(
            args.images,
            install=[w for v in args.install for w in v.split()],
            bundle=args.bundle,
            fixes=[w for v in args.fixes for w in v.split()],
            fix_file=args.fix_file,
            flags=shlex.split(args.install_flags or ""),
        )
    return CustomizeOptions(
        packages=request, script=_abs(args.script), resolv_conf=args.resolv_conf, first_boot=_abs(args.first_boot),
        managed_client=args.managed_client, device_reset=args.device_reset, console=args.console,
        alt_inst=os.path.abspath(args.alt_inst),
    )  # fmt: skip


def _abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None
