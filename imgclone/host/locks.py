"""One imgclone run per target disk at a time: an advisory lock per target, held while a run works on it.

Two runs on one disk would each check it, find it blank, partition it and journal it, the second undoing the
first. QEMU's image locks refuse a second appliance on an image file, but not on every device, and not between
the appliance's runs (Phase 2's -s script, the journal). So every run that writes a target (restore, copy,
alt wake/sleep/cleanup) holds flock(2) on a file named after the target's real path, under /run/imgclone/locks
(IMGCLONE_LOCK_DIR): the kernel drops it when the process ends, even by SIGKILL, so a lock never outlives its run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from imgclone.errors import ImgcloneError


def lock_dir() -> Path:
    return Path(os.environ.get("IMGCLONE_LOCK_DIR", "/run/imgclone/locks"))


def lock_path(target: str) -> Path:
    return lock_dir() / (hashlib.sha256(os.path.realpath(target).encode()).hexdigest()[:16] + ".lock")


@contextlib.contextmanager
def hold(target_paths: Sequence[str]) -> Iterator[None]:
    """Lock every target (sorted, so two runs never wait on each other crosswise); one that is held is an error."""
    files: list[IO[str]] = []
    try:
        for target in sorted({os.path.realpath(t) for t in target_paths}):
            path = lock_path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")  # noqa: SIM115 - closed below, which releases the lock
            files.append(f)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "a process that has not written its name yet"
                raise ImgcloneError(f"-d {target}: another imgclone run is working on it ({holder})",
                                    "wait for it to end, or stop it first") from None  # fmt: skip
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}: imgclone {' '.join(sys.argv[1:])}"[:300])
            f.flush()
        yield
    finally:
        for held in files:
            held.close()
