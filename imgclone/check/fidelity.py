"""archive verify --against: every file of an archive compared with the restored target, by rule.

Pure functions over two lists of FileRecord (the archive's streams, read by fidelity_read; the target's
filesystems, read in the appliance by fidelity_guest). A difference is either an error, or explained by a
rule: a phase of imgclone writes that path (restore's fix-ups, Phase 3's GRUB and initramfs, mkfs's
lost+found, mount points the restore made), or the target filesystem cannot hold the attribute (vfat has no
owners, modes or xattrs). Those are listed apart with their rule, never hidden, and do not fail.

What is compared, per path: file type, permission bits (with set-id and sticky), owner and group (numeric),
mtime at the precision the archive holds (directories too), content (size and sha256), symlink target,
device numbers, every xattr (security.* and trusted.* included) with POSIX ACLs (system.posix_acl_*)
reported as their own kind, hardlink groups (the set of paths sharing an inode), and sparseness: a file
the archive holds as sparse must be sparse on the target (see sparse_ok). atime and ctime are not
compared: restoring cannot keep them.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KINDS = ("type", "mode", "owner", "mtime", "content", "symlink", "device", "xattr", "acl", "hardlink", "sparse")
ACL_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default")
FS_BLOCK = 4096
SPARSE_SLACK = 64 * 1024  # extent-tree / bmap-btree blocks count in st_blocks too

# Paths each phase of imgclone writes (absolute in the clone): differences there are "changed by imgclone".
PHASE_PATHS: dict[str, tuple[str, ...]] = {
    "1": ("/etc/fstab", "/etc/crypttab", "/etc/initramfs-tools/conf.d/resume", "/etc/default/grub"),
    "3": ("/boot/grub", "/boot/grub/*", "/boot/efi/EFI", "/boot/efi/EFI/*", "/boot/initrd.img-*",
          "/var/lib/initramfs-tools", "/var/lib/initramfs-tools/*",  # update-initramfs's record of what it made
          "/run/lock/lvm",  # grub-probe in the clone takes LVM's lock there
          "/etc/initramfs-tools/scripts/init-premount/imgclone-vgname"),
}  # fmt: skip
PHASE_WHY = {"1": "restore rewrites it (new UUIDs, types)", "3": "Phase 3 writes it (GRUB, initramfs)"}
NO_POSIX = ("vfat", "msdos", "exfat")  # owners and modes come from mount options; no xattrs, links or devices
NO_POSIX_KINDS = ("mode", "owner", "xattr", "acl", "hardlink", "symlink", "device", "type")


@dataclass(frozen=True)
class FileRecord:
    """One path of one filesystem, as the archive or the target holds it (path relative, "" is the root)."""

    path: bytes
    type: str  # file, dir, symlink, chr, blk, fifo, socket
    mode: int  # permission bits, set-id and sticky included
    uid: int
    gid: int
    mtime_ns: int
    mtime_digits: int = 9  # decimals of a second the source of this record holds
    size: int = 0
    sha256: str = ""
    target: bytes = b""  # symlink target
    rdev: tuple[int, int] | None = None
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    link: bytes | None = None  # archive: the path this hardlink member points at
    inode: int | None = None  # target: the inode (hardlink groups)
    sparse_data: int | None = None  # archive: bytes the sparse map holds (None: not stored sparse)
    sparse_extents: int = 0
    allocated: int | None = None  # target: st_blocks * 512


@dataclass(frozen=True)
class Difference:
    path: str  # absolute in the clone
    kind: str
    archive: str
    target: str
    rule: str = ""  # the rule that explains it (changed by imgclone, or not kept by the target type); "" for an error

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class FsResult:
    """One filesystem: how it was found on the target, counts, differences."""

    fs: str
    mountpoint: str
    device: str
    type: str = ""  # on the target
    uuid: str = ""
    compared: int = 0
    equal: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["differences"] = [x.to_dict() for x in self.differences]
        return d


@dataclass
class Report:
    archive: str
    targets: list[str]
    mapping: str  # how archive filesystems were matched with the target's
    filesystems: list[FsResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Difference]:
        return [d for f in self.filesystems for d in f.differences if not d.rule]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        """Files compared, equal, differing by kind, missing and extra (errors only), and explained by rule."""
        kinds: dict[str, int] = {}
        for d in self.errors:
            if d.kind not in ("missing", "extra"):
                kinds[d.kind] = kinds.get(d.kind, 0) + 1
        return {
            "compared": sum(f.compared for f in self.filesystems),
            "equal": sum(f.equal for f in self.filesystems),
            "differing": len({(d.path) for d in self.errors if d.kind not in ("missing", "extra")}),
            "by_kind": kinds,
            "missing": sum(1 for d in self.errors if d.kind == "missing"),
            "extra": sum(1 for d in self.errors if d.kind == "extra"),
            "by_rule": len({d.path for f in self.filesystems for d in f.differences if d.rule}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"archive": self.archive, "targets": self.targets, "mapping": self.mapping, "ok": self.ok,
                "summary": self.summary(), "notes": self.notes,
                "filesystems": [f.to_dict() for f in self.filesystems]}  # fmt: skip


def clone_path(mountpoint: str, rel: bytes) -> str:
    """A filesystem-relative path as the clone sees it, for messages and rules."""
    text = rel.decode("utf-8", "backslashreplace")
    return posixpath.join(mountpoint, text) if text else mountpoint


def imgclone_rule(path: str, phases: Iterable[str], mountpoints: Sequence[str]) -> str:
    """Why imgclone itself changed `path` (a rule's reason), or "" when no rule covers it."""
    for phase in phases:
        if any(fnmatch.fnmatchcase(path, p) for p in PHASE_PATHS.get(phase, ())):
            return PHASE_WHY[phase]
    if posixpath.basename(path) == "lost+found" and posixpath.dirname(path) in mountpoints:
        return "mkfs makes lost+found (it belongs to the filesystem type)"
    if path in mountpoints:
        return "a mount point restore made for a filesystem mounted there"
    return ""


def _parent_rule(path: str, changed: set[str]) -> str:
    """A directory whose entries imgclone changed has a new mtime."""
    prefix = path.rstrip("/") + "/"
    return "holds entries imgclone changed" if any(c.startswith(prefix) for c in changed) else ""


def sparse_ok(a: FileRecord, t: FileRecord) -> bool:
    """The archive's sparse file has holes on the target: it allocates less than its size, and no more than its
    mapped data with each extent widened to 4 KiB blocks (plus 64 KiB of mapping metadata)."""
    if a.sparse_data is None or a.sparse_data >= a.size or t.allocated is None:
        return True
    bound = a.sparse_data + 2 * FS_BLOCK * max(a.sparse_extents, 1) + SPARSE_SLACK
    return bool(t.allocated < a.size and t.allocated <= bound)


def _mtime_text(ns: int, digits: int) -> str:
    s, frac = divmod(ns, 10**9)
    return f"{s}.{frac:09d}"[: len(str(s)) + 1 + digits] if digits else str(s)


def _same_mtime(a: FileRecord, t: FileRecord) -> bool:
    unit: int = 10 ** (9 - min(a.mtime_digits, t.mtime_digits))
    return a.mtime_ns // unit == t.mtime_ns // unit


_ACL_TAGS = {1: "user:", 2: "user:", 4: "group:", 8: "group:", 0x10: "mask:", 0x20: "other:"}


def acl_text(value: bytes) -> str:
    """A binary POSIX ACL xattr (version 2, then 8-byte entries: tag, perm, id) as getfacl -n writes it."""
    if len(value) < 4 or (len(value) - 4) % 8 or int.from_bytes(value[:4], "little") != 2:
        return value.hex()
    out = []
    for i in range(4, len(value), 8):
        tag, perm = int.from_bytes(value[i : i + 2], "little"), int.from_bytes(value[i + 2 : i + 4], "little")
        qualifier = str(int.from_bytes(value[i + 4 : i + 8], "little")) if tag in (2, 8) else ""
        bits = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        out.append(f"{_ACL_TAGS.get(tag, f'{tag}:')}{qualifier}:{bits}")
    return ",".join(out)


def _value_text(name: bytes, v: bytes) -> str:
    if name in ACL_XATTRS:
        return acl_text(v)
    text = v.rstrip(b"\0")
    if text and all(32 <= c < 127 for c in text):
        return repr(text.decode())
    return "0x" + v.hex() if v else "''"


def _xattr_text(items: Mapping[bytes, bytes]) -> str:
    return ", ".join(f"{k.decode(errors='replace')}={_value_text(k, v)}" for k, v in sorted(items.items()))


def attribute_differences(a: FileRecord, t: FileRecord) -> list[tuple[str, str, str]]:
    """(kind, archive value, target value) for each attribute that differs; hardlink groups aside."""
    out: list[tuple[str, str, str]] = []
    if a.type != t.type:
        return [("type", a.type, t.type)]
    if a.mode != t.mode:
        out.append(("mode", f"{a.mode:04o}", f"{t.mode:04o}"))
    if (a.uid, a.gid) != (t.uid, t.gid):
        out.append(("owner", f"{a.uid}:{a.gid}", f"{t.uid}:{t.gid}"))
    if a.type != "symlink" and not _same_mtime(a, t):
        digits = min(a.mtime_digits, t.mtime_digits)
        out.append(("mtime", _mtime_text(a.mtime_ns, digits), _mtime_text(t.mtime_ns, digits)))
    if a.type == "file" and (a.size, a.sha256) != (t.size, t.sha256):
        out.append(("content", f"{a.size} bytes sha256 {a.sha256[:16]}", f"{t.size} bytes sha256 {t.sha256[:16]}"))
    if a.type == "file" and not sparse_ok(a, t):
        out.append(("sparse", f"{a.sparse_data} of {a.size} bytes stored", f"{t.allocated} bytes allocated"))
    if a.type == "symlink" and a.target != t.target:
        out.append(("symlink", a.target.decode(errors="replace"), t.target.decode(errors="replace")))
    if a.type in ("chr", "blk") and a.rdev != t.rdev:
        out.append(("device", "%s:%s" % (a.rdev or ("?", "?")), "%s:%s" % (t.rdev or ("?", "?"))))
    ax, tx = dict(a.xattrs), dict(t.xattrs)
    for kind, names in (("acl", set(ACL_XATTRS)), ("xattr", (ax.keys() | tx.keys()) - set(ACL_XATTRS))):
        aa = {k: v for k, v in ax.items() if k in names and tx.get(k) != v}  # only the names that differ
        tt = {k: v for k, v in tx.items() if k in names and ax.get(k) != v}
        if aa != tt:
            out.append((kind, _xattr_text(aa) or "none", _xattr_text(tt) or "none"))
    return out


def hardlink_groups(records: Iterable[FileRecord]) -> dict[bytes, frozenset[bytes]]:
    """path → every path sharing its inode (archive: hardlink members and what they point at; target: inode)."""
    groups: dict[object, set[bytes]] = {}
    for r in records:
        if r.link is not None:
            key: object = ("path", r.link)
        elif r.inode is not None and r.type == "file":
            key = ("inode", r.inode)
        elif r.type == "file":
            key = ("path", r.path)
        else:
            continue
        groups.setdefault(key, set()).add(r.path)
    out: dict[bytes, frozenset[bytes]] = {}
    for paths in groups.values():
        frozen = frozenset(paths)
        for p in paths:
            out[p] = frozen
    return out


def _resolve_links(records: dict[bytes, FileRecord]) -> dict[bytes, FileRecord]:
    """A hardlink member has no data of its own: it holds what its first path holds."""
    out = {}
    for path, r in records.items():
        first = records.get(r.link) if r.link is not None else None
        out[path] = r if first is None else _with(first, path=path, link=r.link)
    return out


def _with(r: FileRecord, **changes: Any) -> FileRecord:
    return FileRecord(**{**r.__dict__, **changes})


def compare_fs(result: FsResult, archive: Iterable[FileRecord], target: Iterable[FileRecord],
               phases: Sequence[str], mountpoints: Sequence[str]) -> FsResult:  # fmt: skip
    """Fill `result` with the differences between one filesystem's archive records and its target records."""
    a = _resolve_links({r.path: r for r in archive})
    t = {r.path: r for r in target}
    ga, gt = hardlink_groups(a.values()), hardlink_groups(t.values())
    mp = result.mountpoint
    found: list[tuple[str, str, str, str]] = []  # path, kind, archive, target
    for path in sorted(a.keys() - t.keys()):
        found.append((clone_path(mp, path), "missing", a[path].type, "absent"))
    for path in sorted(t.keys() - a.keys()):
        found.append((clone_path(mp, path), "extra", "absent", t[path].type))
    for path in sorted(a.keys() & t.keys()):
        result.compared += 1
        diffs = attribute_differences(a[path], t[path])
        if ga.get(path, frozenset()) != gt.get(path, frozenset()) and a[path].type == t[path].type == "file":
            names = [sorted(x.decode(errors="replace") for x in g.get(path, ())) for g in (ga, gt)]
            diffs.append(("hardlink", " = ".join(names[0]), " = ".join(names[1])))
        if not diffs:
            result.equal += 1
        found += [(clone_path(mp, path), kind, av, tv) for kind, av, tv in diffs]
    _classify(result, found, phases, mountpoints)
    return result


def _classify(result: FsResult, found: list[tuple[str, str, str, str]], phases: Sequence[str],
              mountpoints: Sequence[str]) -> None:  # fmt: skip
    """Attach the imgclone rule to each difference that has one; directories holding such paths follow."""
    rules = {path: imgclone_rule(path, phases, mountpoints) for path, *_ in found}
    changed = {p for p, why in rules.items() if why}
    no_posix = f"{result.type} keeps no owners, modes, xattrs or links" if result.type in NO_POSIX else ""
    for path, kind, av, tv in found:
        why = rules[path] or (_parent_rule(path, changed) if kind == "mtime" else "")
        why = why or (no_posix if kind in NO_POSIX_KINDS else "")
        result.differences.append(Difference(path, kind, av, tv, why))
        if kind == "missing" and not why:
            result.missing.append(path)
        elif kind == "extra" and not why:
            result.extra.append(path)


def report_text(report: Report, limit: int = 200) -> str:
    """The summary, then each difference (errors first, at most `limit` of each group)."""
    s = report.summary()
    lines = [f"{report.archive} against {' '.join(report.targets)} (filesystems matched by {report.mapping})"]
    wide = max((len(f.fs) for f in report.filesystems), default=0)  # a btrfs subvolume's id is longer
    for f in report.filesystems:
        errs = sum(1 for d in f.differences if not d.rule)
        lines.append(f"  {f.mountpoint:<12} {f.fs:<{max(16, wide)}} {f.type or '-':<5} on {f.device:<26} "
                     f"{f.compared:>7} compared, {f.equal:>7} equal, {errs} error(s)")  # fmt: skip
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["by_kind"].items())) or "none"
    lines.append(f"files compared {s['compared']}, equal {s['equal']}, differing {s['differing']} ({kinds}), "
                 f"missing {s['missing']}, extra {s['extra']}; "
                 f"explained by rule {s['by_rule']}")  # fmt: skip
    lines += [f"note: {n}" for n in report.notes]
    errors = report.errors
    for title, group in (("differences", errors), ("explained by rule (changed by imgclone, or not kept by the type)", [
            d for f in report.filesystems for d in f.differences if d.rule])):  # fmt: skip
        if group:
            lines.append(f"{title}:")
            for d in group[:limit]:
                why = f"  ({d.rule})" if d.rule else ""
                lines.append(f"  {d.kind:<9} {d.path}: archive {d.archive}; target {d.target}{why}")
            if len(group) > limit:
                lines.append(f"  … {len(group) - limit} more (--json lists them all)")
    lines.append(f"{report.archive}: " + ("the target holds the archive's files" if report.ok else "FIDELITY FAILED"))
    return "\n".join(lines) + "\n"
