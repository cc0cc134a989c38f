"""Content facts gathered during capture: find's records (host) and the tar stream's headers (image)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from imgclone.capture import excludes
from imgclone.model.content import ContentFacts, NameScan, TarScan, _number

MiB = 1 << 20


def records(*entries: tuple[str, int, int, bytes]) -> list[bytes]:
    return [f"{kind} {links} {size} ".encode() + name for kind, links, size, name in entries]


def test_name_scan_counts_only_the_kept_names() -> None:
    recs = records(("d", 5, 4096, b"."), ("f", 1, 10, b"./a b"), ("f", 3, 7, b"./hard"), ("d", 2, 4096, b"./tmp"),
                   ("f", 1, 9 * MiB, b"./tmp/huge"), ("l", 9, 12, b"./link"),
                   ("f", 1, 20, b"./with\nnewline"))  # fmt: skip
    scan, out = NameScan("/var"), bytearray()
    sel = excludes.select_stream(scan.names(recs), {b"./var/tmp"}, scan.keeping(out.extend), prefix=b"./var")
    assert out.split(b"\0")[:-1] == [b".", b"./a b", b"./hard", b"./link", b"./with\nnewline"]
    assert sel.kept == 5 and sel.excluded == (b"./tmp",)
    facts = scan.facts()
    assert (facts.largest_file, facts.largest_file_path) == (20, "/var/with\nnewline"), "excluded /var/tmp/huge counted"
    assert (facts.most_links, facts.most_links_path) == (9, "/var/link"), "a symlink's links count, a dir's do not"
    assert facts.largest_xattr is None, "find sees no xattrs: not recorded"


def test_select_with_a_scan_reads_records_and_writes_names(tmp_path: Path) -> None:
    listing = tmp_path / "names"
    listing.write_bytes(b"\0".join(records(("d", 3, 0, b"."), ("f", 1, 5, b"./x"), ("f", 1, 50, b"./y"))) + b"\0")
    rules = excludes.ExcludeRules((b"^\\./y$",))
    scan = NameScan("/")
    sel = excludes.select(listing, tmp_path / "kept", rules, scan=scan)
    assert (tmp_path / "kept").read_bytes() == b".\0./x\0" and sel.excluded == (b"./y",)
    assert (scan.facts().largest_file, scan.facts().largest_file_path) == (5, "/x")


def pax_tar() -> bytes:
    """A pax stream: a long name, a sparse file's real size, three hard links to one file, xattrs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:

        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **pax: str) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.pax_headers = kind, len(data) if kind == tarfile.REGTYPE else 0, pax
            if kind == tarfile.LNKTYPE:
                ti.linkname = "./d/target"
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("./d", kind=tarfile.DIRTYPE)
        add("./d/" + "n" * 150, b"x" * 3000, **{"SCHILY.xattr.user.big": "v" * 5000, "SCHILY.xattr.user.s": "s"})
        add("./d/target", b"y" * 700)
        for i in range(3):
            add(f"./d/link{i}", kind=tarfile.LNKTYPE)
        add("./d/sparse", b"z" * 512, **{"GNU.sparse.realsize": str(40 << 30), "GNU.sparse.name": "./d/sp"})
    return buf.getvalue()


@pytest.mark.parametrize("chunk", [1, 7, 512, 1000, 1 << 20])
def test_tar_scan_reads_headers_across_any_chunking(chunk: int) -> None:
    data, scan = pax_tar(), TarScan("/srv")
    for i in range(0, len(data), chunk):
        scan.feed(data[i : i + chunk])
    f = scan.facts()
    assert (f.largest_file, f.largest_file_path) == (40 << 30, "/srv/d/sp")
    assert (f.most_links, f.most_links_path) == (4, "/srv/d/target")
    assert (f.largest_xattr, f.largest_xattr_name, f.largest_xattr_path) == (5000, "user.big", "/srv/d/" + "n" * 150)


