"""Exclude rules for capture: grep patterns matched against "./"-relative path names.

mksysb and alt_disk_copy -e build their file list as `find . | grep -v -f /etc/exclude.rootvg`: each
line of an exclude list is a grep basic regular expression, matched against the path relative to "/"
written with a leading "./" ("./tmp/a"). imgclone follows those rules exactly by running GNU grep itself
(LC_ALL=C, BRE, -z so a name may hold newlines or any byte): "+", "?" and "|" are literal, GNU "\\|"
alternates, and "^"/"$" anchor at the start/end of the whole name. Blank lines are ignored (an empty
pattern would make grep exclude everything).

One addition to a plain `grep -v`: a clone cannot hold a directory's contents without the directory,
so everything below an excluded directory is dropped too. "^./tmp/" keeps /tmp (empty) and drops its
contents; "^./tmp$" drops /tmp and, with it, everything in it.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from imgclone.errors import CommandError, UsageError
from imgclone.host.run import HOST, Runner
from imgclone.model.content import NameScan

log = logging.getLogger("imgclone")

# patterns come on stdin (-f -), one a line; -a: never "binary file matches"; -G: basic regular expressions
_GREP = ["grep", "-z", "-a", "-G", "--color=never", "-f", "-"]
_ENV = {"LC_ALL": "C"}
_HINT = "patterns are grep basic regular expressions"
_BRE_SPECIAL = frozenset(b".[]*^$\\")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExcludeRules:
    """grep patterns (blank lines dropped) and the exclude lists they were read from."""

    patterns: tuple[bytes, ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form for messages and the manifest."""
        return {
            "sources": list(self.sources),
            "patterns": [p.decode("utf-8", "backslashreplace") for p in self.patterns],
        }


@dataclass(frozen=True)
class Selection:
    """What select() wrote: the number of kept names and the top-most excluded names (fs-relative)."""

    kept: int
    excluded: tuple[bytes, ...]


def tree_prefix(mountpoint: str) -> bytes:
    """How the rules see a filesystem's root: its mount point `./`-relative (b"." for /, b"./var" for /var)."""
    return os.fsencode("." + mountpoint.rstrip("/")) if mountpoint != "/" else b"."


def check_full_path(path: str) -> None:
    """Reject an exclude list (-e) that is not a full path name, as AIX requires."""
    if not path.startswith("/"):
        raise UsageError(
            f"exclude list {path or repr(path)}: must be a full path name",
            hint="give it as /path/to/excludelist",
        )


def bre_escape(path: bytes) -> bytes:
    """Escape path so that, as a grep basic regular expression, it matches exactly this text."""
    if b"\n" in path:
        raise UsageError(f"cannot exclude {path!r}: a grep pattern cannot hold a newline")
    return b"".join(b"\\" + bytes([c]) if c in _BRE_SPECIAL else bytes([c]) for c in path)


def self_pattern(relpath: bytes) -> bytes:
    """The pattern that excludes exactly one "./"-relative path (e.g. the archive being written)."""
    return b"^" + bre_escape(relpath) + b"$"


def _read_list(path: Path, optional: set[Path]) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        if path in optional:
            return None
        raise UsageError(f"exclude list {path}: {e.strerror}") from e
    except OSError as e:
        raise UsageError(f"exclude list {path}: {e.strerror}") from e


def _grep_error(patterns: Sequence[bytes], runner: Runner) -> str | None:
    """grep's message when it rejects one of patterns, else None (warnings are logged)."""
    res = runner.run([*_GREP, os.devnull], input=_pattern_input(patterns), check=False, env=_ENV)
    lines = [line.strip() for line in res.stderr.splitlines() if line.strip()]
    if res.returncode <= 1:
        for line in lines:
            log.warning("exclude list: %s", line)
        return None
    last = lines[-1] if lines else f"grep exited with status {res.returncode}"
    return re.sub(r"^grep: -:\d+: ", "grep: ", last)


def _pattern_input(patterns: Sequence[bytes]) -> bytes:
    return b"".join(p + b"\n" for p in patterns)


def load_rules(
    paths: Sequence[str | Path],
    *,
    extra: Sequence[bytes] = (),
    runner: Runner = HOST,
    missing_ok: Sequence[str | Path] = (),
) -> ExcludeRules:
    """Read exclude lists (one grep pattern a line) plus extra patterns; check that grep accepts them."""
    optional = {Path(p) for p in missing_ok}
    groups: list[tuple[str | None, tuple[bytes, ...]]] = []
    for p in paths:
        data = _read_list(Path(p), optional)
        if data is not None:
            groups.append((str(p), tuple(line for line in data.split(b"\n") if line)))
    for pat in extra:
        if b"\n" in pat:
            raise UsageError(f"exclude pattern {pat!r}: a grep pattern cannot hold a newline")
    groups.append((None, tuple(p for p in extra if p)))
    patterns = tuple(pat for _, pats in groups for pat in pats)
    if patterns and _grep_error(patterns, runner) is not None:
        _raise_rejected(groups, runner)
    return ExcludeRules(patterns, tuple(src for src, _ in groups if src is not None))


