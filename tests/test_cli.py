"""Bad input: one clear line, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[bytes]]


def test_help_teaches(imgclone: Run) -> None:
    r = imgclone("capture", "--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for text in ("--mount", "exclude.rootvg", "examples:", "ALT_BAK_ERR_FAIL", "^./tmp/"):
        assert text in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["capture"], 2, "the following arguments are required: -o"),
        (["capture", "-o", "{tmp}/a", "-e", "relative/list"], 2, "must be a full path name"),
        (["capture", "-o", "{tmp}/a", "-e", "/nonexistent/list"], 2, "exclude list /nonexistent/list: no such file"),
        (["capture", "-o", "{tmp}/a", "--mount", "{tmp}"], 2, "not a mount point"),
        (["capture", "img.qcow2", "-o", "{tmp}/a", "--mount", "/"], 2, "either a SOURCE image or --mount"),
        (["capture", "-o", "{tmp}/no/such/dir/a", "--mount", "/"], 2, "does not exist"),
        (["capture", "-o", "{tmp}", "--mount", "/"], 2, "is a directory"),
        (["capture", "{tmp}/missing.qcow2", "-o", "{tmp}/a"], 2, "no such image or device"),
        (["archive", "verify", "{tmp}/missing"], 1, "no such archive"),
        (["archive", "show", "{tmp}/missing"], 1, "no such archive"),
        (["archive", "frobnicate", "x"], 2, "invalid choice"),
    ],
)
def test_bad_input(imgclone: Run, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    r = imgclone(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert message in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    assert sorted(tmp_path.rglob("*")) == before, "bad input wrote something"


def test_not_an_archive_is_one_line(imgclone: Run, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100 + b"garbage" * 1000)
    r = imgclone("archive", "list", str(junk))
    assert r.returncode == 1
    assert r.stderr.decode().count("\n") == 1 and "not an imgclone archive" in r.stderr.decode()


def test_debug_shows_traceback(imgclone: Run, tmp_path: Path) -> None:
    r = imgclone("archive", "verify", str(tmp_path / "missing"), "-D")
    assert r.returncode == 1
    assert "Traceback" in r.stderr.decode()


def test_archive_show_names_what_the_content_needs() -> None:
    from imgclone.cli.archive import _content_row
    from imgclone.model.content import ContentFacts
    from imgclone.model.manifest import StreamInfo

    facts = {"largest_file": 3 << 20, "largest_file_path": "/srv/d/big", "most_links": 2, "most_links_path": "/srv/d/b",
             "largest_xattr": 5, "largest_xattr_name": "user.note", "largest_xattr_path": "/srv/small"}  # fmt: skip

    def stream(mountpoint: str, files: int, content: dict[str, object] | None = None) -> StreamInfo:
        return StreamInfo("fs", mountpoint, "m", 1, 0, "", files, 0, ContentFacts.from_dict(content))

    row = _content_row(stream("/srv", 6, facts))
    assert row == ("content /srv     6 files; largest file 3.0 MiB (/srv/d/big), most hard links 2 (/srv/d/b), "
                   "largest xattr user.note 5 bytes (/srv/small)")  # fmt: skip
    host = _content_row(stream("/", 1, {"largest_file": 1, "most_links": 1}))
    assert host.endswith("xattr sizes not recorded (host capture)")
    assert "not recorded (an older imgclone)" in _content_row(stream("/", 1))


@pytest.mark.parametrize(
    ("argv", "debug", "json"),
    [(["-D", "capture", "-o", "x"], True, False), (["capture", "-D", "-o", "x"], True, False),
     (["capture", "-o", "x"], False, False), (["--json", "archive", "verify", "a"], False, True),
     (["archive", "verify", "--json", "-D", "a"], True, True), (["-D", "alt", "query"], True, False)],
)  # fmt: skip
def test_common_flags_count_before_and_after_the_command(argv: list[str], debug: bool, json: bool) -> None:
    """-D/-V/--json before the command are not reset by the command's own defaults."""
    from imgclone.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    assert (args.debug, args.json, args.verbose) == (debug, json, False)


@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("args", [("copy", "--help"), ("--version",)], ids=["long", "short"])
def test_a_reader_that_goes_away_ends_it_quietly(args: tuple[str, ...], buffered: bool) -> None:
    """`imgclone ... | head`: the reader closes the pipe; imgclone stops as a tool killed by SIGPIPE would
    (141), with no traceback (argparse's help was one), whether the output is written as it goes
    (PYTHONUNBUFFERED) or, short, left in stdout's buffer until the exit."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "imgclone", *args], stdout=write_end, stderr=subprocess.PIPE,
                           env=env, check=False)  # fmt: skip
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr.decode()) == (141, "")