def test_tar_scan_of_gnu_tar_with_a_sparse_file_and_no_xattrs(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    with open(tree / "sub" / "sparse", "wb") as f:
        f.truncate(3 << 30)
    (tree / "small").write_bytes(b"a" * 100)
    os.link(tree / "small", tree / "small.2")
    argv = ["tar", "-C", str(tree), "--format=posix", "--sparse", "--xattrs", "--numeric-owner", "-cf", "-", "."]
    out = subprocess.run(argv, check=True, capture_output=True).stdout
    scan = TarScan("/")
    scan.feed(out)
    f = scan.facts()
    assert (f.largest_file, f.largest_file_path) == (3 << 30, "/sub/sparse"), "the apparent size of a sparse file"
    assert (f.most_links, f.most_links_path) in {(2, "/small"), (2, "/small.2")}
    assert f.largest_xattr == 0, "a stream without xattrs records 0, not 'unknown'"


def test_number_fields() -> None:
    assert _number(b"00000001750\0") == 0o1750 and _number(b"\0" * 12) == 0
    assert _number(bytes([0x80]) + (10 << 30).to_bytes(11, "big")) == 10 << 30  # GNU base-256, past 8 GiB


def test_facts_round_trip_and_junk() -> None:
    f = ContentFacts(5, "/a", 2, "/b", None)
    assert "largest_xattr" not in f.to_dict() and ContentFacts.from_dict(f.to_dict()) == f
    g = ContentFacts(5, "/a", 2, "/b", 300, "user.x", "/c")
    assert ContentFacts.from_dict(g.to_dict()) == g
    assert ContentFacts.from_dict(None) is None and ContentFacts.from_dict([1]) is None
    assert ContentFacts.from_dict({"largest_file": "big"}) is None
    assert ContentFacts.from_dict({"most_links": True}) is None


def test_a_stream_it_cannot_parse_stops_the_scan_not_the_copy() -> None:
    block = bytearray(512)
    block[0:5], block[124:136], block[156:157] = b"./bad", b"9zz\0" + bytes(8), b"0"
    scan = TarScan("/")
    scan.feed(bytes(block) + pax_tar())
    assert scan.broken and scan.facts() is None


def test_facts_of_a_btrfs_subvolumes_streams_merge_into_their_filesystems() -> None:
    """A btrfs with subvolumes has a stream each: the planner checks the filesystem against the extremes of all,
    and plans for the files of all (Manifest.planning_files / planning_content)."""
    from imgclone.model.layout import Layout
    from imgclone.model.manifest import Manifest, Source, StreamInfo

    a = ContentFacts(10, "/a", 3, "/a3", 100, "user.x", "/ax")
    b = ContentFacts(20, "/home/b", 2, "/home/b2", 50, "user.y", "/home/by")
    assert a.merged(b) == ContentFacts(20, "/home/b", 3, "/a3", 100, "user.x", "/ax")
    assert a.merged(None) is None
    host = ContentFacts(5, "/c", 9, "/c9")  # a host capture sees no xattrs
    assert a.merged(host) == ContentFacts(10, "/a", 9, "/c9")

    def stream(tree: str, files: int, facts: ContentFacts | None) -> StreamInfo:
        return StreamInfo("fs-root", "/", f"streams/{tree}.tar.zst", 1, 1, "0" * 64, files, 1, facts,
                          subvolume=tree if tree.startswith("sv-") else "")  # fmt: skip

    m = Manifest(Layout(), Source("image"), None, streams=(stream("sv-root-@", 100, a), stream("sv-root-@home", 7, b),
                                                           stream("fs-root", 1, host)))  # fmt: skip
    assert m.planning_files() == {"fs-root": 108}
    assert m.planning_content() == {"fs-root": ContentFacts(20, "/home/b", 9, "/c9")}
    assert [s.tree for s in m.streams] == ["sv-root-@", "sv-root-@home", "fs-root"]
    assert StreamInfo.from_dict(m.streams[0].to_dict()) == m.streams[0]
