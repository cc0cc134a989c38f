"""From the command line to requests: AIX's flag rules for copy and restore, every usage error before anything runs,
then the frozen requests the commands below cli/ take (RestoreRequest, CopyRequest)."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import stat
import sys

from imgclone.capture.common import CaptureOptions, ErrMode, check_exclude_list
from imgclone.copy.command import STREAM, CopyRequest
from imgclone.errors import UsageError
from imgclone.host.targets import split_targets
from imgclone.model.layout import Layout
from imgclone.phases import packages
from imgclone.phases.customize import CustomizeOptions
from imgclone.phases.phase import Phase, phases
from imgclone.phases.request import BootOrderOptions, FinalizeOptions, RestoreRequest
from imgclone.phases.restore import RestoreOptions
from imgclone.plan.types import PlanOptions, Resize

PHASE2_FLAGS = {"images": "-l", "install": "-w", "bundle": "-b", "fixes": "-F", "fix_file": "-f",
                "install_flags": "-I", "script": "-s", "resolv_conf": "-R", "first_boot": "-x",
                "managed_client": "-n", "device_reset": "-O", "console": "-c"}  # fmt: skip
PHASE3_FLAGS = {"skip_boot_checks": "-g", "no_bootlist": "-B", "reboot": "-r", "beside_source": "--beside-source"}
NEEDS_IMAGES = ("bundle", "fix_file", "fixes", "install", "install_flags")


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
    for group, phase in ((PHASE2_FLAGS, Phase.CUSTOMIZE), (PHASE3_FLAGS, Phase.FINALIZE)):
        given = [flag for dest, flag in group.items() if _given(args, dest)]
        if given and phase not in todo:
            raise UsageError(f"{' '.join(given)}: options of {phase.label}, which -P{args.phases} does not run")
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


CONVERTIBLE = ("ext2", "ext3", "ext4", "xfs", "btrfs")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'20G' → bytes (binary units)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise UsageError(f"--size {text}: not a size", "e.g. 20G, 512M, 1.5T")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024**power)


def parse_convert(values: list[str], upgrade: bool) -> dict[str, str]:
    """-T and --convert SRC=DST into one type map."""
    conv = {"ext2": "ext4", "ext3": "ext4"} if upgrade else {}
    for v in values:
        src, sep, dst = v.partition("=")
        if not sep or src not in CONVERTIBLE or dst not in CONVERTIBLE or src == dst:
            raise UsageError(f"--convert {v}: expected SRC=DST with two different types of {', '.join(CONVERTIBLE)}")
        conv[src] = dst
    return conv


def load_layout(path: str | None) -> Layout | None:
    """-i: a full path to a layout file (AIX's image.data)."""
    if path is None:
        return None
    if not path.startswith("/"):
        raise UsageError(f"-i {path}: must be a full path name")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise UsageError(f"-i {path}: {e.strerror}") from e
    layout = Layout.from_json(text, source=path)
    layout.validate()
    return layout


def restore_options(args: argparse.Namespace, archive: str | None = None) -> RestoreOptions:
    """Every usage check of restore and copy, before anything is read or written."""
    check_rules(args)
    todo = phases(args.phases)
    archive = archive if archive is not None else args.archive
    if Phase.RESTORE in todo and not archive:
        raise UsageError("-a ARCHIVE is needed for Phase 1", "or give -P23 to continue an earlier -P1")
    if Phase.RESTORE in todo and archive == "-" and sys.stdin.isatty():
        raise UsageError("-a -: standard input is a terminal", "pipe an archive into it: imgclone capture -o - | …")
    if args.lv_name_limit < 5:
        raise UsageError(f"--lv-name-limit {args.lv_name_limit}: too small for the alt_ prefix")
    if args.dry_run and Phase.RESTORE not in todo:
        raise UsageError("--dry-run plans Phase 1; give -P1 or more")
    plan = PlanOptions(
        resize=Resize(args.resize) if args.resize else None,
        convert=parse_convert(args.convert, args.upgrade),
        lv_name_limit=args.lv_name_limit,
        skip_space_check=args.skip_space,
        size=parse_size(args.size) if args.size else None,
        edited=load_layout(args.layout),
    )
    opts = RestoreOptions(
        archive=archive or "", targets=tuple(split_targets(args.target)), plan=plan, force=args.force,
        keep_uuids=args.keep_uuids, dry_run=args.dry_run, verbose=args.verbose, debug=args.debug,
        progress=False if args.no_progress else None, wipe_on_failure=ErrMode.from_env() is ErrMode.FAIL,
        via=args.via,
    )  # fmt: skip
    check_reboot(args, opts.targets)
    same = [t for t in opts.targets if archive and os.path.realpath(t) == os.path.realpath(archive)]
    if same:
        raise UsageError(f"-d {same[0]}: is the archive being restored", "give another target")
    return opts


def restore_request(args: argparse.Namespace, archive: str | None = None) -> RestoreRequest:
    """restore (and copy, with its archive): every usage check, then the request."""
    return RestoreRequest(
        phases=phases(args.phases), restore=restore_options(args, archive), customize=customize_options(args),
        finalize=FinalizeOptions(skip_checks=args.skip_boot_checks, beside_source=args.beside_source),
        boot=BootOrderOptions(leave=args.no_bootlist, reboot=args.reboot),
    )  # fmt: skip


def copy_request(args: argparse.Namespace) -> CopyRequest:
    """copy: restore's checks with Phase 1's archive being the stream (or --archive), then the capture's."""
    todo = phases(args.phases)
    capturing = Phase.RESTORE in todo
    req = restore_request(args, archive=args.archive or (STREAM if capturing else None))
    if not capturing:
        if args.source or args.archive or args.exclude_list:
            raise UsageError("--source, --archive and -e belong to Phase 1, which -P" + args.phases + " does not run")
        return CopyRequest(req, CaptureOptions(output="-"), by=args.by)
    # a conversion is checked against the content's extremes before anything is written: the capture finds them first
    plan = req.restore.plan
    cap = capture_options(args, prescan=bool(plan.convert) or plan.edited is not None)
    return CopyRequest(req, cap, by=args.by, keep=args.archive)


def capture_options(args: argparse.Namespace, prescan: bool = False) -> CaptureOptions:
    if args.archive and os.path.exists(args.archive):
        raise UsageError(f"--archive {args.archive}: exists already", "give a new file, or restore it with -a")
    if args.source and not os.path.exists(args.source):
        raise UsageError(f"--source {args.source}: no such image or device")
    return CaptureOptions(
        output=args.archive or "-", source=os.path.abspath(args.source) if args.source else None,
        exclude_list=args.exclude_list, verbose=args.verbose, debug=args.debug, err_mode=ErrMode.from_env(),
        progress=False if args.no_progress else None, prescan=prescan, snapshots=args.snapshots,
    )  # fmt: skip
