"""A stream whose xattr sizes no manifest records, restored into a type with smaller xattrs: read as it passes,
stopped at the first xattr the target cannot hold, before tar_in gets it (GNU tar would drop it and exit 0)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from typing import Any

import pytest

from imgclone.errors import ImgcloneError
from imgclone.model.content import ContentFacts
from imgclone.model.trees import trees
from imgclone.phases import extract
from imgclone.phases.stream_guard import guards
from tests.fakes import FakeGuest
from tests.test_limits import GiB, planned, source

HOST_FACTS = ContentFacts(GiB, "/data/a", 2, "/data/b")  # a host capture: no xattr figure


def tar_with(xattrs: list[int]) -> bytes:
    """A pax tar of files f0, f1, ... of 4 KiB each, file i with one user xattr of xattrs[i] bytes (0: none)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i, size in enumerate(xattrs):
            ti = tarfile.TarInfo(f"./f{i}")
            ti.size = 4096
            if size:
                ti.pax_headers = {"SCHILY.xattr.user.big": "A" * size}
            tf.addfile(ti, io.BytesIO(b"x" * 4096))
    return buf.getvalue()


def test_only_unknown_xattrs_going_into_smaller_ones_are_guarded() -> None:
    into_ext4 = planned(source("xfs"), HOST_FACTS, convert={"xfs": "ext4"})
    assert list(guards(into_ext4, {"fs-data": HOST_FACTS})) == ["fs-data"]
    assert list(guards(into_ext4, {})) == ["fs-data"], "nothing recorded (a copy's first manifest, an old archive)"
    known = ContentFacts(GiB, "/data/a", 2, "/data/b", 100, "user.x", "/data/c")
    assert guards(into_ext4, {"fs-data": known}) == {}, "recorded: the plan checked them already"
    assert guards(planned(source("ext4"), HOST_FACTS, convert={"ext4": "xfs"}), {"fs-data": HOST_FACTS}) == {}
    assert guards(planned(source("xfs"), HOST_FACTS), {"fs-data": HOST_FACTS}) == {}, "not converted"


def test_the_guard_refuses_at_the_offending_header_before_its_data() -> None:
    [guard] = guards(planned(source("xfs"), HOST_FACTS, convert={"xfs": "ext4"}), {}).values()
    data = tar_with([0, 3000, 5000, 0])
    refusal, at = None, 0
    while refusal is None and at < len(data):
        refusal = guard.check(data[at : at + 512])
        at += 512
    assert refusal == ("filesystem /data (fs-data): file /data/f2 has an extended attribute user.big of 5000 bytes; "
                       "ext4 (4 KiB blocks) holds 4044 bytes of name and value: keep it xfs (leave out --convert "
                       "xfs=ext4), or exclude the file from the capture")  # fmt: skip
    f2 = data.index(b"x" * 4096, data.index(b"AAAA" * 1250))  # f2's data follows its pax header
    assert at <= f2, "refused before a byte of f2's data went by"


class Pipe:
    """tar_in's reply: it reads the whole pipe, as the appliance's tar would, and keeps what it got."""

    def __init__(self) -> None:
        self.got = b""

    def __call__(self, path: str, directory: str, **kw: Any) -> None:
        with open(path, "rb") as f:
            self.got = f.read()


class Part:
    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.index, self.member, self.span = 0, "streams/fs-data.tar.zst", None


class Bar:
    def update(self, n: int) -> None:
        pass


def extraction(pipe: Pipe) -> extract.Extraction:
    plan = planned(source("xfs"), HOST_FACTS, convert={"xfs": "ext4"})
    [guard] = guards(plan, {}).values()
    [tree] = trees(plan.target)
    return extract.Extraction(FakeGuest({"tar_in": pipe}), "streams/fs-data.tar.zst", tree, "/dev/sda1", None, guard)


def part(xattrs: list[int]) -> Part:
    return Part(subprocess.run(["zstd", "-q", "-c"], input=tar_with(xattrs), stdout=subprocess.PIPE, check=True).stdout)


def test_a_guarded_stream_reaches_tar_in_whole_when_it_fits() -> None:
    pipe = Pipe()
    e = extraction(pipe)
    e.feed(part([0, 3000] + [0] * 300), Bar())  # type: ignore[arg-type]
    e.finish()
    assert pipe.got == tar_with([0, 3000] + [0] * 300), "every byte, in order, over several chunks"


def test_a_guarded_stream_stops_before_the_xattr_tar_would_drop() -> None:
    pipe = Pipe()
    e = extraction(pipe)
    data = tar_with([0] * 300 + [5000] + [0] * 300)  # the big one past the first 1 MiB chunk
    with pytest.raises(ImgcloneError, match="file /data/f300 has an extended attribute user.big of 5000 bytes") as ex:
        try:
            e.feed(part([0] * 300 + [5000] + [0] * 300), Bar())  # type: ignore[arg-type]
            e.finish()
        except ImgcloneError:
            e.abandon()  # as extract_streams does
            raise
    assert "before tar had the file" in str(ex.value)
    assert 0 < len(pipe.got) < data.index(b"A" * 5000), "tar_in got the chunks before it, not the one with the xattr"
