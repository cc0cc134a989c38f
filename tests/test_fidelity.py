"""archive verify --against, without an appliance: both readers on a real tree, the rules on small fakes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclone.archive.streams import TAR_METADATA
from imgclone.check.fidelity import FileRecord, FsResult, Report, compare_fs, report_text, sparse_ok
from imgclone.check.records import (
    archive_records,
    parse_devs,
    parse_mtime,
    parse_sums,
    parse_xattrs,
    target_records,
    target_script,
)
from imgclone.model.layout import Filesystem, FsType
from imgclone.model.trees import Tree
from tests.fakes import FakeGuest

Run = Callable[..., subprocess.CompletedProcess[bytes]]
NAMES = [b"with space", b"new\nline", b"caf\xe9", b"back\\slash", b"-rf", b"eq=ual"]


def _tree(root: Path) -> None:
    r = os.fsencode(root)
    os.makedirs(os.path.join(r, b"d/sub"))
    for n in NAMES:
        with open(os.path.join(r, b"d", n), "wb") as f:
            f.write(b"content of " + n)
    with open(os.path.join(r, b"d/big"), "wb") as f:
        f.write(os.urandom(300_000))
    os.link(os.path.join(r, b"d/big"), os.path.join(r, b"d/sub/big.link"))
    os.symlink(b"../with space", os.path.join(r, b"d/sub/link"))
    os.mkfifo(os.path.join(r, b"d/fifo"))
    with open(os.path.join(r, b"d/sparse"), "wb") as f:
        f.seek(8 * 1024 * 1024)
        f.write(b"end")
    os.chmod(os.path.join(r, b"d/-rf"), 0o4755)
    os.chown(os.path.join(r, b"d/with space"), 12345, 54321)
    os.utime(os.path.join(r, b"d/caf\xe9"), ns=(1_000_000_000, 1_234_567_891_123))
    os.setxattr(os.path.join(r, b"d/big"), b"user.note", b"\x00\x01binary")
    os.setxattr(os.path.join(r, b"d/new\nline"), b"user.empty", b"")
    subprocess.run(["setfacl", "-m", "u:4242:rwx", os.path.join(r, b"d/with space")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:4242:rx", os.path.join(r, b"d/sub")], check=True)
    if os.geteuid() == 0:
        os.mknod(os.path.join(r, b"d/null"), 0o20666, os.makedev(1, 3))
        os.mknod(os.path.join(r, b"d/blk"), 0o60660, os.makedev(7, 200))


def _archive_side(root: Path) -> list[FileRecord]:
    """The tree as capture streams it (the same tar options), read back by the archive reader."""
    tar = subprocess.Popen(["tar", "--create", "--file=-", "-C", str(root), *TAR_METADATA, "--sparse", "."],
                           stdout=subprocess.PIPE)  # fmt: skip
    assert tar.stdout is not None
    records = list(archive_records(tar.stdout))
    assert tar.wait() == 0
    return records


def _target_side(root: Path, out: Path) -> list[FileRecord]:
    """The tree as the appliance reads a target: the same script, run here on the host's tools."""
    subprocess.run(["sh", "-c", target_script(str(root), str(out))], check=True, capture_output=True)
    files = {name: (out / name).read_bytes() for name in ("meta", "sums", "devs", "xattrs")}
    assert (out / "errors").read_bytes() == b""
    return target_records(files)


def _compare(a: list[FileRecord], t: list[FileRecord], phases: tuple[str, ...] = ("1", "3")) -> FsResult:
    return compare_fs(FsResult("fs-data", "/data", "/dev/sda"), a, t, phases, ["/", "/data"])


