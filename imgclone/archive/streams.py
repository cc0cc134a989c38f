"""Filesystem streams: GNU tar (pax) piped through parallel zstd, and back.

The compressor is pzstd (zstd's parallel front end, in the same package): its output is standard zstd that
`zstd -d` reads, cut into independent frames (each announced by a skippable frame), so that `pzstd -t` and
`pzstd -d` can check and decompress a stream on every core, where a single zstd frame is decoded on one.

The tar options here are the archive format's promise (docs/archive-format.md): numeric
owners, modes, times, hardlinks, symlinks, sparse files, device nodes, fifos, every
xattr namespace (security.* labels and capabilities included) and POSIX ACLs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from imgclone.host.run import PIPE, Pipeline

log = logging.getLogger("imgclone")

# Members are fs-relative ("./etc/fstab"); these keep everything the kernel can tell us.
TAR_METADATA = ["--format=posix", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--selinux"]
TAR_CREATE = ["--sparse", "--one-file-system", "--no-recursion", "--null", "--verbatim-files-from"]
# zstd's level: 2 by default, not zstd's 3. Measured (pzstd, 2 cores): on /usr of a Debian host, level 2 takes 37 %
# less CPU than 3 for 3.4 % more bytes (level 1: 47 % less, 8.6 % more); on a fixture's root 3.9 % more.
DEFAULT_LEVEL = 2
LEVELS = range(1, 20)  # zstd's regular levels (--ultra's 20-22 need far more memory to write and to read)
ZSTD_DECOMPRESS = ["zstd", "-d", "-q", "-c"]  # restore, fidelity: one core (under TCG the other runs the appliance)
ZSTD_DECOMPRESS_ALL_CORES = ["pzstd", "-d", "-q", "-c"]
ZSTD_TEST = ["pzstd", "-t", "-q"]  # decodes stdin on every core and checks its checksums, writing nothing
TAR_LIST = ["tar", "--list", "--file=-"]
CHECKPOINT_RECORDS = 1000  # one progress line from tar every ~10 MB
_PROGRESS = re.compile(r"^tar: @@\d+ (\d+)")
_TOTALS = re.compile(r"^Total bytes written: (\d+)")

# tar's messages for files that could not be read: AIX's "backup errors" — they are
# reported and the capture goes on (unless ALT_BAK_ERR_FAIL).
READ_ERRORS = re.compile(
    r": (Cannot (stat|open|read|readlink|savedir|getcwd)|Read error|file changed as we read it|"
    r"File removed before we read it|File shrank by|Cannot change ownership)"
)

# tar's own summary and notices that are not failures by themselves
BENIGN = re.compile(r"(Exiting with failure status due to previous errors|: socket ignored$|Removing leading)")


def zstd_compress(level: int = DEFAULT_LEVEL) -> list[str]:
    """argv of the compressor: pzstd (one thread per core, as zstd -T0) at `level`."""
    return ["pzstd", f"-{level}", "-q", "-c"]


def tar_create(directory: str, names: Path | str, verbose: bool = False) -> list[str]:
    """argv of tar that archives exactly the NUL-separated fs-relative names in `names` ("-": stdin)."""
    argv = ["tar", "--create", "--file=-", "-C", directory, *TAR_METADATA, *TAR_CREATE,
            f"--files-from={names}", f"--checkpoint={CHECKPOINT_RECORDS}",
            "--checkpoint-action=echo=@@%u %{}T", "--totals"]  # fmt: skip
    if verbose:
        argv += ["--verbose", "--index-file=/dev/stderr"]
    return argv


@dataclass
class TarMessages:
    """What tar said on stderr: progress, listed files (-V) and read errors."""

    verbose: bool = False
    on_progress: Callable[[int], None] | None = None
    on_line: Callable[[str], None] = log.warning
    read_errors: list[str] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)
    fail_fast: Callable[[], None] | None = None
    total: int = 0  # uncompressed stream bytes, from tar --totals
    _done: int = 0

    def feed(self, line: str) -> None:
        """Sort one stderr line."""
        m = _PROGRESS.match(line)
        if m:
            total = int(m.group(1))
            if self.on_progress:
                self.on_progress(total - self._done)
            self._done = total
        elif m := _TOTALS.match(line):
            self.total = int(m.group(1))
            if self.on_progress and self.total > self._done:
                self.on_progress(self.total - self._done)
        elif not line.startswith("tar: "):
            if self.verbose:
                self.on_line(line)
        elif BENIGN.search(line):
            if "socket ignored" in line:
                self.on_line(line)
        elif READ_ERRORS.search(line):
            self.read_errors.append(line)
            self.on_line(line)
            if self.fail_fast:
                self.fail_fast()
        else:
            self.other_errors.append(line)
            self.on_line(line)

    def pump(self, stream: IO[bytes]) -> threading.Thread:
        """Read `stream` line by line in a thread."""

        def loop() -> None:
            for raw in stream:
                self.feed(raw.decode("utf-8", "backslashreplace").rstrip("\n"))

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return t


def host_stream(directory: str, names: Path | str, messages: TarMessages, level: int) -> Pipeline:
    """The running pipeline `tar -c | zstd`; read the compressed stream from `.out`.

    names "-": tar reads them on its stdin, which the caller feeds (Pipeline.write) and closes."""
    stdin = PIPE if str(names) == "-" else None
    return Pipeline([tar_create(directory, names, messages.verbose), zstd_compress(level)], stdin=stdin, stderr=PIPE)
