"""The archive container: round trips through a file and a pipe, and damage detection."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from imgclone.archive import container as archive
from imgclone.archive import writer as archive_writer
from imgclone.archive.reader import ArchiveReader, read_manifest_doc
from imgclone.archive.writer import ArchiveWriter
from imgclone.errors import ArchiveError
from tests.manifests import manifest_doc


def _write(path: str, streams: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setattr(archive, "PART_SIZE", 1000)
    w = ArchiveWriter(path)
    m = manifest_doc(layout={}, source={"kind": "test"})
    w.begin(m, len(streams))
    infos = []
    for fs, data in streams.items():
        member, parts, size, sha = w.add_stream(fs, io.BytesIO(data))
        infos.append({"fs": fs, "member": member, "parts": parts, "bytes": size, "sha256": sha})
    m["streams"] = infos
    w.finish(m)
    return m


def test_file_round_trip_parts_and_manifest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "a.mksysb"
    _write(str(out), {"fs-root": b"r" * 2500, "fs-var": b"v" * 10}, monkeypatch)
    assert not (tmp_path / "a.mksysb.partial").exists()
    names = tarfile.open(out).getnames()
    assert names == ["manifest.json", "streams/fs-root.tar.zst.00000", "streams/fs-root.tar.zst.00001",
                     "streams/fs-root.tar.zst.00002", "streams/fs-var.tar.zst.00000"]  # fmt: skip
    m = read_manifest_doc(out)
    assert m["complete"] is True
    assert [s["parts"] for s in m["streams"]] == [3, 1]
    with ArchiveReader(str(out)) as r:
        data: dict[str, bytes] = {}
        for p in r.parts():
            data[p.member] = data.get(p.member, b"") + p.data.read()
    assert data == {"streams/fs-root.tar.zst": b"r" * 2500, "streams/fs-var.tar.zst": b"v" * 10}


def test_each_finished_part_is_handed_to_writeback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After each part, what is written so far is flushed and advised out of the page cache (which starts its
    writeback), so the final fsync waits for the last part only; the advice sees the part's bytes in the file."""
    out = tmp_path / "a.mksysb"
    seen: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        assert (offset, length, advice) == (0, 0, os.POSIX_FADV_DONTNEED)
        seen.append((os.fstat(fd).st_size, os.fstat(fd).st_ino))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    _write(str(out), {"fs-root": b"r" * 2500, "fs-var": b"v" * 10}, monkeypatch)
    assert len(seen) == 4, "one advice a part: fs-root's 3, fs-var's 1"
    sizes = [size for size, _ in seen]
    assert sizes == sorted(sizes) and sizes[2] >= 2500, "each advice comes once its part is flushed to the file"
    assert {ino for _, ino in seen} == {out.stat().st_ino}, "the archive's own file (renamed from .partial)"


def test_stock_tar_concatenates_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "a.mksysb"
    _write(str(out), {"fs-root": bytes(range(256)) * 20}, monkeypatch)
    got = subprocess.run(["tar", "-xOf", str(out), "--wildcards", "streams/fs-root.tar.zst.*"],
                         capture_output=True, check=True).stdout  # fmt: skip
    assert got == bytes(range(256)) * 20


def test_pipe_output_appends_final_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "piped.mksysb"
    with open(out, "wb") as f:
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(f))
        _write("-", {"fs-root": b"x" * 1500}, monkeypatch)
    names = tarfile.open(out).getnames()
    assert names[0] == names[-1] == "manifest.json"
    with ArchiveReader(str(out)) as r:
        assert r.doc["complete"] is False
    assert read_manifest_doc(out)["complete"] is True


def test_on_a_pipe_the_first_manifest_is_read_before_the_first_part(tmp_path: Path) -> None:
    """copy's restore plans (and launches its appliance) from the first manifest while the capture fills its first
    32 MiB part: neither side may hold the manifest back until more bytes come (tar reads 10 KiB records)."""
    r, w = os.pipe()
    writer = ArchiveWriter(f"/dev/fd/{w}")
    writer.begin(manifest_doc(layout={"disks": []}), 1)
    got: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: got.append(ArchiveReader(f"/dev/fd/{r}").doc), daemon=True)
    reader.start()
    reader.join(timeout=10)
    stuck = reader.is_alive()
    writer.abort()
    os.close(w)
    reader.join(timeout=10)
    os.close(r)
    assert not stuck, "the reader waited for bytes after the manifest"
    assert got and got[0]["layout"] == {"disks": []}


STREAMS = {"fs-empty": b"", "fs-one": b"1" * 1000, "fs-two": b"2" * 2000, "fs-odd": bytes(range(256)) * 10}


def _members(path: Path) -> list[tuple[str, int]]:
    with tarfile.open(path) as t:
        return [(ti.name, ti.size) for ti in t.getmembers() if ti.name != "manifest.json"]


def test_a_file_gets_the_same_parts_as_a_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file is written part by part in chunks (headers rewritten with the size); a pipe holds whole parts. Same
    parts either way, at part boundaries too: an empty stream is one empty part, 1000 bytes one part, not two."""
    monkeypatch.setattr(archive_writer, "CHUNK", 300)  # several chunks a part, the last one short
    out, piped = tmp_path / "a.mksysb", tmp_path / "piped.mksysb"
    _write(str(out), STREAMS, monkeypatch)
    with open(piped, "wb") as f:
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(f))
        _write("-", STREAMS, monkeypatch)
    assert _members(out) == _members(piped)
    streams = read_manifest_doc(out)["streams"]
    assert [(s["parts"], s["bytes"]) for s in streams] == [(1, 0), (1, 1000), (2, 2000), (3, 2560)]
    for fs, data in STREAMS.items():
        got = subprocess.run(["tar", "-xOf", str(out), "--wildcards", f"streams/{fs}.tar.zst.*"],
                             capture_output=True, check=True).stdout  # fmt: skip
        assert got == data, fs
    assert out.stat().st_size % archive.RECORD == 0
    with ArchiveReader(str(out)) as r:
        assert {p.member: p.data.read() for p in r.parts() if p.index == 0}["streams/fs-one.tar.zst"] == b"1" * 1000


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    w = ArchiveWriter(str(tmp_path / "x.mksysb"))
    w.begin(manifest_doc(), 1)
    w.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an imgclone archive"),
        (b"hello world" * 100, "not an imgclone archive"),
    ],
)
def test_not_an_archive(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "junk"
    p.write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        read_manifest_doc(p)


def _tar_with_manifest(tmp_path: Path, manifest: object) -> Path:
    p = tmp_path / "m.tar"
    with tarfile.open(p, "w") as t:
        data = json.dumps(manifest).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    return p


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    p = _tar_with_manifest(tmp_path, {"format": "imgclone-archive", "format_version": 99, "complete": True})
    with pytest.raises(ArchiveError, match="version 99 is newer"):
        read_manifest_doc(p)


def test_foreign_tar_is_refused(tmp_path: Path) -> None:
    p = _tar_with_manifest(tmp_path, {"hello": 1})
    with pytest.raises(ArchiveError, match="not an imgclone archive"):
        read_manifest_doc(p)


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such archive"):
        read_manifest_doc(tmp_path / "nope")