def test_a_tree_read_both_ways_is_equal(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    archive, target = _archive_side(tmp_path / "t"), _target_side(tmp_path / "t", tmp_path / "out")
    by_path = {r.path: r for r in archive}
    assert by_path[b"d/sparse"].sparse_data is not None and by_path[b"d/sparse"].sparse_data < 4096
    links = {(r.path, r.link) for r in archive if r.link is not None}
    assert links in ({(b"d/sub/big.link", b"d/big")}, {(b"d/big", b"d/sub/big.link")})  # tar's walk order decides
    stored = next(r for r in archive if r.path in (b"d/big", b"d/sub/big.link") and r.link is None)
    assert dict(stored.xattrs)[b"user.note"] == b"\x00\x01binary"
    assert b"system.posix_acl_access" in dict(by_path[b"d/with space"].xattrs)
    assert b"system.posix_acl_default" in dict(by_path[b"d/sub"].xattrs)
    assert by_path[b"d/caf\xe9"].mtime_ns == 1_234_567_891_123 and by_path[b"d/caf\xe9"].mtime_digits == 9
    res = _compare(archive, target)
    assert res.differences == []
    assert res.compared == res.equal == len(archive) == len(target)


def test_every_kind_of_change_is_found(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _tree(t)
    archive = _archive_side(t)
    os.chmod(t / "d" / "-rf", 0o755)
    os.chown(t / "d" / "eq=ual", 1, 2)
    os.utime(os.fsencode(t / "d") + b"/caf\xe9", ns=(1_000_000_000, 1_234_567_891_124))
    (t / "d" / "back\\slash").write_bytes(b"content of back\\slasH")
    os.setxattr(t / "d" / "big", "user.note", b"other")
    subprocess.run(["setfacl", "-m", "u:4242:r", str(t / "d" / "with space")], check=True)
    os.unlink(t / "d" / "sub" / "big.link")
    (t / "d" / "sub" / "big.link").write_bytes((t / "d" / "big").read_bytes())  # same bytes, not a hardlink
    os.unlink(t / "d" / "sub" / "link")
    os.symlink("elsewhere", t / "d" / "sub" / "link")
    with open(t / "d" / "sparse", "r+b") as f:
        f.write(b"\0" * 8 * 1024 * 1024)  # same content, now allocated
    os.unlink(os.fsencode(t / "d") + b"/new\nline")
    (t / "d" / "added").write_text("x")
    os.utime(t / "d", ns=(os.stat(t / "d").st_atime_ns, os.stat(t / "d").st_mtime_ns))
    res = _compare(archive, _target_side(t, tmp_path / "out"))
    kinds = {(d.path, d.kind) for d in res.differences if d.kind != "mtime" or "caf" in d.path}
    assert kinds == {
        ("/data/d/-rf", "mode"), ("/data/d/eq=ual", "owner"), ("/data/d/caf\\xe9", "mtime"),
        ("/data/d/back\\slash", "content"), ("/data/d/big", "xattr"), ("/data/d/with space", "acl"),
        ("/data/d/big", "hardlink"), ("/data/d/sub/big.link", "hardlink"), ("/data/d/sub/link", "symlink"),
        ("/data/d/sparse", "sparse"), ("/data/d/new\nline", "missing"), ("/data/d/added", "extra"),
        ("/data/d/with space", "mode"),  # an ACL's mask is the mode's group bits
        ("/data/d/sub/big.link", "xattr"), ("/data/d/sub/big.link", "acl"),  # a new file: d/sub's default ACL
    }  # fmt: skip
    assert all(not d.rule for d in res.differences)
    assert res.missing == ["/data/d/new\nline"] and res.extra == ["/data/d/added"]


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_device_numbers_are_compared(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _tree(t)
    archive = _archive_side(t)
    os.unlink(t / "d" / "blk")
    os.mknod(t / "d" / "blk", 0o60660, os.makedev(7, 201))
    os.utime(t / "d" / "blk", ns=(0, next(r.mtime_ns for r in archive if r.path == b"d/blk")))
    (diff,) = [d for d in _compare(archive, _target_side(t, tmp_path / "out")).differences if d.kind != "mtime"]
    assert (diff.path, diff.kind, diff.archive, diff.target) == ("/data/d/blk", "device", "7:200", "7:201")


def _rec(path: bytes, kind: str = "file", **kw: object) -> FileRecord:
    base: dict[str, object] = {"mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 10**18, "sha256": "a" * 64}
    return FileRecord(path=path, type=kind, **{**base, **kw})  # type: ignore[arg-type]


def test_imgclone_rules_list_its_changes_apart() -> None:
    archive = [_rec(b"", "dir"), _rec(b"etc", "dir"), _rec(b"etc/fstab"), _rec(b"boot", "dir"),
               _rec(b"boot/grub", "dir"), _rec(b"etc/passwd"), _rec(b"lost+found", "dir")]  # fmt: skip
    target = [_rec(b"", "dir"), _rec(b"etc", "dir", mtime_ns=2 * 10**18), _rec(b"etc/fstab", sha256="b" * 64),
              _rec(b"boot", "dir"), _rec(b"boot/grub", "dir", mtime_ns=3), _rec(b"boot/grub/grub.cfg"),
              _rec(b"etc/passwd", mode=0o600), _rec(b"lost+found", "dir"), _rec(b"var", "dir")]  # fmt: skip
    res = compare_fs(FsResult("fs-root", "/", "/dev/sda1"), archive, target, ("1", "3"), ["/", "/var"])
    why = {(d.path, d.kind): d.rule for d in res.differences}
    assert why == {
        ("/etc/fstab", "content"): "restore rewrites it (new UUIDs, types)",
        ("/etc", "mtime"): "holds entries imgclone changed",
        ("/boot/grub", "mtime"): "Phase 3 writes it (GRUB, initramfs)",
        ("/boot/grub/grub.cfg", "extra"): "Phase 3 writes it (GRUB, initramfs)",
        ("/var", "extra"): "a mount point restore made for a filesystem mounted there",
        ("/etc/passwd", "mode"): "",
    }
    report = Report("a.mksysb", ["clone.qcow2"], "the journal", [res])
    assert not report.ok and [d.path for d in report.errors] == ["/etc/passwd"]
    s = report.summary()
    assert (s["compared"], s["equal"], s["differing"], s["by_kind"], s["missing"], s["extra"]) == (
        7, 3, 1, {"mode": 1}, 0, 0)  # fmt: skip
    assert s["by_rule"] == 5
    text = report_text(report)
    assert "  mode      /etc/passwd: archive 0644; target 0600" in text
    assert "FIDELITY FAILED" in text and "explained by rule (changed by imgclone, or not kept by the type):" in text
    # without Phase 3 having run, what GRUB would write is an error
    res3 = compare_fs(FsResult("fs-root", "/", "/dev/sda1"), archive, target, ("1",), ["/", "/var"])
    assert ("/boot/grub/grub.cfg", "extra", "") in {(d.path, d.kind, d.rule) for d in res3.differences}


def test_lost_found_of_another_filesystem_type_is_mkfs_s() -> None:
    res = compare_fs(FsResult("fs-var", "/var", "/dev/sdb"), [_rec(b"", "dir"), _rec(b"lost+found", "dir")],
                     [_rec(b"", "dir")], (), ["/", "/var"])  # fmt: skip
    (d,) = res.differences
    assert (d.kind, d.rule) == ("missing", "mkfs makes lost+found (it belongs to the filesystem type)")


def test_vfat_keeps_no_owners_or_modes() -> None:
    res = compare_fs(FsResult("fs-esp", "/boot/efi", "/dev/sda1", type="vfat"), [_rec(b"EFI", "dir", mode=0o700)],
                     [_rec(b"EFI", "dir", mode=0o755)], ("1",), ["/", "/boot/efi"])  # fmt: skip
    (d,) = res.differences
    assert (d.kind, d.rule) == ("mode", "vfat keeps no owners, modes, xattrs or links")
    res = compare_fs(FsResult("fs-esp", "/boot/efi", "/dev/sda1", type="vfat"), [_rec(b"f")],
                     [_rec(b"f", sha256="0" * 64)], ("1",), ["/", "/boot/efi"])  # fmt: skip
    assert [(d.kind, d.rule) for d in res.differences] == [("content", "")], "content is compared on vfat too"


def test_mtime_is_compared_at_the_archive_s_precision() -> None:
    a = _rec(b"f", mtime_ns=1_700_000_000_000_000_000, mtime_digits=0)
    assert _compare([a], [_rec(b"f", mtime_ns=1_700_000_000_900_000_000)]).differences == []
    (d,) = _compare([a], [_rec(b"f", mtime_ns=1_700_000_001_000_000_000)]).differences
    assert (d.kind, d.archive, d.target) == ("mtime", "1700000000", "1700000001")


def test_sparse_rule() -> None:
    a = _rec(b"f", size=64 << 20, sparse_data=3, sparse_extents=1)
    assert sparse_ok(a, _rec(b"f", allocated=4096))
    assert not sparse_ok(a, _rec(b"f", allocated=1 << 20))
    assert not sparse_ok(_rec(b"f", size=8192, sparse_data=4096, sparse_extents=1), _rec(b"f", allocated=8192))
    assert sparse_ok(_rec(b"f", size=1 << 20), _rec(b"f", allocated=1 << 20))  # not stored sparse: not checked


def test_parsers_keep_every_byte_of_a_name() -> None:
    assert parse_sums(b"a" * 64 + b"  ./x\ny\0" + b"b" * 64 + b"  ./caf\xe9\0") == {
        b"x\ny": "a" * 64, b"caf\xe9": "b" * 64}  # fmt: skip
    assert parse_devs(b"7 c8\0./d/blk\0") == {b"d/blk": (7, 200)}
    text = b'# file: ./caf\\351\\012x\\134y\nuser.a=0x0001\nuser.e=""\n\n# file: .\nsecurity.x=0x41\n\n'
    assert parse_xattrs(text) == {b"caf\xe9\nx\\y": ((b"user.a", b"\x00\x01"), (b"user.e", b"")),
                                  b"": ((b"security.x", b"A"),)}  # fmt: skip
    assert parse_mtime("1795702921.9951116820") == (1795702921995111682, 9)
    assert parse_mtime("17") == (17 * 10**9, 0)


def test_against_a_missing_target_is_one_line(tmp_path: Path, imgclone: Run) -> None:
    r = imgclone("archive", "verify", str(tmp_path / "a.mksysb"), "--against", str(tmp_path / "nope.qcow2"))
    assert r.returncode == 2
    line = f"imgclone: error: --against {tmp_path}/nope.qcow2: no such image or device"
    assert r.stderr.decode().strip().splitlines() == [line]


def host_guest(trees: dict[str, Path], out: Path, mountpoints: dict[str, str], uuids: dict[str, str]) -> FakeGuest:
    """The libguestfs calls fidelity_guest makes; `debug sh` runs on this host, /sysroot being the tree of the device
    mounted at / (one of `trees`)."""

    def mount_ro(device: str, where: str) -> None:
        assert where == "/" and device in trees

    def debug(sub: str, args: list[str]) -> str:
        assert sub == "sh" and "/" in g.mounted
        script = args[0].replace("/sysroot", str(trees[g.mounted["/"]])).replace("/tmp/imgclone-fidelity", str(out))
        return subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout.decode()

    g = FakeGuest({
        "mount_ro": mount_ro,
        "debug": debug,
        "inspect_os": lambda: ["/dev/sda2"] if mountpoints else [],
        "inspect_get_mountpoints": lambda root: mountpoints,
        "list_filesystems": {dev: "ext4" for dev in trees} | {"/dev/sda3": "swap"},
        "vfs_uuid": lambda dev: uuids[dev],
    })  # fmt: skip
    return g


def test_the_appliance_side_reads_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgclone.check import against as fidelity_guest

    _tree(tmp_path / "t")
    monkeypatch.setattr(fidelity_guest, "CHUNK", 300)  # a few hundred bytes a call: the chunks must add up
    g = host_guest({"/dev/sda1": tmp_path / "t"}, tmp_path / "out", {}, {})
    records, errors = fidelity_guest.read_target(g, Tree("fs-t", Filesystem("fs-t", "p1", FsType.EXT4, "/", 1)),
                                                 "/dev/sda1")  # fmt: skip
    assert errors == ""
    assert len(g.named("debug")) > 5, "the output came back in several chunks"
    res = _compare(_archive_side(tmp_path / "t"), records)
    assert res.differences == [] and res.compared == len(records)


def test_filesystems_are_found_by_fstab_then_uuid(tmp_path: Path) -> None:
    from imgclone.check.against import map_filesystems
    from imgclone.model.layout import Layout

    layout = Layout.from_json((Path(__file__).parent / "data" / "layout-bios-lvm.json").read_text())
    streams = {"fs-root": "/", "fs-boot": "/boot", "fs-var": "/var"}
    mountpoints = {"/": "/dev/vg/root", "/boot": "/dev/sda1"}
    g = host_guest({"/dev/sda1": tmp_path, "/dev/vg/root": tmp_path, "/dev/vg/var": tmp_path}, tmp_path, mountpoints,
                   {"/dev/sda1": "x", "/dev/vg/root": "y", "/dev/vg/var": "U-VAR"})  # fmt: skip
    found, how = map_filesystems(g, layout, streams, None)
    assert found == {"fs-root": "/dev/vg/root", "fs-boot": "/dev/sda1", "fs-var": "/dev/vg/var"}
    assert how == "the clone's fstab and filesystem UUIDs"
    mountpoints.clear()
    found, how = map_filesystems(g, layout, streams, None)
    assert (found, how) == ({"fs-var": "/dev/vg/var"}, "filesystem UUIDs"), "other UUIDs are nowhere: not found"
