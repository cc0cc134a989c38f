"""Logging set-up and timed steps (mkosi's complete_step, smaller)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("imgclone")


def setup(debug: bool = False, quiet: bool = False) -> None:
    """Messages to stderr: `imgclone: message`; `-D` adds command traces."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("imgclone: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    log.propagate = False


@contextmanager
def complete_step(text: str) -> Iterator[None]:
    """Log `text…` on entry and `text: done in N s` on success."""
    log.info("%s…", text)
    t0 = time.monotonic()
    yield
    log.debug("%s: done in %.1f s", text, time.monotonic() - t0)
