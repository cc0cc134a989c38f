"""copy by blocks: when a copy may go by blocks (host_refusal, plan_refusal), and the steps that make the copied disk
the alternate, against a fake appliance that records what it is asked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgclone.capture.common import CaptureOptions
from imgclone.capture.excludes import ExcludeRules
from imgclone.copy import blocks as copy_blocks
from imgclone.copy import blocks_rules
from imgclone.errors import CommandError
from imgclone.host.targets import TargetDisk
from imgclone.model.layout import FsType, Layout, LogicalVolume, Partition
from imgclone.model.manifest import Manifest, Source
from imgclone.phases.restore import RestoreOptions
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Plan, PlanOptions, Resize, Target
from imgclone.storage.build import Devices
from tests.fakes import FakeGuest

DATA = Path(__file__).parent / "data" / "plan"
MiB, GiB = 1 << 20, 1 << 30


def load(name: str) -> Layout:
    return Layout.from_json((DATA / f"{name}.json").read_text())


def plan(name: str, size: int, **opts: Any) -> Plan:
    return make_plan(load(name), [Target("/img/t.qcow2", size)], PlanOptions(**opts))


NEW = TargetDisk("/img/t.qcow2", "image", "qcow2", 0, False)
IMAGE = CaptureOptions(output="-", source="/img/src.qcow2")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"cap": CaptureOptions(output="-")}, "the running system"),
        ({"keep": True}, "--archive"),
        ({"cap": dataclasses.replace(IMAGE, exclude_list="/x.list")}, "-e excludes"),
        ({"plan": PlanOptions(convert={"ext4": "xfs"})}, "conversion"),
        ({"plan": PlanOptions(edited=Layout())}, "-i"),
        ({"plan": PlanOptions(resize=Resize.FIT)}, "--resize fit"),
        ({"disks": [NEW, dataclasses.replace(NEW, path="/img/u.qcow2")]}, "more than one target"),
        ({"disks": [dataclasses.replace(NEW, exists=True, size=GiB)]}, "the target exists"),
        ({"disks": [TargetDisk("/dev/loop3", "device", "raw", GiB, True)]}, "the target exists"),
    ],
)
def test_host_refusal_names_what_needs_files(change: dict[str, Any], why: str) -> None:
    opts = RestoreOptions(archive="<stream>", targets=("/img/t.qcow2",), plan=change.get("plan", PlanOptions()))
    got = blocks_rules.host_refusal(
        opts, change.get("cap", IMAGE), change.get("disks", [NEW]), change.get("keep", False)
    )
    assert got is not None and why in got


def test_host_refusal_lets_a_plain_image_copy_go_by_blocks() -> None:
    opts = RestoreOptions(archive="<stream>", targets=("/img/t.qcow2",), plan=PlanOptions(resize=Resize.GROW))
    assert blocks_rules.host_refusal(opts, IMAGE, [NEW], False) is None


@pytest.mark.parametrize(
    ("name", "size", "opts"),
    [("bios-lvm", 20 * GiB, {}), ("bios-lvm", 8 * GiB, {}), ("bios-lvm", 20 * GiB, {"resize": Resize.EXACT})],
)
def test_plans_that_keep_every_block_where_it_is_go_by_blocks(name: str, size: int, opts: dict[str, Any]) -> None:
    assert blocks_rules.plan_refusal(plan(name, size, **opts)) is None


def test_plan_refusal_names_what_blocks_cannot_build() -> None:
    assert blocks_rules.plan_refusal(plan("gpt-esp-lvm", 40 * GiB)) is None  # the ESP keeps its size
    btrfs = plan("gpt-esp-lvm", 40 * GiB, convert={"ext4": "btrfs"})
    assert blocks_rules.plan_refusal(btrfs) == "the plan converts /"
    home = plan("bios-lvm", 20 * GiB)

    def as_btrfs(layout: Layout) -> Layout:
        fss = tuple(
            dataclasses.replace(f, type=FsType.BTRFS) if f.mountpoint == "/var" else f for f in layout.filesystems
        )
        return dataclasses.replace(layout, filesystems=fss)

    src, tgt = as_btrfs(home.source), as_btrfs(home.target)
    assert (
        blocks_rules.plan_refusal(Plan(src, tgt, (), (), home.target_sizes))
        == "/var (btrfs) would have to grow in place"
    )
    assert "target is smaller" in str(
        blocks_rules.plan_refusal(plan("bios-lvm", 8 * GiB - 64 * MiB, skip_space_check=True))
    )
    converted = plan("bios-lvm", 20 * GiB, convert={"xfs": "ext4"})
    assert blocks_rules.plan_refusal(converted) == "the plan converts /var"
    fit = plan("bios-lvm", 20 * GiB, resize=Resize.FIT)
    assert blocks_rules.plan_refusal(fit) == "the plan moves or retypes partition 2"  # /boot shrank before it


def test_a_partition_or_lv_the_capture_leaves_out_goes_by_files() -> None:
    """A copy of blocks would carry along what the layout does not describe; a capture would not."""
    p = plan("bios-lvm", 20 * GiB)
    src = dataclasses.replace(p.source, lvs=(*p.source.lvs, LogicalVolume("lv-rootvg-junk", "junk", "vg-rootvg", GiB)))
    assert blocks_rules.plan_refusal(dataclasses.replace(p, source=src)) == "LV junk holds nothing the copy captures"
    spare = Partition("part-sda3", "disk-sda", 3, 9 * GiB, GiB)
    src = dataclasses.replace(p.source, partitions=(*p.source.partitions, spare))
    tgt = dataclasses.replace(p.target, partitions=(*p.target.partitions, dataclasses.replace(spare, id="part-t0-3")))
    assert (
        blocks_rules.plan_refusal(Plan(src, tgt, (), (), p.target_sizes))
        == "partition 3 holds nothing the copy captures"
    )


def test_a_moved_partition_goes_by_files() -> None:
    p = plan("bios-lvm", 20 * GiB)
    moved = tuple(dataclasses.replace(x, start=x.start + MiB) if x.number == 2 else x for x in p.target.partitions)
    got = blocks_rules.plan_refusal(dataclasses.replace(p, target=dataclasses.replace(p.target, partitions=moved)))
    assert got == "the plan moves or retypes partition 2"


def test_a_pv_partition_trimmed_to_whole_extents_keeps_its_source_size() -> None:
    """EXACT rounds a PV's partition down to whole extents (7678 → 7677 MiB here); blocks leave it as it is, and the
    plan they record and print says so."""
    p = plan("bios-lvm", 8 * GiB)
    assert [x.size // MiB for x in p.target.partitions] == [512, 7677]
    got = blocks_rules.as_copied(p)
    assert [x.size // MiB for x in got.target.partitions] == [512, 7678]
    assert {r.object: r.target_size // MiB for r in got.rows}["part-t0-2"] == 7678
    assert got.target.lvs == p.target.lvs and got.target.filesystems == p.target.filesystems
    grown = plan("bios-lvm", 20 * GiB)
    assert blocks_rules.as_copied(grown) is grown


def test_a_failed_copy_of_the_blocks_leaves_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.qcow2"

    def copy(source: str, fmt: str, disk: TargetDisk, size: int, progress: bool | None) -> TargetDisk:
        Path(disk.path).write_bytes(b"half a copy")
        raise CommandError(["qemu-img", "convert"], 1, "No space left on device")

    monkeypatch.setattr(copy_blocks, "image_info", lambda path: ("qcow2", GiB))
    monkeypatch.setattr(copy_blocks, "copy_image", copy)
    opts = RestoreOptions(archive="<stream>", targets=(str(target),))
    with pytest.raises(CommandError, match="No space left"):
        copy_blocks.phase1(opts, IMAGE, dataclasses.replace(NEW, path=str(target)), None)  # type: ignore[arg-type]
    assert not target.exists()


def test_a_size_below_the_source_disk_goes_by_files_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy_blocks, "image_info", lambda path: ("qcow2", 3 * GiB))
    monkeypatch.setattr(copy_blocks, "copy_image", lambda *a: pytest.fail("nothing is copied"))
    opts = RestoreOptions(archive="<stream>", targets=("/img/t.qcow2",), plan=PlanOptions(size=2 * GiB))
    with pytest.raises(blocks_rules.CopyByFiles, match="--size is smaller than the source disk"):
        copy_blocks.phase1(opts, IMAGE, NEW, None)  # type: ignore[arg-type]


def test_qemu_img_progress_records_become_numbers() -> None:
    chunks = iter([b"    (0.00/100%)\r    (1.0", b"0/100%)\r   (50.25/100%)\r", b"    (100.00/100%)\r", b""])
    assert list(copy_blocks._percentages(lambda n: next(chunks))) == [0.0, 1.0, 50.25, 100.0]


def listing(names: bytes) -> Callable[[str, str], None]:
    """find0's reply: `names` for every filesystem."""

    def find0(directory: str, files: str) -> None:
        Path(files).write_bytes(names)

    return find0


