"""The entry points: `imgclone`, and AIX's alt_disk_copy, alt_disk_mksysb and alt_rootvg_op; exit codes.

main() parses, sets up logging, runs the subcommand and turns its outcome into the exit code: 0 success, 1
failure, 2 usage or layout error, 130 interrupted, 141 the reader of stdout went away (`imgclone ... | head`,
silently, as a tool killed by SIGPIPE); an ImgcloneError is one line on stderr (a traceback with -D).
Each subcommand's module is imported when it runs: `archive verify` does not pay for the planner, libguestfs
or tqdm.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import shutil
import signal
import sys
from collections.abc import Sequence

from imgclone import log as logsetup
from imgclone.cli.aix import mksysb_argv, translate
from imgclone.cli.parser import build_parser
from imgclone.errors import ImgcloneError

log = logging.getLogger("imgclone")
NAMESPACE_ENV = "IMGCLONE_MOUNT_NS"  # the pid of the process that re-executed itself in a mount namespace


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; return its exit code."""
    if args.command == "capture":
        from imgclone.cli.capture import cmd_capture

        return cmd_capture(args)
    if args.command == "archive":
        from imgclone.cli.archive import cmd_archive

        return cmd_archive(args)
    if args.command == "boot-test":
        from imgclone.cli.boot_test import cmd_boot_test

        return cmd_boot_test(args)
    if args.command == "restore":
        from imgclone.cli.restore import cmd_restore

        return cmd_restore(args)
    if args.command == "alt":
        from imgclone.cli.alt import cmd_alt

        return cmd_alt(args)
    from imgclone.cli.copy import cmd_copy

    return cmd_copy(args)


def stdout_gone() -> bool:
    """stdout is a pipe whose reader has closed it (poll reports an error on the writing end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def main(argv: Sequence[str] | None = None, *, own_process: bool | None = None) -> None:
    """Run imgclone; exit 0, 1 (failure), 2 (usage), 130 (interrupted) or 141 (stdout's reader went away).
    own_process: this process is the command's own (a console script), which may re-execute itself (default: when
    argv is None); a caller that runs it in its own process (a test) gives argv."""
    try:
        try:
            run(argv, own_process=argv is None if own_process is None else own_process)
        finally:
            if sys.stdout is not None:  # None: started with stdout closed
                sys.stdout.flush()  # what is still buffered goes now, where a reader that went away is caught
    except BrokenPipeError:
        if not stdout_gone():
            raise  # a pipe of imgclone's own broke: a failure to show, not a reader that had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        sys.exit(128 + signal.SIGPIPE)


def run(argv: Sequence[str] | None, own_process: bool = False) -> None:
    """main() without the stdout reader's going away."""
    args = build_parser().parse_args(argv)
    if own_process:
        enter_mount_namespace(args)
    logsetup.setup(debug=args.debug, quiet=args.json)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        rc = dispatch(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(130)
    except ImgcloneError as e:
        if args.debug:
            log.exception("error")
        log.error("error: %s", e)
        sys.exit(e.exit_code)
    sys.exit(rc)


def enter_mount_namespace(args: argparse.Namespace) -> None:
    """restore and copy may mount the clone on this host (--via host or auto, guest/onhost.py): as root they
    re-execute themselves, once, under `unshare --mount` (same process, same arguments), so that whatever they
    mount goes away with the command, even when it is killed."""
    if args.command not in ("restore", "copy") or args.via == "appliance" or args.dry_run or os.geteuid() != 0:
        return
    unshare = shutil.which("unshare")
    if unshare is None or os.environ.get(NAMESPACE_ENV) == str(os.getpid()):
        return  # without unshare --via host is refused (guest/via.py), and auto takes the appliance
    os.environ[NAMESPACE_ENV] = str(os.getpid())
    os.execv(unshare, ["unshare", "--mount", "--propagation", "private", "--", sys.executable, *sys.orig_argv[1:]])


def alt_disk_copy() -> None:
    """The alt_disk_copy console script: `imgclone copy` with the AIX flags (they are the same letters)."""
    main(["copy", *sys.argv[1:]], own_process=True)


def alt_disk_mksysb() -> None:
    """The alt_disk_mksysb console script: `imgclone restore`, with AIX's -m ARCHIVE for -a."""
    main(["restore", *mksysb_argv(sys.argv[1:])], own_process=True)


def alt_rootvg_op(argv: Sequence[str] | None = None) -> None:
    """The alt_rootvg_op console script: the AIX flags translated, then imgclone (which exits)."""
    main(translate(sys.argv[1:] if argv is None else argv))
