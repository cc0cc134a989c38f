"""build: the libguestfs calls that make a planned layout, recorded by a fake Guest."""

from __future__ import annotations

from typing import Any, cast

from imgclone import build
from imgclone.guest import Guest
from imgclone.layout import Disk, Filesystem, FsType, Layout, Partition
from imgclone.plan import Target, make_plan

MiB = 1 << 20


class Recorder:
    """Stands in for Guest: every call is recorded as (name, args, kwargs); none returns anything."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return call

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args, _ in self.calls if n == name]


def test_msdos_with_logical_partitions() -> None:
    # a source with 2 primaries and logicals 5, 6, 7 (the extended partition is a container, not in the layout)
    disk = Disk("disk-sda", "/dev/sda", 4096 * MiB)
    starts = {1: 1, 2: 101, 5: 202, 6: 303, 7: 404}
    parts = tuple(Partition(f"part-sda{n}", "disk-sda", n, s * MiB, 100 * MiB) for n, s in starts.items())
    fss = tuple(
        Filesystem(f"fs-{n}", p.id, FsType.EXT4, f"/m{n}", p.size, MiB) for n, p in zip(starts, parts, strict=True)
    )
    p = make_plan(Layout((disk,), parts, filesystems=fss), [Target("/img/m.img", 0)])
    g = Recorder()
    build.partition_disks(cast(Guest, g), build.Devices(p.target, {"disk-t0": "/dev/sda"}))
    assert g.named("part_init") == [("/dev/sda", "msdos")]
    s = MiB // 512
    assert g.named("part_add") == [
        ("/dev/sda", "p", 1 * s, 101 * s - 1),
        ("/dev/sda", "p", 101 * s, 201 * s - 1),
        ("/dev/sda", "p", 201 * s, 301 * s - 1),
        ("/dev/sda", "e", 301 * s, 503 * s - 1),  # 1 MiB before logical 5, to the end of logical 6
        ("/dev/sda", "l", 302 * s, 402 * s - 1),
        ("/dev/sda", "l", 403 * s, 503 * s - 1),
    ]
    assert [x.number for x in p.target.partitions] == [1, 2, 3, 5, 6]
    paths = build.Devices(p.target, {"disk-t0": "/dev/sda"})
    assert [paths.path(f.device) for f in p.target.filesystems] == [f"/dev/sda{n}" for n in (1, 2, 3, 5, 6)]


def test_four_partitions_stay_primary() -> None:
    disk = Disk("disk-sda", "/dev/sda", 4096 * MiB)
    parts = tuple(Partition(f"part-sda{n}", "disk-sda", n, n * 100 * MiB, 100 * MiB) for n in range(1, 5))
    fss = tuple(Filesystem(f"fs-{n}", p.id, FsType.EXT4, f"/m{n}", p.size, MiB) for n, p in enumerate(parts))
    p = make_plan(Layout((disk,), parts, filesystems=fss), [Target("/img/m.img", 0)])
    g = Recorder()
    build.partition_disks(cast(Guest, g), build.Devices(p.target, {"disk-t0": "/dev/sda"}))
    assert [args[1] for args in g.named("part_add")] == ["p", "p", "p", "p"]
