"""What a filesystem's content needs of the filesystem it is restored into, gathered while capturing.

The manifest records, per stream (its `content`), the largest regular file (apparent size, so a sparse file
counts at its full size), the file with the most hard links and, where the capture reads the tar stream itself,
the largest extended attribute. The planner checks them against each target type's limits (fs/limits.py).

They are gathered in the pass the capture already makes, never by a second walk of the tree:

- from this host, find lists the names for tar: it prints `%y %n %s` before each name (one lstat per name, of an
  inode tar stats next) and NameScan strips them again, counting only the names the exclude rules keep. Links
  are the source's st_nlink (links outside the stream count too: an upper bound). xattrs are not seen (tar
  writes straight into zstd), so largest_xattr stays None.
- from an image, the appliance's tar stream passes through the host on its way to zstd: TarScan reads its
  headers as it goes (pax records: sizes, sparse sizes, SCHILY.xattr values; hard-link members counted per
  target, so links are exactly those the stream restores).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

FIND_PRINTF = "%y %n %s %p\\0"  # find -printf: type, links, size, then the name as -print0 writes it
BLOCK = 512
_XATTR = b"SCHILY.xattr."


@dataclass(frozen=True)
class ContentFacts:
    """The content's extremes in one filesystem stream (paths as on the source system)."""

    largest_file: int = 0
    largest_file_path: str = ""
    most_links: int = 0
    most_links_path: str = ""
    largest_xattr: int | None = None  # value bytes; None: not recorded (host capture)
    largest_xattr_name: str = ""
    largest_xattr_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}  # the defaults stay out

    def merged(self, other: ContentFacts | None) -> ContentFacts | None:
        """The extremes of two streams of one filesystem (a btrfs's subvolumes); None when either records nothing."""
        if other is None:
            return None
        a, b = self, other
        size = a if a.largest_file >= b.largest_file else b
        links = a if a.most_links >= b.most_links else b
        if a.largest_xattr is None or b.largest_xattr is None:
            xattr = ContentFacts()
        else:
            xattr = a if a.largest_xattr >= b.largest_xattr else b
        return ContentFacts(size.largest_file, size.largest_file_path, links.most_links, links.most_links_path,
                            xattr.largest_xattr, xattr.largest_xattr_name, xattr.largest_xattr_path)  # fmt: skip

    @classmethod
    def from_dict(cls, d: Any) -> ContentFacts | None:
        """The facts of a manifest stream's `content`; None when absent or not a mapping of known types."""
        if not isinstance(d, dict):
            return None
        out: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, str if f.name.endswith(("_path", "_name")) else int):
                return None
            out[f.name] = v
        return cls(**out)


def _system_path(mountpoint: str, name: bytes) -> str:
    """'./etc/x' of the filesystem at /var → '/var/etc/x'."""
    rel = name[1:] if name.startswith(b"./") else b"/" + name.lstrip(b"/")
    return (mountpoint.rstrip("/") + rel.decode("utf-8", "backslashreplace")) or "/"


class _Extremes:
    """Running maxima over the files seen."""

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self.size, self.size_name = 0, b""
        self.links, self.links_name = 0, b""
        self.xattr: int | None = None
        self.xattr_key, self.xattr_name = b"", b""
        self.broken = False  # the listing could not be read: no facts

    def facts(self) -> ContentFacts | None:
        if self.broken:
            return None

        def path(n: bytes) -> str:
            return _system_path(self.mountpoint, n) if n else ""

        return ContentFacts(self.size, path(self.size_name), self.links, path(self.links_name), self.xattr,
                            self.xattr_key.decode("utf-8", "backslashreplace"), path(self.xattr_name))  # fmt: skip


class NameScan(_Extremes):
    """find's `FIND_PRINTF` records → the names, with the extremes of the names that are kept.

    names() yields each record's name and remembers its type, links and size; keeping() wraps the function the
    kept names are written with (excludes.select_stream calls it right after reading the name it keeps).
    """

    _last = (b"d", b"0", b"0")

    def names(self, records: Iterable[bytes]) -> Iterator[bytes]:
        for rec in records:
            kind, links, size, name = rec.split(b" ", 3)
            self._last = (kind, links, size)
            yield name

    def keeping(self, write: Callable[[bytes], object]) -> Callable[[bytes], object]:
        def kept(name0: bytes) -> object:
            kind, links, size = self._last
            if kind != b"d":
                if kind == b"f" and int(size) > self.size:
                    self.size, self.size_name = int(size), name0.rstrip(b"\0")
                if int(links) > self.links:
                    self.links, self.links_name = int(links), name0.rstrip(b"\0")
            return write(name0)

        return kept


