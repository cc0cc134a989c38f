"""The content check a restore can only make as a stream passes: xattrs no manifest recorded.

The plan refuses, before anything is written, a file that a converted filesystem's type cannot hold, from the
content facts the archive records (model/content.py, capture/prescan.py). xattr sizes are not always among them: a
host capture does not see them, and a copy's prescan does not look. Restored into a type that holds smaller xattrs
than the source's (xfs or btrfs to ext4, xfs to btrfs), such an xattr would not fail the restore: GNU tar cannot set
it, says so in a warning and exits 0 (measured: tar 1.34, 2000 bytes into an ext4 of 1 KiB blocks), and tar_in shows
no warning of a command that succeeded. The file would arrive without it.

So such a stream's headers are read on their way to tar_in (TarScan: the member data is skipped unread), and the
restore stops at the first file the target cannot hold, before tar has it, with the plan's own refusal line.
Streams whose xattr sizes are known, or whose target holds what the source held, pass unread.
"""

from __future__ import annotations

from collections.abc import Mapping

from imgclone.fs import limits
from imgclone.model.content import ContentFacts, TarScan
from imgclone.model.layout import Filesystem, Layout
from imgclone.plan.types import Plan


class StreamGuard:
    """One stream's headers, checked against its target filesystem's limits chunk by chunk."""

    def __init__(self, target: Filesystem, old_type: str) -> None:
        self.target = target
        self.old_type = old_type
        self.scan = TarScan(target.mountpoint)

    def check(self, chunk: bytes | memoryview) -> str | None:
        """Read the headers in chunk; the refusal when a file seen so far does not fit, else None."""
        self.scan.feed(chunk)
        facts = self.scan.facts()
        if facts is None:
            return None  # not a tar stream TarScan can read: tar_in says what is wrong with it
        problems = limits.content_problems(Layout(filesystems=(self.target,)), {self.target.id: facts},
                                           {self.target.id: self.old_type})  # fmt: skip
        return problems[0] if problems else None


def guards(plan: Plan, content: Mapping[str, ContentFacts | None]) -> dict[str, StreamGuard]:
    """fs id → a guard, for the streams whose xattr sizes are not known and whose target type holds smaller xattrs
    than their source's; content: the facts the plan checked (planning_content)."""
    source = {fs.id: fs for fs in plan.source.filesystems}
    out = {}
    for fs in plan.target.filesystems:
        facts, old = content.get(fs.id), source.get(fs.id)
        if old is None or (facts is not None and facts.largest_xattr is not None):
            continue
        if limits.max_xattr_bytes(fs) < limits.max_xattr_bytes(old):
            out[fs.id] = StreamGuard(fs, str(old.type))
    return out
