"""copy's prescan: the files near a type's limits, found before anything is written, through the exclude rules."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from imgclone.capture import excludes, prescan
from imgclone.capture import host as capture_host
from imgclone.capture import offline as capture_offline
from imgclone.model.content import ContentFacts
from tests.fakes import FakeGuest
from tests.manifests import manifest_of

GiB = 1 << 30


def rec(kind: str, links: int, size: int, name: bytes) -> bytes:
    return f"{kind} {links} {size} ".encode() + name


def test_with_parents_lists_each_parent_once_before_its_files() -> None:
    out = prescan.with_parents([rec("f", 1, 2 * GiB, b"./a/b/big"), rec("f", 1, 3 * GiB, b"./a/c"),
                                rec("l", 1200, 9, b"./top")])  # fmt: skip
    assert out == [b"d 2 0 .", b"d 2 0 ./a", b"d 2 0 ./a/b", rec("f", 1, 2 * GiB, b"./a/b/big"),
                   rec("f", 1, 3 * GiB, b"./a/c"), rec("l", 1200, 9, b"./top")]  # fmt: skip


def test_facts_are_those_of_the_kept_candidates(tmp_path: Path) -> None:
    candidates = [rec("f", 1, 20 * GiB, b"./cache/huge"), rec("f", 1, 2 * GiB, b"./lib/db"),
                  rec("f", 1500, 10, b"./lib/linked"), rec("f", 1, 5 * GiB, b"./new\nline")]  # fmt: skip
    found = b"".join(r + b"\0" for r in candidates)
    rules = excludes.ExcludeRules((b"^\\./var/cache$",))  # a rule on the directory excludes what is under it
    facts = prescan.facts(found, "/var", rules, tmp_path)
    assert (facts.largest_file, facts.largest_file_path) == (5 * GiB, "/var/new\nline")
    assert (facts.most_links, facts.most_links_path) == (1500, "/var/lib/linked")
    assert facts.largest_xattr is None, "find sees no xattrs"
    assert list(tmp_path.iterdir()) == [], "its scratch files are removed"
    nothing = prescan.facts(b"", "/", excludes.ExcludeRules(), tmp_path)
    assert (nothing.largest_file, nothing.most_links) == (0, 0), "no candidate: nothing near a limit"


def test_find_argv_names_only_files_near_a_limit(tmp_path: Path) -> None:
    """The real find, on a tree with a sparse 1 GiB + 1 file, one of exactly 1 GiB and a file with 1001 links."""
    (tmp_path / "d").mkdir()
    with open(tmp_path / "d" / "over", "wb") as f:
        f.truncate(GiB + 1)
    with open(tmp_path / "exact", "wb") as f:
        f.truncate(GiB)
    (tmp_path / "linked").write_bytes(b"x")
    for i in range(prescan.PRESCAN_LINKS):
        os.link(tmp_path / "linked", tmp_path / f"l{i}")
    out = subprocess.run(prescan.find_argv(str(tmp_path)), check=True, stdout=subprocess.PIPE).stdout
    names = sorted(r.split(b" ", 3)[3] for r in out.split(b"\0") if r)
    assert names[0] == b"./d/over" and len(names) == 1 + prescan.PRESCAN_LINKS + 1, names[:3]
    assert b"./exact" not in names
    assert prescan.PRESCAN_FILE_BYTES < 4 * GiB and prescan.PRESCAN_LINKS < 32000, "below every type's own limits"


def test_host_prescan_reads_the_view_and_applies_the_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    (tree / "tmp").mkdir(parents=True)
    for name in ("big", "tmp/bigger"):
        with open(tree / name, "wb") as f:
            f.truncate(2 * GiB if name == "big" else 3 * GiB)

    @contextmanager
    def view(mountpoint: str) -> Iterator[str]:
        assert mountpoint == "/srv"
        yield str(tree)

    monkeypatch.setattr(capture_host, "read_only_view", view)
    work = tmp_path / "work"
    work.mkdir()
    facts = capture_host.prescan_fs("/srv", excludes.ExcludeRules((b"^\\./srv/tmp$",)), work)
    assert (facts.largest_file, facts.largest_file_path) == (2 * GiB, "/srv/big"), "the excluded /srv/tmp is left out"


class ApplianceTmp:
    """appliance_command's reply for capture_offline.prescan_fs: the appliance's /tmp, where find writes the records,
    split into chunks that base64 reads one at a time."""

    def __init__(self, records: bytes) -> None:
        self.records = records
        self.files: dict[str, bytes] = {}

    def __call__(self, argv: list[str]) -> str:
        d = capture_offline.PRESCAN_DIR
        if argv == ["rm", "-rf", d]:
            self.files = {k: v for k, v in self.files.items() if not k.startswith(d + "/")}
        elif argv[0] == "find" and argv[1] == "/sysroot":
            self.files[argv[argv.index("-fprintf") + 1]] = self.records
        elif argv[0] == "split":
            data, size = self.files[argv[-2]], int(argv[2])
            for i in range(0, len(data), size):
                self.files[f"{argv[-1]}{i // size:06d}"] = data[i : i + size]
        elif argv[0] == "find":
            return "".join(f"{k}\n" for k in self.files if k.startswith(f"{d}/part."))
        elif argv[0] == "base64":
            return base64.b64encode(self.files[argv[-1]]).decode()
        return ""


def steps(g: FakeGuest) -> list[Any]:
    """The calls: an appliance command by its program, mount_ro with its arguments, any other by its name."""
    return [c.args[0][0] if c.name == "appliance_command" else (c.name, *c.args) if c.name == "mount_ro" else c.name
            for c in g.calls]  # fmt: skip


def test_image_prescan_mounts_one_filesystem_and_reads_finds_records(tmp_path: Path) -> None:
    records = rec("f", 1, 17 * GiB, b"./big") + b"\0" + rec("f", 1, 2 * GiB, b"./junk.txt") + b"\0"
    g = FakeGuest({"appliance_command": ApplianceTmp(records)})
    rules = excludes.ExcludeRules((b"^\\./var/junk\\.txt$",))
    facts = capture_offline.prescan_fs(g, "/var", "/dev/rootvg/var", rules, tmp_path)
    assert steps(g) == ["umount_all", ("mount_ro", "/dev/rootvg/var", "/"), "rm", "mkdir", "find", "split", "find",
                       "base64", "umount_all"]  # fmt: skip
    assert (facts.largest_file, facts.largest_file_path) == (17 * GiB, "/var/big")


def test_image_prescan_reads_records_larger_than_one_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with thousands of links has a record per name: the records come out in chunks, none lost, and a
    second filesystem does not read the first one's."""
    monkeypatch.setattr(capture_offline, "PRESCAN_CHUNK", 1000)
    names = [rec("f", 5000, 10, b"./links/n%05d" % i) + b"\0" for i in range(5000)]
    tmp = ApplianceTmp(b"".join(names))
    g = FakeGuest({"appliance_command": tmp})
    facts = capture_offline.prescan_fs(g, "/", "/dev/sda1", excludes.ExcludeRules(), tmp_path)
    assert steps(g).count("base64") > 100
    assert (facts.most_links, facts.most_links_path) == (5000, "/links/n00000")
    tmp.records = rec("f", 1, 3 * GiB, b"./other") + b"\0"
    g.calls.clear()
    facts = capture_offline.prescan_fs(g, "/srv", "/dev/sda2", excludes.ExcludeRules(), tmp_path)
    assert steps(g).count("base64") == 1, "the first filesystem's chunks were removed"
    assert (facts.largest_file, facts.most_links) == (3 * GiB, 1)


def planning_content(doc: dict[str, Any]) -> dict[str, ContentFacts | None]:
    """What restore checks a manifest document's content with (the document without a layout: an empty one)."""
    return manifest_of(doc).planning_content()


def test_a_piped_first_manifest_plans_with_its_prescan() -> None:
    big = ContentFacts(largest_file=17 * GiB, largest_file_path="/var/big")
    first = {"streams": [], "prescan": {"fs-var": big.to_dict()}}
    assert planning_content(first) == {"fs-var": big}
    assert planning_content({"streams": []}) == {}, "no prescan (no conversion, or an older imgclone): not known"
    final = {"streams": [{"fs": "fs-var", "content": {"largest_file": 5}}], "prescan": {"fs-var": big.to_dict()}}
    assert planning_content(final) == {"fs-var": ContentFacts(largest_file=5)}, "the streams' exact facts win"