def _number(field: bytes) -> int:
    """A tar header's numeric field: octal text, or base-256 when the high bit is set (GNU, for big sizes)."""
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """'<len> key=value\\n' records (values may be binary: xattrs)."""
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            break
        end = pos + int(data[pos:space])
        key, _, value = data[space + 1 : end - 1].partition(b"=")
        out[key] = value
        pos = end
    return out


class TarScan(_Extremes):
    """The headers of a tar stream (pax or GNU) fed in chunks as it passes; member data is skipped unread."""

    def __init__(self, mountpoint: str) -> None:
        super().__init__(mountpoint)
        self._buf = bytearray()
        self._need = BLOCK  # bytes to gather: a header, or a pax/long-name member's data
        self._meta: bytes | None = None  # the type of the member whose data is being gathered
        self._skip = 0
        self._pax: dict[bytes, bytes] = {}
        self._long: dict[bytes, bytes] = {}
        self._hardlinks: dict[bytes, int] = {}
        self.xattr = 0  # the stream holds every xattr: none seen is none there

    def feed(self, data: bytes | memoryview) -> None:
        """Read the headers in data; a stream it cannot parse stops the scan (facts() is then None), never the copy."""
        if self.broken:
            return
        try:
            self._feed(data)
        except (ValueError, IndexError):
            self.broken = True

    def _feed(self, data: bytes | memoryview) -> None:
        view, i = memoryview(data), 0
        while i < len(view):
            if self._skip:
                k = min(self._skip, len(view) - i)
                self._skip, i = self._skip - k, i + k
                continue
            take = view[i : i + self._need - len(self._buf)]
            self._buf += take
            i += len(take)
            if len(self._buf) == self._need:
                block, self._buf = bytes(self._buf), bytearray()
                self._data(block) if self._meta is not None else self._header(block)

    def _data(self, data: bytes) -> None:
        kind, self._meta, self._need = self._meta, None, BLOCK
        if kind == b"x":
            self._pax = _pax_records(data)
        elif kind in (b"L", b"K"):
            self._long[kind] = data.split(b"\0", 1)[0]

    def _header(self, block: bytes) -> None:
        if not block.strip(b"\0"):
            return  # tar's end (or its padding)
        size, kind = _number(block[124:136]), block[156:157]
        padded = size + (-size % BLOCK)
        if kind in (b"x", b"L", b"K"):
            self._meta, self._need = kind, max(padded, BLOCK)
            if size == 0:
                self._meta, self._need = None, BLOCK
            return
        pax, self._pax = self._pax, {}
        long, self._long = self._long, {}
        name = pax.get(b"path") or long.get(b"L") or _ustar_name(block)
        stored = int(pax.get(b"size", size))
        self._skip = stored + (-stored % BLOCK)
        if kind == b"g":
            return
        if kind in (b"0", b"\0", b"7", b"S"):
            real = int(pax.get(b"GNU.sparse.realsize") or pax.get(b"GNU.sparse.size") or stored)
            if real > self.size:
                self.size, self.size_name = real, pax.get(b"GNU.sparse.name") or name
        elif kind == b"1":
            target = pax.get(b"linkpath") or long.get(b"K") or block[157:257].split(b"\0", 1)[0]
            links = self._hardlinks[target] = self._hardlinks.get(target, 1) + 1
            if links > self.links:
                self.links, self.links_name = links, target
        if kind not in (b"1", b"5") and self.links == 0:
            self.links, self.links_name = 1, name
        for key, value in pax.items():
            if key.startswith(_XATTR) and len(value) > (self.xattr or -1):
                self.xattr, self.xattr_key, self.xattr_name = len(value), key[len(_XATTR) :], name


def _ustar_name(block: bytes) -> bytes:
    name = block[0:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
    return prefix + b"/" + name if prefix else name
