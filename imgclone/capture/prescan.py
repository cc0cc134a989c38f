"""What `copy` knows of the content before it writes: the files near a filesystem type's limits.

A restore from an archive file checks each stream's content facts (model/content.py) against a converted type's limits
before it writes anything. `copy` plans from the first manifest, before any stream exists, so when it converts a
filesystem the capture first asks find for the only files that can matter: regular files over PRESCAN_FILE_BYTES
and files with more than PRESCAN_LINKS hard links. Every type's own limits are far above both (the smallest: 16 GiB
per file on ext2/3 with 1 KiB blocks, 32 000 links on ext2/3), so a file find does not name fits every type. The
candidates go through the exclude rules with their parent directories (a rule on a directory excludes what is
under it), and the kept ones give the facts. One find per filesystem, of names only: no data is read. xattr sizes
are not seen this way; the final manifest's streams have them, after the fact.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from imgclone.capture import excludes
from imgclone.model.content import ContentFacts, NameScan

PRESCAN_FILE_BYTES = 1 << 30
PRESCAN_LINKS = 1000
PRINTF = "%y %n %s ./%P\\0"  # content.FIND_PRINTF's records, named from the starting directory as find . names them


def find_argv(start: str, to: str | None = None) -> list[str]:
    """find of the candidates under start (one filesystem), as content.FIND_PRINTF records ('f 1 SIZE ./a/b'), on
    its stdout or into the file `to`."""
    printf = ["-printf", PRINTF] if to is None else ["-fprintf", to, PRINTF]
    return ["find", start, "-xdev", "(", "-type", "f", "-size", f"+{PRESCAN_FILE_BYTES}c", "-o", "!", "-type", "d",
            "-links", f"+{PRESCAN_LINKS}", ")", *printf]  # fmt: skip


def with_parents(records: Iterable[bytes]) -> list[bytes]:
    """find's candidate records ('f 1 SIZE ./a/b'), each after the records of its parent directories ('d 2 0 ./a',
    once each), in the order find -print0 lists a tree: parents first."""
    out: list[bytes] = [b"d 2 0 ."]
    seen = {b"."}
    for rec in records:
        name = rec.split(b" ", 3)[3]
        parents = []
        parent = os.path.dirname(name)
        while parent not in seen and parent not in (b"", b"/"):
            parents.append(parent)
            seen.add(parent)
            parent = os.path.dirname(parent)
        out += [b"d 2 0 " + p for p in reversed(parents)]
        if name not in seen:
            seen.add(name)
            out.append(rec)
    return out


def facts(records: bytes, mountpoint: str, rules: excludes.ExcludeRules, workdir: Path) -> ContentFacts:
    """The content facts of the candidates find printed (NUL-terminated FIND_PRINTF records of one filesystem)
    that the rules keep. Facts of 0: nothing near a limit."""
    listed, kept = workdir / "prescan.names", workdir / "prescan.kept"
    listed.write_bytes(b"".join(r + b"\0" for r in with_parents(r for r in records.split(b"\0") if r)))
    prefix = excludes.tree_prefix(mountpoint)
    scan = NameScan(mountpoint)
    excludes.select(listed, kept, rules, prefix=prefix, scan=scan)
    listed.unlink()
    kept.unlink()
    found = scan.facts()
    assert found is not None  # a NameScan is never broken
    return found
