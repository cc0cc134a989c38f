"""Walk a directory tree and describe every file's content and metadata, for comparisons."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

SKIP_XATTRS = {b"system.posix_acl_access", b"system.posix_acl_default"}  # compared through getfacl text


def _xattrs(path: bytes) -> dict[str, bytes]:
    out = {}
    for name in os.listxattr(path, follow_symlinks=False):
        out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def describe(root: str, *, times: bool = True) -> dict[bytes, dict[str, Any]]:
    """relative path → metadata (mode, owner, times, size, digest, link target, rdev, xattrs, inode group)."""
    broot = os.fsencode(root)
    result: dict[bytes, dict[str, Any]] = {}
    inodes: dict[int, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(broot):
        dirnames.sort()
        for name in [b"", *sorted(dirnames), *sorted(filenames)] if dirpath == broot else sorted(dirnames + filenames):
            path = os.path.join(dirpath, name) if name else dirpath
            rel = b"./" + os.path.relpath(path, broot) if path != broot else b"."
            if rel in result or rel == b"./lost+found" or rel.startswith(b"./lost+found/"):
                continue
            st = os.lstat(path)
            d: dict[str, Any] = {
                "mode": st.st_mode,
                "uid": st.st_uid,
                "gid": st.st_gid,
                "xattrs": _xattrs(path),
            }
            if times and not stat.S_ISDIR(st.st_mode):
                d["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                d["size"] = st.st_size
                d["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
                d["sparse"] = st.st_blocks * 512 < st.st_size // 2
                if st.st_nlink > 1:
                    d["hardlink_group"] = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                d["target"] = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                d["rdev"] = st.st_rdev
            result[rel] = d
    return result


def diff(a: dict[bytes, dict[str, Any]], b: dict[bytes, dict[str, Any]]) -> list[str]:
    """Human-readable differences between two descriptions."""
    out = [f"only in first: {k!r}" for k in sorted(a.keys() - b.keys())]
    out += [f"only in second: {k!r}" for k in sorted(b.keys() - a.keys())]
    for k in sorted(a.keys() & b.keys()):
        for field in sorted(a[k].keys() | b[k].keys()):
            if a[k].get(field) != b[k].get(field):
                out.append(f"{k!r} {field}: {a[k].get(field)!r} != {b[k].get(field)!r}")
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
