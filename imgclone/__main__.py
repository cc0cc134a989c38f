"""Entry point: logging, exception → exit code; the only sys.exit."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from . import commands
from . import log as logsetup
from .cli import build_parser
from .errors import ImgcloneError

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


if __name__ == "__main__":
    main()
