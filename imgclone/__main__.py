"""Entry point: logging, exception → exit code; the only sys.exit."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from imgclone import log as logsetup
from imgclone.cli import commands
from imgclone.cli.parser import build_parser
from imgclone.errors import ImgcloneError

log = logging.getLogger("imgclone")


def main(argv: Sequence[str] | None = None) -> None:
    """Run imgclone; exit 0, 1 (failure), 2 (usage) or 130 (interrupted)."""
    args = build_parser().parse_args(argv)
    logsetup.setup(debug=args.debug, quiet=args.json)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        rc = commands.dispatch(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(130)
    except ImgcloneError as e:
        if args.debug:
            log.exception("error")
        log.error("error: %s", e)
        sys.exit(e.exit_code)
    sys.exit(rc)


def alt_disk_copy() -> None:
    """The alt_disk_copy console script: `imgclone copy` with the AIX flags (they are the same letters)."""
    main(["copy", *sys.argv[1:]])


def alt_disk_mksysb() -> None:
    """The alt_disk_mksysb console script: `imgclone restore`, with AIX's -m ARCHIVE for -a."""
    main(["restore", *mksysb_argv(sys.argv[1:])])


def mksysb_argv(argv: Sequence[str]) -> list[str]:
    """alt_disk_mksysb -m device → restore -a device."""
    return ["-a" if a == "-m" else "-a" + a[2:] if a.startswith("-m") and len(a) > 2 else a for a in argv]


if __name__ == "__main__":
    main()
