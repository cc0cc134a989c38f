"""copy's one-pass Phase 1: a capture thread writes a real archive into a pipe, a reader reads it as it comes."""

from __future__ import annotations

import contextlib
import os
import tarfile
import threading
from pathlib import Path

import pytest

from imgclone.archive import container as archive
from imgclone.archive.reader import ArchiveReader
from imgclone.archive.writer import ArchiveWriter
from imgclone.copy.stream import CaptureFeed, broken_pipe
from imgclone.errors import ArchiveError, ImgcloneError
from tests.manifests import manifest_doc

STREAMS = {"fs-root": os.urandom(5000), "fs-var": b"v" * 300}


class Capture:
    """A capture that writes STREAMS as an archive to the path it is given; fail_after: raise after that stream."""

    def __init__(self, fail_after: str | None = None, streams: dict[str, bytes] = STREAMS) -> None:
        self.fail_after = fail_after
        self.streams = streams

    def __call__(self, path: str) -> dict[str, object]:
        w = ArchiveWriter(path)
        try:
            m = manifest_doc(layout={}, source={"kind": "test"})
            w.begin(m, len(self.streams))
            for fs, data in self.streams.items():
                r, wfd = os.pipe()
                writer = threading.Thread(target=_feed, args=(wfd, data))
                writer.start()
                with os.fdopen(r, "rb") as src:
                    member, parts, size, sha = w.add_stream(fs, src)
                writer.join()
                m["streams"].append({"fs": fs, "member": member, "parts": parts, "bytes": size, "sha256": sha})
                if fs == self.fail_after:
                    raise ImgcloneError(f"capture failed after {fs}")
            w.finish(m)
        except BaseException:
            w.abort()
            raise
        return m


def _feed(fd: int, data: bytes) -> None:
    """What tar | zstd would write; it stops when the writer does."""
    with contextlib.suppress(BrokenPipeError), open(fd, "wb") as f:
        f.write(data)


def read_all(path: str) -> tuple[bool, dict[str, bytes], bool]:
    """(first manifest complete?, the streams' bytes, final manifest complete?) as a restore reads them."""
    with ArchiveReader(path) as r:
        first = bool(r.doc["complete"])
        got: dict[str, bytes] = {}
        for p in r.parts():
            fs = p.member.removeprefix("streams/").removesuffix(".tar.zst")
            got[fs] = got.get(fs, b"") + p.data.read()
        return first, got, bool(r.doc["complete"])


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "PART_SIZE", 1000)


def test_the_restore_reads_the_capture_as_it_is_written(tmp_path: Path) -> None:
    with CaptureFeed(Capture()) as feed:
        first, got, final = read_all(feed.path)
    assert (first, final) == (False, True), "planned from the first manifest, checked against the final one"
    assert got == STREAMS
    assert feed.result is not None and len(feed.result["streams"]) == 2  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == [], "nothing written to disk"


def test_archive_is_tee_d_and_kept_when_the_capture_completes(tmp_path: Path) -> None:
    kept = tmp_path / "kept.mksysb"
    with CaptureFeed(Capture(), keep=str(kept)) as feed:
        _, got, _ = read_all(feed.path)
    assert got == STREAMS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.mksysb"]
    assert read_all(str(kept))[1] == STREAMS, "the kept file is the same archive"
    assert tarfile.open(kept).getnames()[-1] == "manifest.json"


def test_a_capture_failure_is_reported_as_the_cause(tmp_path: Path) -> None:
    kept = tmp_path / "kept.mksysb"
    with pytest.raises(ImgcloneError) as info, CaptureFeed(Capture(fail_after="fs-root"), keep=str(kept)) as feed:
        try:
            read_all(feed.path)
        except ArchiveError as e:
            assert "incomplete" in str(e) or "truncated" in str(e) or "missing" in str(e), e
            e.hint = "the targets are partly written"
            raise
    assert str(info.value) == "capture failed after fs-root (the targets are partly written)"
    assert isinstance(info.value.__cause__, ArchiveError)
    assert list(tmp_path.iterdir()) == [], "an incomplete --archive is removed"


def test_a_restore_failure_stops_the_capture(tmp_path: Path) -> None:
    capture = Capture(streams={"fs-root": os.urandom(4 << 20)})  # more than the two pipes hold
    kept = tmp_path / "kept.mksysb"
    with pytest.raises(ImgcloneError, match="^target too small$"), CaptureFeed(capture, keep=str(kept)) as feed:
        with ArchiveReader(feed.path):
            pass  # planned from the first manifest, then refused: nothing more is read
        raise ImgcloneError("target too small")
    assert feed.error is not None and broken_pipe(feed.error), "the capture stopped on EPIPE, it did not hang"
    assert list(tmp_path.iterdir()) == []


def test_broken_pipe_is_found_in_the_causes() -> None:
    try:
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except OSError as e:
            raise ArchiveError("x: cannot write the archive") from e
    except ArchiveError as e:
        assert broken_pipe(e)
    assert not broken_pipe(ImgcloneError("no space left"))