def _raise_rejected(groups: Sequence[tuple[str | None, tuple[bytes, ...]]], runner: Runner) -> None:
    """Find which list holds the pattern grep rejects and raise a UsageError naming it."""
    for src, pats in groups:
        msg = _grep_error(pats, runner) if pats else None
        if msg is None:
            continue
        if src is None:
            raise UsageError(f"exclude patterns {list(pats)!r}: grep rejects a pattern: {msg}", hint=_HINT)
        raise UsageError(f"exclude list {src}: grep rejects a pattern: {msg}", hint=_HINT)
    srcs = ", ".join(src for src, _ in groups if src is not None) or "(none)"
    raise UsageError(f"exclude lists {srcs}: grep rejects the patterns", hint=_HINT)


def read_names(path: Path) -> Iterator[bytes]:
    """The NUL-terminated names in path, one at a time (a missing final NUL is tolerated)."""
    with path.open("rb") as f:
        yield from split_names(f)


def split_names(f: IO[bytes]) -> Iterator[bytes]:
    """The NUL-terminated names read from f (a file or a pipe), as they arrive."""
    read: Callable[[int], bytes] = getattr(f, "read1", f.read)  # a pipe: what has arrived, not a full chunk
    rest = b""
    while chunk := read(_CHUNK):
        parts = (rest + chunk).split(b"\0")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def literal_path(pattern: bytes) -> bytes | None:
    """The one path a pattern matches when it is an exact ^path$ (as self_pattern writes), else None."""
    if not (pattern.startswith(b"^") and pattern.endswith(b"$")):
        return None
    out = bytearray()
    body = pattern[1:-1]
    i = 0
    while i < len(body):
        c = body[i]
        if c == ord("\\"):
            if i + 1 >= len(body) or body[i + 1] not in _BRE_SPECIAL:
                return None  # a trailing backslash escapes the "$"; others are GNU operators (\w, \|, \{)
            out.append(body[i + 1])
            i += 2
        elif c in _BRE_SPECIAL:
            return None
        else:
            out.append(c)
            i += 1
    return bytes(out)


def literal_paths(rules: ExcludeRules) -> frozenset[bytes] | None:
    """The exact paths the rules exclude when every pattern is an exact path, else None (grep is needed)."""
    paths = [literal_path(p) for p in rules.patterns]
    return None if any(p is None for p in paths) else frozenset(p for p in paths if p is not None)


def system_name(name: bytes, prefix: bytes) -> bytes:
    """The system-relative path of a fs-relative name: its leading "." replaced by prefix."""
    if name == b".":
        return prefix
    if not name.startswith(b"./"):
        raise ValueError(f"not a name as `find .` prints it: {name!r}")
    return prefix + name[1:]


def _under(sysname: bytes, matched: set[bytes]) -> bool:
    """Whether a directory above sysname is in matched."""
    i = sysname.rfind(b"/")
    while i > 0:
        if sysname[:i] in matched:
            return True
        i = sysname.rfind(b"/", 0, i)
    return False


def _matches(names: Iterable[bytes], tmpdir: Path, rules: ExcludeRules, prefix: bytes, runner: Runner
             ) -> set[bytes]:  # fmt: skip
    """The system-relative paths grep matches, from one grep over a temporary list file."""
    fd, listfile = tempfile.mkstemp(prefix=".imgclone-names-", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as f:
            for name in names:
                f.write(system_name(name, prefix) + b"\0")
        argv = [*_GREP, "--", listfile]
        res = runner.run(argv, input=_pattern_input(rules.patterns), check=False, env=_ENV)
    finally:
        os.unlink(listfile)
    if res.returncode == 1:
        return set()
    if res.returncode != 0:
        raise CommandError(argv, res.returncode, res.stderr)
    return set(res.stdout.split(b"\0")[:-1])


def select(
    names: Path, out: Path, rules: ExcludeRules, *, prefix: bytes = b".", runner: Runner = HOST,
    scan: NameScan | None = None, also: Collection[bytes] = (),
) -> Selection:  # fmt: skip
    """Write to out the NUL-terminated names the rules keep; return the count and what was excluded.

    scan: names holds find's content.FIND_PRINTF records, and scan gathers the facts of the kept names.
    also: names ("./a/b", as find . prints them) left out whatever the rules say (nested btrfs subvolumes)."""
    if prefix != b"." and not (prefix.startswith(b"./") and not prefix.endswith(b"/")):
        raise ValueError(f"prefix must be b'.' or b'./dir': {prefix!r}")

    def listing() -> Iterable[bytes]:
        return read_names(names) if scan is None else scan.names(read_names(names))

    matched = _matches(listing(), out.parent, rules, prefix, runner) if rules.patterns else set()
    matched |= {system_name(n, prefix) for n in also}
    with out.open("wb") as f:
        return select_stream(listing(), matched, f.write if scan is None else scan.keeping(f.write), prefix=prefix)


def select_stream(
    names: Iterable[bytes], paths: Collection[bytes], write: Callable[[bytes], object], *, prefix: bytes = b"."
) -> Selection:
    """select() as a stream, for rules that are exact paths (literal_paths): each kept name goes to write
    (NUL-terminated) as soon as it is read, so a tar reading them can start before the listing ends."""
    if prefix != b"." and not (prefix.startswith(b"./") and not prefix.endswith(b"/")):
        raise ValueError(f"prefix must be b'.' or b'./dir': {prefix!r}")
    matched = set(paths)
    kept = 0
    excluded: list[bytes] = []
    for name in names:
        if matched:
            sysname = system_name(name, prefix)
            if _under(sysname, matched):
                continue
            if sysname in matched:
                excluded.append(name)
                continue
        write(name + b"\0")
        kept += 1
    return Selection(kept, tuple(excluded))
