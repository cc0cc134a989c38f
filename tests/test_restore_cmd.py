"""restore's arguments: sizes, conversions, layout files, and refusals that write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclone.cli.rules import load_layout, parse_convert, parse_size
from imgclone.errors import LayoutError, UsageError

Run = Callable[..., subprocess.CompletedProcess[bytes]]
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(("text", "size"), [("20G", 20 << 30), ("512M", 512 << 20), ("1.5T", int(1.5 * (1 << 40))),
                                            ("4096", 4096), ("2GiB", 2 << 30)])  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(UsageError, match="not a size"):
        parse_size("big")


def test_convert_and_upgrade() -> None:
    assert parse_convert([], upgrade=True) == {"ext2": "ext4", "ext3": "ext4"}
    assert parse_convert(["ext4=xfs"], upgrade=True) == {"ext2": "ext4", "ext3": "ext4", "ext4": "xfs"}
    for bad in ("ext4", "vfat=ext4", "ext4=ext4", "ext4=zfs"):
        with pytest.raises(UsageError, match="expected SRC=DST"):
            parse_convert([bad], upgrade=False)


def test_layout_file_rules(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="must be a full path name"):
        load_layout("layout.json")
    with pytest.raises(UsageError, match="No such file"):
        load_layout(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(LayoutError, match="not valid JSON"):
        load_layout(str(bad))
    dangling = json.loads((DATA / "layout-bios-lvm.json").read_text())
    dangling["lvs"][0]["vg"] = "vg-nope"
    bad.write_text(json.dumps(dangling))
    with pytest.raises(LayoutError, match="LogicalVolume lv-rootvg-root: volume group vg-nope does not exist"):
        load_layout(str(bad))
    assert load_layout(str(DATA / "layout-bios-lvm.json")) is not None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-a", "{tmp}/none.mksysb", "-d", "{tmp}/t.img"], 1, "no such archive"),
        (["-a", "{tmp}/junk", "-d", "{tmp}/t.img"], 1, "not an imgclone archive"),
        (["-a", "{tmp}/junk", "-d", "{tmp}/t.img", "-i", "rel.json"], 2, "must be a full path name"),
        (["-a", "{tmp}/junk", "-d", "{tmp}/t.img", "--convert", "ext4=zfs"], 2, "expected SRC=DST"),
        (["-a", "{tmp}/junk", "-d", "{tmp}/t.img", "--size", "lots"], 2, "not a size"),
        (["-a", "{tmp}/junk", "-d", "{tmp}/t.img", "--lv-name-limit", "3"], 2, "too small"),
        (["-a", "{tmp}/junk", "-d", "{tmp}/t.img {tmp}/t.img"], 2, "target given twice"),
        (["-a", "{tmp}/junk"], 2, "required: -d"),
    ],
)
def test_bad_restore_input_writes_nothing(
    imgclone: Run, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "junk").write_bytes(b"not a tar" * 200)
    before = sorted(tmp_path.rglob("*"))
    r = imgclone("restore", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert message in err and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before


def test_restore_from_a_terminal_stdin_is_refused(tmp_path: Path) -> None:
    """`restore -a -` typed at a terminal would wait for an archive forever: refused before anything is read."""
    main, tty = os.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "imgclone", "restore", "-a", "-", "-d", str(tmp_path / "t.img")],
                           stdin=tty, capture_output=True, timeout=60, check=False)  # fmt: skip
    finally:
        os.close(tty)
        os.close(main)
    err = r.stderr.decode()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert "-a -: standard input is a terminal" in err
    assert list(tmp_path.iterdir()) == []


def test_phase2_with_nothing_asked_is_journaled(tmp_path: Path) -> None:
    """-P2 without customization flags records Phase 2 (alt query said "not run: 2" after a whole copy), and only on
    targets Phase 1 made: elsewhere it fails in one line, as Phase 2 with work does."""
    from imgclone.model import journal as state

    target = str(tmp_path / "t.img")
    env = dict(os.environ, IMGCLONE_STATE_DIR=str(tmp_path / "state"), IMGCLONE_LOCK_DIR=str(tmp_path / "locks"))
    argv = [sys.executable, "-m", "imgclone", "restore", "-d", target, "-P2"]
    r = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    err = r.stderr.decode()
    assert r.returncode != 0 and len(err.splitlines()) == 1 and "no Phase 1 recorded" in err, err
    journal = tmp_path / "state" / f"{state.alternate_id([target])}.json"
    journal.parent.mkdir()
    journal.write_text(json.dumps({"version": state.STATE_VERSION, "phases": {"1": {"completed": "x"}}}))
    r = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Phase 2: no customization requested" in r.stdout
    phases = json.loads(journal.read_text())["phases"]
    assert phases["2"]["notes"] == ["no customization requested"] and phases["1"] == {"completed": "x"}


STREAMED = "(streamed by imgclone copy, not kept)"


@pytest.mark.parametrize(("archive", "recorded"), [("-", "(standard input)"), (STREAMED, STREAMED),
                                                  ("a.mksysb", "{cwd}/a.mksysb")])  # fmt: skip
def test_journal_names_the_archive(
    archive: str, recorded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy reads its archive from a pipe (/dev/fd/N): the journal says it was streamed, not a path naming nothing."""
    from types import SimpleNamespace

    from imgclone.model import journal as state
    from imgclone.model.layout import Layout

    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    layout = Layout.from_dict(json.loads((DATA / "layout-bios-lvm.json").read_text()))
    from imgclone.model.manifest import Manifest, Source
    from imgclone.phases.restore import Restore, RestoreOptions, journal_of

    plan = SimpleNamespace(target=layout, source=layout)
    opts = RestoreOptions(archive=archive, targets=("t.img",))
    ctx = Restore(targets=opts.targets, opts=opts, manifest=Manifest(layout, Source("test"), None), disks=[], plan=plan)  # type: ignore[arg-type]
    path = state.save_phase1(["t.img"], journal_of(ctx))
    assert json.loads(path.read_text())["archive"] == recorded.format(cwd=tmp_path)
