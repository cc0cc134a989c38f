"""archive verify's two ways of reading: an archive file at its parts' offsets, and an archive on a pipe.

The corruption sweep (test_corruption.py) checks that every damaged byte is found and named; these check what
the sweep does not reach: the same report from a file and from standard input, parts read in several chunks, a
file that ends inside a part, and a stream that is sound zstd but no tar.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imgclone.archive import verify
from imgclone.archive.reader import ArchiveReader, read_manifest_doc
from imgclone.archive.writer import ArchiveWriter
from imgclone.cli.main import main
from imgclone.model.manifest import StreamInfo
from tests.manifests import manifest_doc
from tests.test_corruption import make_archive


def verify_json(path: str, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(SystemExit) as e:
        main(["archive", "verify", path, "--json", *more])
    return int(e.value.code or 0), json.loads(capsys.readouterr().out)


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "small.mksysb"
    make_archive(path, tmp_path, monkeypatch)
    monkeypatch.undo()
    return path


@pytest.mark.parametrize("deep", [False, True], ids=["default", "deep"])
def test_a_file_and_the_same_archive_on_stdin_give_the_same_report(
    small: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], deep: bool
) -> None:
    more = ["--deep"] if deep else []
    rc, from_file = verify_json(str(small), capsys, *more)
    assert rc == 0 and from_file["ok"] and from_file["deep"] is deep, from_file
    with open(small, "rb") as f:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(f))
        rc, from_pipe = verify_json("-", capsys, *more)
    assert rc == 0, from_pipe
    assert {**from_pipe, "archive": str(small)} == from_file
    listed = [s["files"] for s in from_file["streams"]]
    assert listed == ([7, 3, 2] if deep else [None, None, None]), "tar -t lists every member, and only when deep"


def test_parts_read_in_several_chunks(
    small: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chunks smaller than a part (and not dividing it): the digests still match the manifest."""
    monkeypatch.setattr(verify, "CHUNK", 700)
    rc, report = verify_json(str(small), capsys)
    assert rc == 0 and report["ok"], report
    assert sum(s["bytes"] for s in report["streams"]) == sum(s["bytes"] for s in read_manifest_doc(small)["streams"])


def test_a_file_that_ends_inside_a_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive written to a pipe and cut short: only its first, incomplete manifest is left, so nothing says
    how long it should be before the reader meets the end inside fs-boot's second part."""
    path = tmp_path / "piped.mksysb"
    with open(path, "wb") as f:
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(f))
        make_archive(Path("-"), tmp_path, monkeypatch)
        monkeypatch.undo()
    with ArchiveReader(str(path)) as r:
        cut = next(p.span for p in r.parts(check=False) if p.member.endswith("fs-boot.tar.zst") and p.index == 1)
    assert cut is not None
    os.truncate(path, cut[0] + cut[1] // 2)
    rc, report = verify_json(str(path), capsys)
    assert rc == 1
    assert any("stream streams/fs-boot.tar.zst is truncated" in e for e in report["errors"]), report["errors"]
    assert [s["member"] for s in report["streams"]] == ["streams/fs-root.tar.zst", "streams/fs-boot.tar.zst"]


def archive_of(tmp_path: Path, stream: bytes) -> Path:
    """An archive whose one stream is these bytes, with their true digest in the manifest."""
    (tmp_path / "s.zst").write_bytes(stream)
    path = tmp_path / "one.mksysb"
    m = manifest_doc(layout={}, source={"kind": "test"})
    w = ArchiveWriter(str(path))
    w.begin(m, 1)
    with open(tmp_path / "s.zst", "rb") as src:
        member, parts, size, sha = w.add_stream("fs-root", src)
    m["streams"] = [StreamInfo("fs-root", "/", member, parts, size, sha, 1, 0).to_dict()]
    w.finish(m)
    return path


def test_a_stream_that_is_zstd_but_no_tar_passes_only_without_deep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a broken writer makes this (capture checks tar's exit): the digests and zstd vouch for it, tar does not."""
    data = subprocess.run(["zstd", "-q", "-c"], input=os.urandom(30000), capture_output=True, check=True).stdout
    path = archive_of(tmp_path, data)
    rc, report = verify_json(str(path), capsys)
    assert rc == 0 and report["ok"], report
    rc, report = verify_json(str(path), capsys, "--deep")
    assert rc == 1
    (stream,) = report["streams"]
    assert stream["errors"] and stream["errors"][0].startswith("tar: "), stream


@pytest.mark.parametrize("deep", [False, True], ids=["default", "deep"])
def test_a_stream_that_zstd_cannot_decode_is_named_with_zstd_s_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deep: bool
) -> None:
    """A frame cut short, its digest recorded as it is: the digests match, zstd's test fails and says why."""
    data = subprocess.run(["pzstd", "-q", "-c"], input=os.urandom(300000), capture_output=True, check=True).stdout
    path = archive_of(tmp_path, data[: len(data) // 2])
    rc, report = verify_json(str(path), capsys, *(["--deep"] if deep else []))
    assert rc == 1
    (stream,) = report["streams"]
    (error,) = stream["errors"]
    assert error.startswith("zstd: ") and "pzstd: -:" not in error and len(error) > len("zstd: "), error
