"""AIX's backup errors: a file that vanishes between listing and reading."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

import pytest

from imgclone.archive.reader import read_manifest_doc
from imgclone.capture import excludes
from imgclone.capture import host as capture_host
from imgclone.capture.common import CaptureOptions, ErrMode, self_excludes
from imgclone.errors import ReadErrors
from tests.loopfs import loop_fs


def test_err_mode_from_env() -> None:
    assert ErrMode.from_env({}) is ErrMode.CONTINUE
    assert ErrMode.from_env({"ALT_BAK_ERR_REPORT": "1"}) is ErrMode.REPORT
    assert ErrMode.from_env({"ALT_BAK_ERR_FAIL": "1", "ALT_BAK_ERR_REPORT": "1"}) is ErrMode.FAIL
    assert ErrMode.from_env({"ALT_BAK_ERR_FAIL": "0"}) is ErrMode.CONTINUE


def test_archive_and_workdir_excluded_from_themselves(tmp_path: Path) -> None:
    pats = self_excludes(CaptureOptions(output="/root/x.mksysb"), tmp_path)
    assert b"^\\./root/x\\.mksysb$" in pats and b"^\\./root/x\\.mksysb\\.partial$" in pats
    assert excludes.self_pattern(os.fsencode("." + str(tmp_path))) in pats


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with loop_fs(tmp_path_factory.mktemp("vanish"), "ext4", 64, name="mnt") as mnt:
        yield mnt


def _vanish_after_listing(monkeypatch: pytest.MonkeyPatch, victim: Path) -> None:
    """The victim is listed, then deleted before tar reads it (names streamed into tar, or listed first)."""
    real, real_stream = excludes.select, excludes.select_stream

    def select_then_delete(*args: object, **kwargs: object) -> excludes.Selection:
        sel = real(*args, **kwargs)  # type: ignore[arg-type]
        victim.unlink()  # the file was listed; now it is gone before tar reads it
        return sel

    def stream_then_delete(names: Iterable[bytes], paths: Collection[bytes], write: Callable[[bytes], None],
                           **kwargs: bytes) -> excludes.Selection:  # fmt: skip
        def write_then_delete(name: bytes) -> None:
            write(name)  # a few names stay in the pipe's write buffer: tar reads this one after it is gone
            if name == b"./" + victim.name.encode() + b"\0":
                victim.unlink()

        return real_stream(names, paths, write_then_delete, **kwargs)

    monkeypatch.setattr(capture_host.excludes, "select", select_then_delete)
    monkeypatch.setattr(capture_host.excludes, "select_stream", stream_then_delete)


@pytest.mark.integration
@pytest.mark.parametrize("mode", list(ErrMode))
def test_vanished_file(mounted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: ErrMode) -> None:
    victim = mounted / "victim"
    victim.write_text("here at listing time")
    (mounted / "keeper").write_text("stays")
    _vanish_after_listing(monkeypatch, victim)
    out = tmp_path / "a.mksysb"
    opts = CaptureOptions(output=str(out), mounts=(str(mounted),), err_mode=mode, progress=False)
    if mode is ErrMode.CONTINUE:
        m = capture_host.capture_host(opts).to_dict()
        assert m["read_errors"] == 1 and read_manifest_doc(out)["complete"]
    elif mode is ErrMode.REPORT:
        with pytest.raises(ReadErrors, match="1 file"):
            capture_host.capture_host(opts)
        assert read_manifest_doc(out)["read_errors"] == 1, "REPORT keeps the archive"
    else:
        with pytest.raises(ReadErrors, match="capture stopped"):
            capture_host.capture_host(opts)
        assert list(tmp_path.iterdir()) == [], "FAIL must remove the partial archive"
