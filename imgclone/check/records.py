"""FileRecords from both sides: an archive stream (a pax tar read as it streams) and a target filesystem
(what TARGET_SCRIPT, run in the appliance, printed). Pure parsers; fidelity_guest runs them.

The archive side keeps what the pax headers hold: mtime with its decimals, SCHILY.xattr.* (the binary
system.posix_acl_* included: capture stores every namespace, numeric, beside tar's SCHILY.acl text, which
names users by this host's names and so is not compared), GNU sparse maps, hardlink members.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tarfile
from collections.abc import Iterator
from typing import IO

from imgclone.check.fidelity import FileRecord

_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
          tarfile.CHRTYPE: "chr", tarfile.BLKTYPE: "blk", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "file",
          tarfile.GNUTYPE_SPARSE: "file"}  # fmt: skip
_FIND_TYPES = {"f": "file", "d": "dir", "l": "symlink", "c": "chr", "b": "blk", "p": "fifo", "s": "socket"}
_XATTR = "SCHILY.xattr."


def rel(name: str | bytes) -> bytes:
    """A member or find path ("./etc/x", "etc/x/", ".") as the relative path records use ("etc/x", "")."""
    b = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    b = b.rstrip(b"/") if b not in (b"/", b"") else b""
    while b.startswith(b"./"):
        b = b[2:]
    return b"" if b in (b".", b"/") else b


def parse_mtime(text: str) -> tuple[int, int]:
    """A pax or find mtime ("1795702921.995111682", "-1.5", "17") → (nanoseconds, decimals held)."""
    whole, _, frac = text.strip().partition(".")
    digits = min(len(frac), 9)
    ns = int(whole or "0") * 10**9
    sign = -1 if whole.startswith("-") else 1
    return ns + sign * int((frac[:9] or "0").ljust(9, "0")), digits


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def archive_records(stream: IO[bytes]) -> Iterator[FileRecord]:
    """Every member of one decompressed filesystem stream, its content hashed as it goes by."""
    with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
        for ti in tar:
            yield member_record(ti, tar)


def member_record(ti: tarfile.TarInfo, tar: tarfile.TarFile | None = None) -> FileRecord:
    """One tar member as a FileRecord (tar: to hash a regular file's data)."""
    pax = ti.pax_headers
    mtime_ns, digits = parse_mtime(pax["mtime"]) if "mtime" in pax else (int(ti.mtime) * 10**9, 0)
    xattrs = tuple(sorted((_bytes(k[len(_XATTR) :]), _bytes(v)) for k, v in pax.items() if k.startswith(_XATTR)))
    common = dict(path=rel(ti.name), mode=ti.mode & 0o7777, uid=ti.uid, gid=ti.gid, mtime_ns=mtime_ns,
                  mtime_digits=digits, xattrs=xattrs)  # fmt: skip
    if ti.islnk():
        return FileRecord(type="file", link=rel(ti.linkname), **common)  # type: ignore[arg-type]
    kind = _TYPES.get(ti.type, "other")
    if kind == "file":
        digest = hashlib.sha256()
        f = tar.extractfile(ti) if tar is not None else None
        if f is not None:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        sparse: list[tuple[int, int]] | None = ti.sparse  # type: ignore[assignment]  # [(offset, length)] of data
        data = sum(n for _, n in sparse) if sparse is not None else None
        extents = sum(1 for _, n in sparse if n) if sparse is not None else 0
        return FileRecord(type=kind, size=ti.size, sha256=digest.hexdigest(), sparse_data=data,
                          sparse_extents=extents, **common)  # type: ignore[arg-type]  # fmt: skip
    if kind == "symlink":
        return FileRecord(type=kind, target=_bytes(ti.linkname), **common)  # type: ignore[arg-type]
    if kind in ("chr", "blk"):
        return FileRecord(type=kind, rdev=(ti.devmajor, ti.devminor), **common)  # type: ignore[arg-type]
    return FileRecord(type=kind, **common)  # type: ignore[arg-type]


# Run by /bin/sh in the appliance (not chrooted: the target may hold no tools, or no /bin at all) with the
# target filesystem mounted alone, read-only, at ROOT. One pass of each tool over the whole tree; every
# name is NUL-terminated or escaped by the tool, so any byte in a name survives. Output: files in OUT.
TARGET_SCRIPT = r"""
set -u
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$ROOT" || exit 1
find . -xdev -printf '%y %m %U %G %T@ %s %b %i\0%p\0%l\0' > "$OUT/meta" 2> "$OUT/errors"
find . -xdev -type f -print0 | xargs -0 -r sha256sum -z -- > "$OUT/sums" 2>> "$OUT/errors"
find . -xdev \( -type b -o -type c \) -print0 |
    xargs -0 -r stat --printf '%t %T\0%n\0' -- > "$OUT/devs" 2>> "$OUT/errors"
find . -xdev -print0 | xargs -0 -r getfattr -h -d -m - -e hex --absolute-names -- > "$OUT/xattrs" 2>> "$OUT/errors"
wc -c "$OUT/meta" "$OUT/sums" "$OUT/devs" "$OUT/xattrs" "$OUT/errors" | head -n 5
"""
TARGET_FILES = ("meta", "sums", "devs", "xattrs", "errors")
TARGET_OUT = "/tmp/imgclone-fidelity"


def target_script(root: str = "/sysroot", out: str = TARGET_OUT) -> str:
    """TARGET_SCRIPT for a tree at root (the appliance's mounted filesystem), writing its files into out."""
    return f"ROOT={shlex.quote(root)} OUT={shlex.quote(out)}\n" + TARGET_SCRIPT


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _fields(data: bytes) -> list[bytes]:
    parts = data.split(b"\0")
    return parts[:-1] if parts and parts[-1] == b"" else parts


def parse_sums(data: bytes) -> dict[bytes, str]:
    """sha256sum -z: "<hex>  <name>" (or "<hex> *<name>") per NUL-terminated record."""
    out = {}
    for item in _fields(data):
        digest, name = item[:64].decode(), item[66:]
        out[rel(name)] = digest
    return out


def parse_devs(data: bytes) -> dict[bytes, tuple[int, int]]:
    """stat --printf '%t %T\\0%n\\0': hex major and minor, then the name."""
    f = _fields(data)
    return {rel(f[i + 1]): (int(f[i].split()[0], 16), int(f[i].split()[1], 16)) for i in range(0, len(f) - 1, 2)}


def parse_xattrs(data: bytes) -> dict[bytes, tuple[tuple[bytes, bytes], ...]]:
    """getfattr -d -e hex: "# file: NAME" (NAME with octal escapes), then name=0xHEX lines, a blank line."""
    out: dict[bytes, tuple[tuple[bytes, bytes], ...]] = {}
    current: bytes | None = None
    items: list[tuple[bytes, bytes]] = []
    for line in data.split(b"\n") + [b""]:
        if line.startswith(b"# file: "):
            current = rel(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), line[8:]))
            items = []
        elif line and current is not None:
            name, _, value = line.partition(b"=")
            v = value.strip(b'"')
            items.append((name, bytes.fromhex(v[2:].decode()) if v.startswith(b"0x") else v))
        elif current is not None:
            out[current] = tuple(sorted(items))
            current = None
    return out


def target_records(files: dict[str, bytes]) -> list[FileRecord]:
    """The target's records from TARGET_SCRIPT's output files."""
    sums = parse_sums(files.get("sums", b""))
    devs = parse_devs(files.get("devs", b""))
    xattrs = parse_xattrs(files.get("xattrs", b""))
    f = _fields(files.get("meta", b""))
    out = []
    for i in range(0, len(f) - 2, 3):
        y, m, uid, gid, mtime, size, blocks, ino = f[i].decode().split(" ")
        path = rel(f[i + 1])
        kind = _FIND_TYPES.get(y, "other")
        ns, digits = parse_mtime(mtime)
        out.append(FileRecord(path=path, type=kind, mode=int(m, 8) & 0o7777, uid=int(uid), gid=int(gid),
                              mtime_ns=ns, mtime_digits=digits, size=int(size) if kind == "file" else 0,
                              sha256=sums.get(path, ""), target=f[i + 2] if kind == "symlink" else b"",
                              rdev=devs.get(path), xattrs=xattrs.get(path, ()), inode=int(ino),
                              allocated=int(blocks) * 512 if kind == "file" else None))  # fmt: skip
    return out
