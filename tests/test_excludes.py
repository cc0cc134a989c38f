"""Exclude rules: grep's pattern rules on "./"-relative names, with the real GNU grep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgclone.capture.excludes import (
    ExcludeRules,
    Selection,
    bre_escape,
    check_full_path,
    literal_path,
    literal_paths,
    load_rules,
    select,
    select_stream,
    self_pattern,
    split_names,
)
from imgclone.errors import UsageError
from imgclone.host.run import Result
from tests.fakes import FakeRunner

TREE = [
    b".",
    b"./tmp",
    b"./tmp/a",
    b"./tmp/sub",
    b"./tmp/sub/b",
    b"./tmpfile",
    b"./var",
    b"./var/tmp",
    b"./var/tmp/x",
    b"./home",
    b"./home/tmpfile",
    b"./home/u",
    b"./home/u/scratch",
    b"./home/u/scratch/x",
    b"./home/u/notes",
]


def write_names(tmp_path: Path, names: list[bytes]) -> Path:
    p = tmp_path / "names"
    p.write_bytes(b"".join(n + b"\0" for n in names))
    return p


def run_select(
    tmp_path: Path, names: list[bytes], patterns: list[bytes], prefix: bytes = b"."
) -> tuple[list[bytes], Selection]:
    listfile = tmp_path / "ex"
    listfile.write_bytes(b"".join(p + b"\n" for p in patterns))
    rules = load_rules([listfile])
    out = tmp_path / "out"
    sel = select(write_names(tmp_path, names), out, rules, prefix=prefix)
    kept = out.read_bytes().split(b"\0")
    assert kept.pop() == b""
    assert sel.kept == len(kept)
    return kept, sel


def without(names: list[bytes], *drop: bytes) -> list[bytes]:
    return [n for n in names if n not in drop]


@pytest.mark.parametrize(
    "pattern, dropped, top",
    [
        # AIX: exclude the contents of /tmp, not /tmp itself nor other paths holding "/tmp"
        (b"^./tmp/", [b"./tmp/a", b"./tmp/sub", b"./tmp/sub/b"], [b"./tmp/a", b"./tmp/sub"]),
        # ^. ... $: exactly /tmp, and with it everything in it
        (b"^./tmp$", [b"./tmp", b"./tmp/a", b"./tmp/sub", b"./tmp/sub/b"], [b"./tmp"]),
        # AIX's scratch example: no ^, so it matches anywhere in the path
        (b"scratch", [b"./home/u/scratch", b"./home/u/scratch/x"], [b"./home/u/scratch"]),
        # a substring without anchors matches every path that holds it
        (
            b"tmp",
            [b"./tmp", b"./tmp/a", b"./tmp/sub", b"./tmp/sub/b", b"./tmpfile", b"./var/tmp", b"./var/tmp/x"]
            + [b"./home/tmpfile"],
            [b"./tmp", b"./tmpfile", b"./var/tmp", b"./home/tmpfile"],
        ),
        # anchored at the start: only /var/tmp's contents
        (b"^./var/tmp/", [b"./var/tmp/x"], [b"./var/tmp/x"]),
        # a file below an excluded directory is not reported separately
        (b"^./tmp/sub", [b"./tmp/sub", b"./tmp/sub/b"], [b"./tmp/sub"]),
        # the root itself: everything goes
        (b"^.$", TREE, [b"."]),
        (b"nomatch", [], []),
    ],
)
def test_aix_examples(tmp_path: Path, pattern: bytes, dropped: list[bytes], top: list[bytes]) -> None:
    kept, sel = run_select(tmp_path, TREE, [pattern])
    assert kept == without(TREE, *dropped)
    assert list(sel.excluded) == top


def test_tmp_contents_keeps_other_tmp_paths(tmp_path: Path) -> None:
    kept, _ = run_select(tmp_path, TREE, [b"^./tmp/"])
    for name in (b"./tmp", b"./var/tmp/x", b"./home/tmpfile", b"./tmpfile"):
        assert name in kept


def test_several_patterns(tmp_path: Path) -> None:
    kept, sel = run_select(tmp_path, TREE, [b"^./tmp/", b"scratch", b"notes$"])
    assert kept == [
        b".",
        b"./tmp",
        b"./tmpfile",
        b"./var",
        b"./var/tmp",
        b"./var/tmp/x",
        b"./home",
        b"./home/tmpfile",
        b"./home/u",
    ]
    assert sel.excluded == (b"./tmp/a", b"./tmp/sub", b"./home/u/scratch", b"./home/u/notes")


def test_prefix_for_a_non_root_filesystem(tmp_path: Path) -> None:
    names = [b".", b"./log", b"./log/x", b"./tmp", b"./tmp/y", b"./lib"]
    kept, sel = run_select(tmp_path, names, [b"^./var/log/", b"^./tmp/"], prefix=b"./var")
    # "./tmp/y" here is /var/tmp/y, which ^./tmp/ does not match
    assert kept == [b".", b"./log", b"./tmp", b"./tmp/y", b"./lib"]
    assert sel.excluded == (b"./log/x",)


def test_prefix_mount_point_itself(tmp_path: Path) -> None:
    names = [b".", b"./log", b"./log/x"]
    kept, sel = run_select(tmp_path, names, [b"^./var$"], prefix=b"./var")
    assert kept == []
    assert sel.excluded == (b".",)
    kept, sel = run_select(tmp_path, names, [b"^./var$"], prefix=b"./srv/var")
    assert kept == names
    assert sel.excluded == ()


def test_bad_prefix(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        select(write_names(tmp_path, [b"."]), tmp_path / "out", ExcludeRules((b"x",)), prefix=b"./var/")


@pytest.mark.parametrize(
    "pattern, dropped",
    [
        (b"^./with space$", [b"./with space"]),
        (b"space", [b"./with space"]),
        (b"^./two$", []),  # anchors hold at the ends of the whole name, not at an embedded newline
        (b"^./two.lines$", [b"./two\nlines"]),  # with -z, "." matches the newline
        (b"lines$", [b"./two\nlines"]),
        (b"^./-rf$", [b"./-rf"]),
        (b"-rf", [b"./-rf"]),
        (b"^./caf\xe9$", [b"./caf\xe9"]),
        (b"\xe9", [b"./caf\xe9"]),
        (b"^./caf.$", [b"./caf\xe9", b"./cafe"]),  # LC_ALL=C: a byte is a character
    ],
)
def test_awkward_names(tmp_path: Path, pattern: bytes, dropped: list[bytes]) -> None:
    names = [b".", b"./with space", b"./two\nlines", b"./-rf", b"./caf\xe9", b"./cafe", b"./plain"]
    kept, sel = run_select(tmp_path, names, [pattern])
    assert kept == without(names, *dropped)
    assert list(sel.excluded) == dropped


@pytest.mark.parametrize(
    "pattern, dropped",
    [
        (b"a+b", [b"./a+b"]),  # + is literal in a BRE
        (b"a?b", [b"./a?b"]),
        (b"a|b", [b"./a|b"]),
        (b"aa*b", [b"./aab", b"./ab"]),  # * repeats
        (b"a\\+b", [b"./aab", b"./ab"]),  # GNU \+ is one or more
        (b"^./ab$\\|^./a|b$", [b"./a|b", b"./ab"]),  # GNU \| alternates
        (b"^./a[+?]b$", [b"./a+b", b"./a?b"]),
        (b"^./a\\(a\\)\\{1\\}b$", [b"./aab"]),
    ],
)
def test_basic_regular_expressions(tmp_path: Path, pattern: bytes, dropped: list[bytes]) -> None:
    names = [b".", b"./a+b", b"./aab", b"./ab", b"./a?b", b"./a|b"]
    kept, _ = run_select(tmp_path, names, [pattern])
    assert kept == without(names, *dropped)


def test_bre_escape_round_trip(tmp_path: Path) -> None:
    nasty = b"./a.b[c]*d^e$f\\g+h?i|j{k}(l)"
    names = [
        b".",
        nasty,
        b"./aXb[c]*d^e$f\\g+h?i|j{k}(l)",
        b"./a.bc",
        b"./a",
        nasty + b"x",
        b"./z" + nasty[1:],
    ]
    listfile = tmp_path / "ex"
    listfile.write_bytes(b"")
    rules = load_rules([listfile], extra=[self_pattern(nasty)])
    out = tmp_path / "out"
    sel = select(write_names(tmp_path, names), out, rules)
    assert out.read_bytes().split(b"\0")[:-1] == without(names, nasty)
    assert sel.excluded == (nasty,)


def test_bre_escape() -> None:
    assert bre_escape(b"./a.b") == b"\\./a\\.b"
    assert bre_escape(b"[]*^$\\") == b"\\[\\]\\*\\^\\$\\\\"
    assert bre_escape(b"+?|{}()/-\xe9") == b"+?|{}()/-\xe9"
    assert self_pattern(b"./root/backup.tar") == b"^\\./root/backup\\.tar$"
    with pytest.raises(UsageError):
        bre_escape(b"./a\nb")


def test_empty_exclude_file(tmp_path: Path) -> None:
    kept, sel = run_select(tmp_path, TREE, [])
    assert kept == TREE
    assert sel == Selection(len(TREE), ())


def test_no_rules_copies_without_grep(tmp_path: Path) -> None:
    runner = FakeRunner()  # any command would fail the test
    out = tmp_path / "out"
    sel = select(write_names(tmp_path, TREE), out, ExcludeRules(), runner=runner)
    assert out.read_bytes() == (tmp_path / "names").read_bytes()
    assert sel == Selection(len(TREE), ())
    assert runner.calls == []


def test_blank_lines_ignored(tmp_path: Path) -> None:
    listfile = tmp_path / "ex"
    listfile.write_bytes(b"\n\n^./tmp/\n\nscratch\n\n")
    rules = load_rules([listfile])
    assert rules.patterns == (b"^./tmp/", b"scratch")
    assert rules.sources == (str(listfile),)
    out = tmp_path / "out"
    sel = select(write_names(tmp_path, TREE), out, rules)
    assert sel.kept == len(TREE) - 5


def test_lines_kept_as_grep_reads_them(tmp_path: Path) -> None:
    listfile = tmp_path / "ex"
    listfile.write_bytes(b" lead\r\ntrail \nno-final-newline")
    assert load_rules([listfile]).patterns == (b" lead\r", b"trail ", b"no-final-newline")


def test_several_lists_and_extra(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"^./tmp/\n")
    b.write_bytes(b"scratch\n")
    rules = load_rules([a, str(b)], extra=[self_pattern(b"./root/img.tar")])
    assert rules.patterns == (b"^./tmp/", b"scratch", b"^\\./root/img\\.tar$")
    assert rules.sources == (str(a), str(b))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        load_rules([tmp_path / "nope"])
    assert e.value.message == f"exclude list {tmp_path / 'nope'}: No such file or directory"


def test_missing_ok(tmp_path: Path) -> None:
    rootvg = tmp_path / "exclude.rootvg"
    rules = load_rules([str(rootvg)], missing_ok=[rootvg])
    assert rules == ExcludeRules((), ())
    rootvg.write_bytes(b"^./tmp/\n")
    assert load_rules([rootvg], missing_ok=[str(rootvg)]).patterns == (b"^./tmp/",)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Is a directory"):
        load_rules([tmp_path], missing_ok=[tmp_path])


@pytest.mark.parametrize("bad", [b"\\(", b"a[b", b"x\\{1"])
def test_rejected_pattern_names_the_file(tmp_path: Path, bad: bytes) -> None:
    good, ex = tmp_path / "good", tmp_path / "ex"
    good.write_bytes(b"^./tmp/\n")
    ex.write_bytes(b"scratch\n" + bad + b"\n")
    with pytest.raises(UsageError) as e:
        load_rules([good, ex])
    assert e.value.message.startswith(f"exclude list {ex}: grep rejects a pattern: grep: ")
    assert e.value.hint == "patterns are grep basic regular expressions"


def test_rejected_pattern_message(tmp_path: Path) -> None:
    ex = tmp_path / "ex"
    ex.write_bytes(b"\\(\n")
    with pytest.raises(UsageError) as e:
        load_rules([ex])
    assert e.value.message == f"exclude list {ex}: grep rejects a pattern: grep: Unmatched ( or \\("


def test_extra_with_newline_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        load_rules([], extra=[b"^./a\nb$"])


def test_to_dict_is_json_safe() -> None:
    rules = ExcludeRules((b"^./tmp/", b"caf\xe9"), ("/etc/exclude.rootvg",))
    d = rules.to_dict()
    assert d == {"sources": ["/etc/exclude.rootvg"], "patterns": ["^./tmp/", "caf\\xe9"]}
    json.dumps(d)


@pytest.mark.parametrize("path", ["/etc/exclude.rootvg", "/root/ex"])
def test_check_full_path_ok(path: str) -> None:
    check_full_path(path)


@pytest.mark.parametrize("path", ["exclude.rootvg", "./ex", "~/ex", ""])
def test_check_full_path_rejects(path: str) -> None:
    with pytest.raises(UsageError, match="full path name"):
        check_full_path(path)


def test_one_grep_on_prefixed_list(tmp_path: Path) -> None:
    seen: list[tuple[list[str], bytes | None, bytes]] = []

    def reply(argv: list[str], input: bytes | None) -> Result:
        seen.append((argv, input, Path(argv[-1]).read_bytes()))
        return Result(argv, 0, b"./var/log\0", "")

    runner = FakeRunner({("grep",): reply})
    out = tmp_path / "out"
    sel = select(
        write_names(tmp_path, [b".", b"./log", b"./log/x"]),
        out,
        ExcludeRules((b"log$",)),
        prefix=b"./var",
        runner=runner,
    )
    assert sel == Selection(1, (b"./log",))
    ((argv, stdin, listed),) = seen
    assert argv[:2] == ["grep", "-z"] and argv[-2] == "--" and "-f" in argv
    assert stdin == b"log$\n"
    assert listed == b"./var\0./var/log\0./var/log/x\0"
    assert not list(tmp_path.glob(".imgclone-names-*"))  # the temporary list is removed


# -- exact-path rules, applied as a stream (the archive and the workdir keep out of themselves) -------


@pytest.mark.parametrize(
    "pattern, literal",
    [
        (self_pattern(b"./root/x.mksysb"), b"./root/x.mksysb"),
        (self_pattern(b"./a.b[c]*d^e$f\\g+h?i|j{k}(l) \xe9"), b"./a.b[c]*d^e$f\\g+h?i|j{k}(l) \xe9"),
        (b"^./tmp$", None),  # "." is any character
        (b"^\\./tmp/", None),  # no $: a prefix
        (b"\\./tmp$", None),  # no ^: anywhere
        (b"^\\./a\\|b$", None),  # GNU alternation
        (b"^\\./a\\w$", None),  # GNU word character
        (b"^\\./a\\$", None),  # the "$" is escaped: no anchor
        (b"^\\./a*$", None),
        (b"^\\./a[bc]$", None),
    ],
)
def test_literal_path(pattern: bytes, literal: bytes | None) -> None:
    assert literal_path(pattern) == literal


def test_literal_paths_all_or_nothing() -> None:
    exact = self_pattern(b"./w")
    assert literal_paths(ExcludeRules()) == frozenset()
    assert literal_paths(ExcludeRules((exact,))) == {b"./w"}
    assert literal_paths(ExcludeRules((exact, b"^./tmp/"))) is None


class Trickle:
    """A pipe-like reader that hands out a few bytes per read1, as a pipe does while find writes."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def read1(self, n: int) -> bytes:
        chunk, self.data = self.data[: min(n, self.step)], self.data[min(n, self.step) :]
        return chunk

    def read(self, n: int) -> bytes:
        raise AssertionError("a pipe is read with read1")


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_split_names_across_reads(step: int) -> None:
    names = [b".", b"./a b", b"./new\nline", b"./\xff\xfe", b"./-rf"]
    data = b"".join(n + b"\0" for n in names)
    assert list(split_names(Trickle(data, step))) == names  # type: ignore[arg-type]
    assert list(split_names(Trickle(data[:-1], step))) == names, "a missing last NUL"  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", [b".", b"./srv/data"])
