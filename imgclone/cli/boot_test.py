"""imgclone boot-test: boot an image in QEMU on a throw-away overlay and wait for its marker."""

from __future__ import annotations

import argparse
import sys

from imgclone.cli.output import emit


def cmd_boot_test(args: argparse.Namespace) -> int:
    """imgclone boot-test."""
    from imgclone.check.boottest import BootTestOptions, boot_test, result_text

    opts = BootTestOptions(image=args.image, uefi=args.uefi, disks=tuple(args.disk), timeout=args.timeout,
                           expect=args.expect, keep_log=args.keep_log, debug=args.debug)  # fmt: skip
    result = boot_test(opts)
    emit(args, result.to_dict(), lambda: result_text(result))
    if not result.ok:
        sys.stderr.write("".join(f"  | {line}\n" for line in result.log_tail))
    return 0 if result.ok else 1