def context(p: Plan, keep_uuids: bool = False) -> tuple[copy_blocks.BlockCopy, FakeGuest]:
    # vfs_uuid: a new value per device, as set_uuid_random would leave it; lstatns: fixed times
    times = {"st_atime_sec": 1, "st_atime_nsec": 2, "st_mtime_sec": 3, "st_mtime_nsec": 4}
    g = FakeGuest({"vfs_uuid": lambda dev: f"new-{dev}", "find0": listing(b""), "lstatns": times})
    opts = RestoreOptions(archive="<stream>", targets=("/img/t.qcow2",), keep_uuids=keep_uuids)
    disk = TargetDisk("/img/t.qcow2", "image", "qcow2", p.target.disks[0].size, True)
    manifest = Manifest(p.source, Source("test"), None)
    ctx = copy_blocks.BlockCopy(targets=opts.targets, opts=opts, manifest=manifest, disks=[disk], plan=p, guest=g,
                                rules=ExcludeRules(), workdir=Path("/nonexistent"))  # fmt: skip
    ctx.devs = Devices(p.target, {p.target.disks[0].id: "/dev/sda"})
    return ctx, g


def test_partitions_grow_to_their_planned_end_and_nothing_else_moves() -> None:
    p = plan("bios-lvm", 20 * GiB)
    ctx, g = context(p)
    copy_blocks.grow_partitions(ctx)
    pv = next(x for x in p.target.partitions if x.number == 2)
    assert g.recorded() == [("part_resize", "/dev/sda", 2, (pv.start + pv.size) // 512 - 1)]
    gpt, g2 = context(plan("gpt-esp-lvm", 40 * GiB))
    copy_blocks.grow_partitions(gpt)
    assert g2.recorded()[0] == ("part_expand_gpt", "/dev/sda") and [c[0] for c in g2.recorded()[1:]] == ["part_resize"]


def test_lvm_gets_new_uuids_and_the_alternate_names_while_inactive_then_the_planned_sizes() -> None:
    p = plan("bios-lvm", 20 * GiB)
    ctx, g = context(p)
    copy_blocks.renew_lvm(ctx)
    extents = {lv.name: lv.size // (4 * MiB) for lv in p.target.lvs}
    assert g.recorded() == [
        ("vg_activate", False, ["rootvg"]),
        ("pvresize", "/dev/sda2"),
        ("pvchange_uuid", "/dev/sda2"),
        ("vgchange_uuid", "rootvg"),
        ("vgrename", "rootvg", "altinst_rootvg"),
        ("lvrename", "/dev/altinst_rootvg/root", "/dev/altinst_rootvg/alt_root"),
        ("appliance_command", ["lvm", "lvextend", "--yes", "-l", str(extents["alt_root"]), "altinst_rootvg/alt_root"]),
        ("lvrename", "/dev/altinst_rootvg/var", "/dev/altinst_rootvg/alt_var"),
        ("appliance_command", ["lvm", "lvextend", "--yes", "-l", str(extents["alt_var"]), "altinst_rootvg/alt_var"]),
        ("lvrename", "/dev/altinst_rootvg/swap", "/dev/altinst_rootvg/alt_swap"),  # swap keeps its size
        ("vg_activate", True, ["altinst_rootvg"]),
    ]


def test_filesystems_are_checked_renewed_and_grown_and_swap_made_again() -> None:
    ctx, g = context(plan("bios-lvm", 20 * GiB))
    copy_blocks.renew_filesystems(ctx)
    root, var, boot, swap = "/dev/altinst_rootvg/alt_root", "/dev/altinst_rootvg/alt_var", "/dev/sda1", None
    names = [c for c in g.recorded() if c[0] != "vfs_uuid"]
    assert names[:3] == [("e2fsck", root, ("correct", True)), ("set_uuid_random", root), ("resize2fs", root)]
    assert names[3:6] == [("e2fsck", boot, ("correct", True)), ("set_uuid_random", boot)] + [names[5]]
    assert names[5][0] == "mount" and names[5][1] == var  # /boot did not grow: no resize2fs
    assert names[6:9] == [("xfs_growfs", "/", ("datasec", True)), ("umount_all",), ("set_uuid_random", var)]
    swap = names[9]
    assert swap[0] == "mkswap" and swap[1] == "/dev/altinst_rootvg/alt_swap" and swap[2][0] == "uuid"
    assert swap[2][1] != "u-swap"
    assert ctx.uuids == {"fs-root": f"new-{root}", "fs-boot": f"new-{boot}", "fs-var": f"new-{var}",
                         "swap-rootvg-swap": "new-/dev/altinst_rootvg/alt_swap"}  # fmt: skip


def test_keep_uuids_keeps_them() -> None:
    ctx, g = context(plan("bios-lvm", 20 * GiB), keep_uuids=True)
    copy_blocks.renew_filesystems(ctx)
    assert not [c for c in g.recorded() if c[0] == "set_uuid_random"]
    assert next(c for c in g.recorded() if c[0] == "mkswap")[2] == ("uuid", "u-swap")


def test_an_esp_gets_a_new_volume_id_and_keeps_its_size() -> None:
    ctx, g = context(plan("gpt-esp-lvm", 40 * GiB))
    copy_blocks.renew_filesystems(ctx)
    (fat,) = [c for c in g.recorded() if c[0] == "appliance_command"]
    assert fat[1][:3] == ["fatlabel", "-i", "/dev/sda2"] and len(fat[1][3]) == 8 and int(fat[1][3], 16) % 2 == 1
    assert ("resize2fs", "/dev/sda3") not in g.recorded(), "/boot, a partition before the PV, keeps its size"


def test_what_the_rules_exclude_is_removed_and_its_directory_keeps_its_times(tmp_path: Path) -> None:
    """^./var/tmp/ matches the files under /var's tmp, not the directory itself (as in a capture); /var is mounted
    alone, so the path removed is /tmp/..., and its directory's times are the source's again."""
    ctx, g = context(plan("bios-lvm", 20 * GiB))
    g.replies["find0"] = listing(b"tmp\0tmp/scratch\0tmp/sub\0tmp/sub/deep\0log\0")
    rules = ExcludeRules((b"^./var/tmp/",), ("/img/src.qcow2:/etc/exclude.rootvg",))
    ctx.rules, ctx.workdir = rules, tmp_path
    copy_blocks.exclude_files(ctx)
    done = [c for c in g.recorded() if c[0] in ("rm_rf", "utimens", "fstrim")]
    assert done == [("rm_rf", "/tmp/scratch"), ("rm_rf", "/tmp/sub"), ("utimens", "/tmp", 1, 2, 3, 4), ("fstrim", "/")]
    zeroed = [c[1] for c in g.recorded() if c[0] == "appliance_command"]
    assert zeroed == [["find", f"/sysroot/tmp/{n}", "-type", "f", "-links", "1", "-exec", "shred", "-n", "0", "-z",
                       "{}", "+"] for n in ("scratch", "sub")]  # fmt: skip
    assert g.recorded().index(("rm_rf", "/tmp/scratch")) > g.recorded().index(("appliance_command", zeroed[0]))
    mounted = [c[1] for c in g.recorded() if c[0] == "mount"]
    assert mounted == ["/dev/altinst_rootvg/alt_root", "/dev/sda1", "/dev/altinst_rootvg/alt_var"]


def test_no_rules_touch_nothing(tmp_path: Path) -> None:
    ctx, g = context(plan("bios-lvm", 20 * GiB))
    ctx.rules, ctx.workdir = ExcludeRules(), tmp_path
    copy_blocks.exclude_files(ctx)
    assert g.recorded() == []


def test_partition_table_ids_are_renewed() -> None:
    ctx, g = context(plan("bios-lvm", 20 * GiB))
    copy_blocks.renew_tables(ctx)
    ((name, argv),) = g.recorded()
    assert name == "appliance_command" and argv[:3] == ["sfdisk", "--disk-id", "/dev/sda"]
    assert int(argv[3], 16) != 0
    gpt, g2 = context(plan("gpt-esp-lvm", 40 * GiB))
    copy_blocks.renew_tables(gpt)
    assert g2.recorded() == [("appliance_command", ["sgdisk", "--randomize-guids", "/dev/sda"])]