def test_select_stream_agrees_with_grep(tmp_path: Path, prefix: bytes) -> None:
    """The streamed selection of exact paths is what grep's two passes select, name for name."""
    sysnames = [b"./tmp", b"./home/u/scratch", b"./tmpfile", b"./home/u/notes"]
    extra = [self_pattern(prefix + p[1:] if prefix != b"." else p) for p in sysnames]
    listfile = tmp_path / "ex"
    listfile.write_bytes(b"")
    rules = load_rules([listfile], extra=extra)
    out = tmp_path / "out"
    by_grep = select(write_names(tmp_path, TREE), out, rules, prefix=prefix)
    written: list[bytes] = []
    paths = literal_paths(rules)
    assert paths is not None
    streamed = select_stream(iter(TREE), paths, written.append, prefix=prefix)
    assert b"".join(written) == out.read_bytes()
    assert streamed == by_grep
    assert streamed.excluded == (b"./tmp", b"./tmpfile", b"./home/u/scratch", b"./home/u/notes")
    assert b"./tmp/sub/b\0" not in written and b"./var/tmp/x\0" in written


def test_select_stream_without_rules_passes_everything() -> None:
    written: list[bytes] = []
    assert select_stream(iter(TREE), frozenset(), written.append) == Selection(len(TREE), ())
    assert written == [n + b"\0" for n in TREE]
