"""Phase 1, capture: the mounted filesystems of a system into one archive (mksysb).

The steps are the same for every source: probe the layout, read the exclude rules, then
for each filesystem list its names, apply the rules, and stream it into the archive.
Where the bytes come from differs: host.py reads mounted filesystems with tar, and
offline.py reads an image's filesystems inside the libguestfs appliance.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tqdm import tqdm

from imgclone.archive.streams import DEFAULT_LEVEL, LEVELS
from imgclone.archive.writer import ArchiveWriter
from imgclone.capture import excludes
from imgclone.errors import ReadErrors, UsageError
from imgclone.model.boot import BootFacts
from imgclone.model.content import ContentFacts
from imgclone.model.layout import Layout
from imgclone.model.manifest import Excludes, Manifest, Source, StreamInfo

log = logging.getLogger("imgclone")

EXCLUDE_ROOTVG = "/etc/exclude.rootvg"


class ErrMode(StrEnum):
    """AIX's ALT_BAK_ERR_* handling of files that could not be read."""

    CONTINUE = "continue"  # messages, go on, exit 0
    REPORT = "report"  # ALT_BAK_ERR_REPORT=1: go on, exit 1
    FAIL = "fail"  # ALT_BAK_ERR_FAIL=1: stop, remove the partial archive, exit 1

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ErrMode:
        e = os.environ if env is None else env
        if e.get("ALT_BAK_ERR_FAIL") == "1":
            return cls.FAIL
        if e.get("ALT_BAK_ERR_REPORT") == "1":
            return cls.REPORT
        return cls.CONTINUE


@dataclass(frozen=True)
class CaptureOptions:
    output: str
    source: str | None = None  # an image or block device; None: this host
    mounts: tuple[str, ...] = ()
    exclude_list: str | None = None
    verbose: bool = False
    debug: bool = False
    err_mode: ErrMode = ErrMode.CONTINUE
    progress: bool | None = None  # None: when stderr is a terminal
    prescan: bool = False  # the first manifest's `prescan`: files near a type's limits (copy with a conversion)
    level: int = DEFAULT_LEVEL  # zstd's compression level
    snapshots: bool = False  # btrfs snapshots too (model/trees.py)


@dataclass
class Context:
    """State of one capture run."""

    opts: CaptureOptions
    workdir: Path
    writer: ArchiveWriter
    bar: Any
    layout: Layout = field(default_factory=Layout)
    rules: excludes.ExcludeRules = field(default_factory=excludes.ExcludeRules)
    streams: list[StreamInfo] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        """A message that does not break the progress bar."""
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)


def check_options(opts: CaptureOptions) -> None:
    """Usage errors before anything is written."""
    if opts.exclude_list is not None:
        check_exclude_list(opts.exclude_list)
    if opts.source and opts.mounts:
        raise UsageError("give either a SOURCE image or --mount, not both")
    if opts.level not in LEVELS:
        raise UsageError(f"--level {opts.level}: zstd's levels are {LEVELS[0]} to {LEVELS[-1]}",
                         f"{LEVELS[0]} is fastest, {DEFAULT_LEVEL} the default, {LEVELS[-1]} smallest")  # fmt: skip
    out = opts.output
    if out == "-":
        if sys.stdout.isatty():
            raise UsageError("-o -: standard output is a terminal", "redirect it to a file or a pipe")
    elif os.path.isdir(out):
        raise UsageError(f"-o {out}: is a directory", "name the archive file, e.g. -o /backup/host.mksysb")
    elif not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise UsageError(f"-o {out}: directory {os.path.dirname(os.path.abspath(out))} does not exist")


def check_exclude_list(path: str) -> None:
    """-e: a full path to a file of patterns grep accepts (checked before any probe or appliance)."""
    excludes.check_full_path(path)
    if not os.path.isfile(path):
        raise UsageError(f"exclude list {path}: no such file")
    excludes.load_rules([path])


def self_excludes(opts: CaptureOptions, workdir: Path) -> list[bytes]:
    """Patterns that keep the archive (and our scratch files) out of itself."""
    paths = [str(workdir)]
    if opts.output != "-":
        out = os.path.realpath(opts.output)
        paths += [out, out + ".partial"]
    return [excludes.self_pattern(os.fsencode("." + p)) for p in paths]


@contextmanager
def progress_bar(total: int, enabled: bool | None) -> Iterator[Any]:
    """tqdm over the estimated bytes (the filesystems' used bytes) when stderr is a terminal."""
    disable = not (sys.stderr.isatty() if enabled is None else enabled)
    bar = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, disable=disable,
               file=sys.stderr, desc="capture", dynamic_ncols=True)  # fmt: skip
    try:
        yield bar
    finally:
        bar.close()


def first_manifest(ctx: Context, source: Source, boot: BootFacts, inodes: Mapping[str, int],
                   prescan: Mapping[str, ContentFacts | None] | None) -> Manifest:  # fmt: skip
    """The manifest written before the streams: the layout and the rules the probe found, and what prepare knows."""
    return Manifest(layout=ctx.layout, source=source, boot=boot, excludes=Excludes.from_dict(ctx.rules.to_dict()),
                    inodes=dict(inodes), prescan=dict(prescan) if prescan is not None else None,
                    snapshots=ctx.opts.snapshots)  # fmt: skip


def run_capture(opts: CaptureOptions, prepare: Callable[[Context], Manifest],
                stream_all: Callable[[Context], None]) -> Manifest:  # fmt: skip
    """The common frame: archive writer, workdir, bar; cleanup on any failure."""
    check_options(opts)
    writer = ArchiveWriter(opts.output)
    try:
        with tempfile.TemporaryDirectory(prefix="imgclone-") as tmp:
            ctx = Context(opts=opts, workdir=Path(tmp), writer=writer, bar=None)
            first = prepare(ctx)
            writer.begin(first.to_dict(), len(first.trees()))
            with progress_bar(sum(f.used for f in ctx.layout.filesystems), opts.progress) as ctx.bar:
                stream_all(ctx)
            manifest = first.finished(tuple(ctx.streams), len(ctx.read_errors))
            writer.finish(manifest.to_dict())
    except BaseException:
        writer.abort()
        raise
    if ctx.read_errors and opts.err_mode is ErrMode.REPORT:
        raise ReadErrors(
            f"{len(ctx.read_errors)} file(s) could not be read; the archive {opts.output} was written without them",
            "ALT_BAK_ERR_REPORT=1 makes this an error",
        )
    return manifest


def record_read_error(ctx: Context, line: str) -> None:
    """AIX's backup errors: report; stop at once under ALT_BAK_ERR_FAIL."""
    ctx.read_errors.append(line)
    if ctx.opts.err_mode is ErrMode.FAIL:
        raise ReadErrors(f"capture stopped: {line}", "ALT_BAK_ERR_FAIL=1; the partial archive was removed")
