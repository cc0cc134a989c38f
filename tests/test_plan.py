"""The restore planner on example layouts: placement, size policies, -i edits, conversions, checks, the table."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgclone.errors import LayoutError, UsageError
from imgclone.fs import space
from imgclone.model.layout import Disk, Filesystem, FsType, Layout, PartFlag, Partition, TableType
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Plan, PlanOptions, Resize, Target
from tests.layouts import stacks

DATA = Path(__file__).parent / "data" / "plan"
MiB, GiB = 1 << 20, 1 << 30


def load(name: str) -> Layout:
    return Layout.from_json((DATA / f"{name}.json").read_text())


def plan(source: Layout, *targets: Target, **opts: object) -> Plan:
    """make_plan, plus the invariants every target layout must keep."""
    p = make_plan(source, list(targets), PlanOptions(**opts))  # type: ignore[arg-type]
    t = p.target
    t.validate()
    assert p.target_sizes == tuple(d.size for d in t.disks)
    for part in t.partitions:
        assert part.start % MiB == 0 and part.size % MiB == 0 and part.start >= MiB, part
        assert part.uuid == ""
    for d in t.disks:
        if d.table == TableType.GPT:
            assert max(p.start + p.size for p in t.partitions if p.disk == d.id) <= d.size - MiB
    sizes = {o.id: o.size for o in t.partitions} | {lv.id: lv.size for lv in t.lvs}
    ext = {vg.id: vg.extent_size for vg in t.vgs}
    assert all(lv.size % ext[lv.vg] == 0 and lv.uuid == "" for lv in t.lvs)
    assert all(f.size == sizes[f.device] and f.uuid == "" for f in t.filesystems)
    assert all(s.size == sizes[s.device] and s.uuid == "" for s in t.swaps)
    assert {f.id for f in t.filesystems} == {f.id for f in p.source.filesystems}
    return p


def by_id(layout: Layout) -> dict[str, Any]:
    return {o.id: o for o in layout.objects()}


def geometry(p: Plan) -> list[tuple[str, int, int, int]]:
    """(id, number, start MiB, size MiB) of every target partition."""
    return [(x.id, x.number, x.start // MiB, x.size // MiB) for x in p.target.partitions]


def lv_mib(p: Plan) -> dict[str, int]:
    return {lv.name: lv.size // MiB for lv in p.target.lvs}


# -- (a) BIOS + LVM onto one bigger disk: GROW --------------------------------------------------------------------
def test_grow_onto_bigger_disk_fills_pv_and_grows_lvs_in_proportion() -> None:
    p = plan(load("bios-lvm"), Target("/img/t0.img", 20 * GiB))
    assert p.resize is Resize.GROW
    assert geometry(p) == [("part-t0-1", 1, 1, 512), ("part-t0-2", 2, 513, 19967)]
    # 19967 MiB PV: (19967 - 1) // 4 = 4991 extents; 4991 - 1792 = 3199 free go to root and var 2:1, rounded down
    assert lv_mib(p) == {"alt_root": (1024 + 2132) * 4, "alt_var": (512 + 1066) * 4, "alt_swap": 1024}
    t = p.target
    assert t.disks == (Disk("disk-t0", "/img/t0.img", 20 * GiB, TableType.MSDOS, 512, ""),)
    assert [x.flags for x in t.partitions] == [(PartFlag.BOOT,), (PartFlag.LVM,)]
    (vg,) = t.vgs
    assert (vg.id, vg.name, vg.pvs, vg.extent_size, vg.uuid) == (
        "vg-rootvg",
        "altinst_rootvg",
        ("part-t0-2",),
        4 * MiB,
        "",
    )
    assert [(lv.id, lv.vg) for lv in t.lvs] == [
        (i, "vg-rootvg") for i in ("lv-rootvg-root", "lv-rootvg-var", "lv-rootvg-swap")
    ]
    fs = by_id(t)
    assert fs["fs-root"] == replace(by_id(p.source)["fs-root"], size=12624 * MiB, uuid="")
    assert fs["fs-boot"].device == "part-t0-1" and fs["fs-boot"].size == 512 * MiB
    assert fs["fs-var"].features == {"xfs": {"crc": 1}}
    assert fs["swap-rootvg-swap"].size == 1 * GiB
    assert p.warnings == ()


def test_same_size_disk_is_exact_and_reproduces_the_source() -> None:
    p = plan(load("bios-lvm"), Target("/dev/sdb", 8 * GiB))
    assert p.resize is Resize.EXACT
    # the PV gets back the source's 1919 extents, LVs keep their size, the VG keeps its 127 free extents
    assert geometry(p) == [("part-t0-1", 1, 1, 512), ("part-t0-2", 2, 513, 7677)]
    assert lv_mib(p) == {"alt_root": 4096, "alt_var": 2048, "alt_swap": 1024}


def test_explicit_exact_on_a_bigger_disk_leaves_the_rest_unpartitioned() -> None:
    p = plan(load("bios-lvm"), Target("/dev/sdb", 20 * GiB), resize=Resize.EXACT)
    assert geometry(p)[-1] == ("part-t0-2", 2, 513, 7677)
    assert lv_mib(p) == {"alt_root": 4096, "alt_var": 2048, "alt_swap": 1024}


# -- (b) a smaller disk with FIT and ext4 → xfs -------------------------------------------------------------------
def test_fit_onto_smaller_disk_with_xfs_conversion() -> None:
    src = load("bios-lvm")
    p = plan(src, Target("/img/small.img", 4 * GiB), resize=Resize.FIT, convert={"ext4": "xfs"})
    assert p.resize is Resize.FIT
    root_mib = -(-space.required_bytes("xfs", 1500000000) // (4 * MiB)) * 4
    var_mib = -(-space.required_bytes("xfs", 300000000) // (4 * MiB)) * 4
    assert (root_mib, var_mib) == (1684, 404)
    assert lv_mib(p) == {"alt_root": root_mib, "alt_var": var_mib, "alt_swap": 1024}
    # /boot: 90 MB of data, but xfs is at least 300 MiB; the PV holds the LVs exactly (1 MiB for LVM's pe_start)
    assert geometry(p) == [("part-t0-1", 1, 1, 300), ("part-t0-2", 2, 301, 1 + root_mib + var_mib + 1024)]
    fs = {f.id: f for f in p.target.filesystems}
    assert (fs["fs-root"].type, fs["fs-root"].features, fs["fs-root"].label) == (FsType.XFS, {}, "root")
    assert fs["fs-root"].options == "defaults"  # errors=remount-ro is ext's
    assert (fs["fs-boot"].type, fs["fs-boot"].size) == (FsType.XFS, 300 * MiB)
    assert fs["fs-var"].features == {"xfs": {"crc": 1}}  # unchanged type keeps its features
    free = 4096 - 1 - 300 - (1 + root_mib + var_mib + 1024)
    assert f"--resize fit leaves {free} MiB free: {free} MiB unpartitioned, 0 MiB in volume groups" in p.warnings
    # planned from a streamed archive's first manifest (copy): nothing known of the content yet, and it says so
    assert any(w.startswith("the archive is read as it is captured") and "/ (fs-root) ext4 → xfs" in w
               for w in p.warnings), p.warnings  # fmt: skip
    known = plan(src, Target("/img/small.img", 4 * GiB), resize=Resize.FIT, convert={"ext4": "xfs"},
                 content={"fs-root": None, "fs-boot": None, "fs-var": None})  # fmt: skip
    assert not any(w.startswith("the archive is read as it is captured") for w in known.warnings), known.warnings
    assert any("errors=remount-ro do not apply to xfs" in w for w in p.warnings)
    assert any("initramfs must carry the xfs driver" in w for w in p.warnings)


def test_fit_keeps_esp_bios_grub_and_swap_and_shrinks_boot() -> None:
    p = plan(load("gpt-esp-lvm"), Target("/img/g.img", 0), resize=Resize.FIT)
    sizes = [x.size // MiB for x in p.target.partitions]
    assert sizes[:2] == [1, 512]
    assert sizes[2] == -(-space.required_bytes("ext4", 150 * MiB) // MiB)
    assert lv_mib(p)["alt_swap"] == 2048


def test_fit_keeps_sizes_edited_in_the_layout_file() -> None:
    src = load("bios-lvm")
    edited = replace(src, lvs=tuple(replace(lv, size=3 * GiB) if lv.name == "root" else lv for lv in src.lvs))
    p = plan(src, Target("/img/t.img", 0), resize=Resize.FIT, edited=edited)
    assert lv_mib(p)["alt_root"] == 3072
    assert lv_mib(p)["alt_var"] == -(-space.required_bytes("xfs", 300000000) // (4 * MiB)) * 4


# -- (c) two targets: the root VG spans both ----------------------------------------------------------------------
def test_two_targets_vg_spans_both_disks() -> None:
    p = plan(load("bios-lvm"), Target("/dev/sdb", 4 * GiB), Target("/dev/sdc", 6 * GiB))
    assert p.resize is Resize.GROW
    # target 0: /boot, then the PV gets what is left (3583 MiB, 895 extents); the rest of the VG spills onto
    # target 1, whose single PV takes the whole disk (6143 MiB, 1535 extents): 2430 extents, 638 free to grow
    assert geometry(p) == [("part-t0-1", 1, 1, 512), ("part-t0-2", 2, 513, 3583), ("part-t1-1", 1, 1, 6143)]
    assert p.target.vgs[0].pvs == ("part-t0-2", "part-t1-1")
    assert lv_mib(p) == {"alt_root": (1024 + 425) * 4, "alt_var": (512 + 212) * 4, "alt_swap": 1024}
    assert p.target_sizes == (4 * GiB, 6 * GiB)


def test_second_target_joins_the_root_vg_even_when_the_first_holds_everything() -> None:
    p = plan(load("bios-lvm"), Target("/dev/sdb", 8 * GiB), Target("/dev/sdc", 2 * GiB), resize=Resize.EXACT)
    assert geometry(p) == [("part-t0-1", 1, 1, 512), ("part-t0-2", 2, 513, 7677), ("part-t1-1", 1, 1, 2047)]
    assert lv_mib(p) == {"alt_root": 4096, "alt_var": 2048, "alt_swap": 1024}


def test_extra_target_without_lvm_would_stay_empty() -> None:
    with pytest.raises(UsageError, match="target /dev/sdc would stay empty"):
        make_plan(load("plain-msdos"), [Target("/dev/sdb", 20 * GiB), Target("/dev/sdc", 20 * GiB)], PlanOptions())


# -- (d) too small ------------------------------------------------------------------------------------------------
def test_exact_onto_too_small_disk_names_the_shortfall() -> None:
    msg = (
        "target /img/t0.img (disk-t0) is too small: the plan needs 7682 MiB, it has 6144 MiB (short by 1538 MiB); "
        "use a larger target, more targets, or --resize fit (shrinks filesystems to their data)"
    )
    for resize in (Resize.EXACT, None):
        with pytest.raises(LayoutError) as e:
            make_plan(load("bios-lvm"), [Target("/img/t0.img", 6 * GiB)], PlanOptions(resize=resize))
        assert str(e.value) == msg


def test_fit_too_small_says_so_without_suggesting_fit() -> None:
    with pytest.raises(LayoutError, match=r"short by \d+ MiB\); use a larger target or more targets$"):
        make_plan(load("bios-lvm"), [Target("/img/t0.img", 2 * GiB)], PlanOptions(resize=Resize.FIT))


def test_space_check_names_filesystem_and_shortfall() -> None:
    src = load("bios-lvm")
    used = 4_200_000_000
    full = replace(src, filesystems=tuple(replace(f, used=used) if f.id == "fs-root" else f for f in src.filesystems))
    needs = -(-(used + space.overhead_bytes("ext4", 4 * GiB)) // MiB)
    with pytest.raises(LayoutError) as e:
        make_plan(full, [Target("/img/t.img", 8 * GiB)], PlanOptions())
    assert str(e.value) == (
        f"filesystem / (fs-root): needs {needs} MiB for {-(-used // MiB)} MiB of data as ext4, the target gives "
        f"4096 MiB (short by {needs - 4096} MiB); use a larger target, --resize fit, or -S to skip this check"
    )
    p = plan(full, Target("/img/t.img", 8 * GiB), skip_space_check=True)
    assert p.warnings == ("space check skipped (-S): the targets were not checked against the data they must hold",)
    p = plan(full, Target("/img/t.img", 8 * GiB), skip_space_check=True, convert={"xfs": "ext4"})
    assert any(w.startswith("-S with conversions") and "/var (fs-var) xfs → ext4" in w and "extra metadata" in w
               for w in p.warnings)  # fmt: skip
    p = plan(full, Target("/img/t.img", 8 * GiB), resize=Resize.FIT)
    assert space.fits("ext4", p.target.filesystem_at("/").size, used)  # type: ignore[union-attr]


def test_inode_check_and_fit_with_file_counts() -> None:
    src = load("bios-lvm")
    with pytest.raises(LayoutError, match=r"fs-root\): 300000 files need as many inodes, ext4 on 4096 MiB has 262144"):
        make_plan(src, [Target("/img/t.img", 8 * GiB)], PlanOptions(files={"fs-root": 300000}))
    p = plan(src, Target("/img/t.img", 0), resize=Resize.FIT, files={"fs-root": 300000})
    assert space.ext_inodes(p.target.filesystem_at("/").size) >= 330000  # type: ignore[union-attr]


# -- (e) layout files (-i) ----------------------------------------------------------------------------------------
def test_edited_layout_renames_and_resizes() -> None:
    src, edited = load("bios-lvm"), load("bios-lvm-edited")
    p = plan(src, Target("/img/t.img", 10 * GiB), edited=edited, resize=Resize.EXACT)
    assert lv_mib(p) == {"alt_root": 5120, "alt_variable": 2048, "alt_swap": 1024}
    assert p.source.filesystem_at("/").used == 1500000000  # type: ignore[union-attr]  # the archive's, not the file's
    assert "variable → alt_variable" in p.table()
    grown = plan(src, Target("/img/t.img", 20 * GiB), edited=edited)
    assert grown.resize is Resize.GROW and lv_mib(grown)["alt_root"] > 5120 and lv_mib(grown)["alt_swap"] == 1024
    # 19967 MiB PV = 4991 extents, 4991 - 2048 = 2943 free, shared 1280:512
    assert lv_mib(grown)["alt_root"] == (1280 + 2943 * 1280 // 1792) * 4


def test_edited_layout_errors_name_objects() -> None:
    src = load("bios-lvm")
    dangling = replace(src, lvs=tuple(replace(lv, vg="vg-nope") if lv.name == "var" else lv for lv in src.lvs))
    with pytest.raises(LayoutError, match="^layout file \\(-i\\): LogicalVolume lv-rootvg-var: volume group vg-nope "):
        make_plan(src, [Target("/t", 8 * GiB)], PlanOptions(edited=dangling))
    dropped = replace(src, filesystems=tuple(f for f in src.filesystems if f.id != "fs-var"),
                      lvs=tuple(lv for lv in src.lvs if lv.name != "var"))  # fmt: skip
    with pytest.raises(LayoutError, match="Filesystem fs-var of the archive is missing"):
        make_plan(src, [Target("/t", 8 * GiB)], PlanOptions(edited=dropped))
    retyped = replace(src, filesystems=tuple(replace(f, type=FsType.BTRFS) if f.id == "fs-var" else f
                                             for f in src.filesystems))  # fmt: skip
    with pytest.raises(LayoutError, match="Filesystem fs-var: type xfs in the archive, btrfs here") as e:
        make_plan(src, [Target("/t", 8 * GiB)], PlanOptions(edited=retyped))
    assert "--convert" in str(e.value)
    with pytest.raises(LayoutError, match="not valid JSON"):
        Layout.from_json('{"version": 1, "disks": [', "layout.json")


def test_edited_layout_places_a_vg_on_its_disk() -> None:
    src = load("two-disks")
    two = [Target("/dev/sdc", 8 * GiB), Target("/dev/sdd", 16 * GiB)]
    p = plan(src, *two, edited=src)  # -i: datavg's PV is on disk 1, so target 1 gets it
    assert {vg.name: vg.pvs for vg in p.target.vgs} == {
        "altinst_rootvg": ("part-t0-2",),
        "altinst_datavg": ("part-t1-1",),
    }
    assert geometry(p)[-1] == ("part-t1-1", 1, 1, 16383)
    with pytest.raises(LayoutError, match="-i puts a VG on the target of its disk"):
        make_plan(src, two, PlanOptions())  # without -i: every VG on target 0, which is too small for both
    q = plan(src, Target("/dev/sdc", 24 * GiB), two[1])  # target 1 joins the root VG
    assert {vg.name: vg.pvs for vg in q.target.vgs} == {
        "altinst_rootvg": ("part-t0-2", "part-t1-1"),
        "altinst_datavg": ("part-t0-3",),
    }


# -- other sources ------------------------------------------------------------------------------------------------
def test_gpt_source_copies_flags_names_and_types_and_keeps_the_backup_mib() -> None:
    src = load("gpt-esp-lvm")
    p = plan(src, Target("/dev/sdb", 30 * GiB, 4096))
    t = p.target
    assert t.disks[0].table == TableType.GPT and t.disks[0].sector_size == 4096
    s = [(x.flags, x.name, x.type_uuid) for x in src.partitions]
    assert [(x.flags, x.name, x.type_uuid) for x in t.partitions] == s
    assert geometry(p) == [
        ("part-t0-1", 1, 1, 1),
        ("part-t0-2", 2, 2, 512),
        ("part-t0-3", 3, 514, 1024),
        ("part-t0-4", 4, 1538, 30 * 1024 - 1538 - 1),
    ]
    assert t.filesystem_at("/boot/efi").device == "part-t0-2"  # type: ignore[union-attr]
    assert p.resize is Resize.GROW


def test_gpt_new_pv_gets_the_lvm_type_and_extra_disk_the_same_table() -> None:
    p = plan(load("gpt-esp-lvm"), Target("/dev/sdb", 20 * GiB), Target("/dev/sdc", 4 * GiB))
    last = p.target.partitions[-1]
    assert (last.id, last.disk, last.type_uuid, last.flags) == (
        "part-t1-1", "disk-t1", "E6D6D379-F507-44C2-A23C-238F2A3DF928", (PartFlag.LVM,),
    )  # fmt: skip
    assert last.start + last.size == 4 * GiB - MiB
    assert p.target.disks[1].table == TableType.GPT


def test_whole_disk_source_gets_msdos_partitions() -> None:
    p = plan(load("wholedisk"), Target("/img/w.img", 0))
    t = p.target
    assert t.disks[0].table == TableType.MSDOS
    # disk order: vda's filesystem, vdc's swap, then datavg's PV (768 extents + 1 MiB)
    assert geometry(p) == [("part-t0-1", 1, 1, 10240), ("part-t0-2", 2, 10241, 1024), ("part-t0-3", 3, 11265, 3073)]
    assert [x.flags for x in t.partitions] == [(), (PartFlag.SWAP,), (PartFlag.LVM,)]
    assert p.target_sizes == ((1 + 10240 + 1024 + 3073) * MiB,)
    assert (t.filesystem_at("/").device, t.swaps[0].device) == ("part-t0-1", "part-t0-2")  # type: ignore[union-attr]


def test_without_lvm_grow_gives_the_last_filesystem_partition_the_rest() -> None:
    p = plan(load("plain-msdos"), Target("/dev/sdb", 20 * GiB))
    assert p.resize is Resize.GROW
    assert geometry(p) == [("part-t0-1", 1, 1, 20479 - 1023), ("part-t0-2", 2, 20479 - 1023 + 1, 1023)]


def test_more_than_four_msdos_partitions_become_logical() -> None:
    disk = Disk("disk-sda", "/dev/sda", 4 * GiB)
    parts = tuple(Partition(f"part-sda{i}", "disk-sda", i, i * 100 * MiB, 100 * MiB) for i in range(1, 6))
    fss = tuple(Filesystem(f"fs-{c}", f"part-sda{i}", FsType.EXT4, f"/{c}", 100 * MiB, MiB)
                for i, c in zip(range(1, 6), "abcde", strict=True))  # fmt: skip
    p = plan(Layout((disk,), parts, filesystems=fss), Target("/img/m.img", 0))
    # 1-3 primary, then logical 5 and 6, each 1 MiB after the previous end (its EBR)
    assert [(x.number, x.start // MiB) for x in p.target.partitions] == [(1, 1), (2, 101), (3, 201), (5, 302), (6, 403)]
    assert p.target_sizes == (503 * MiB,)
    # the dry-run table shows the extended partition 4 the executor makes: from 5's EBR (301 MiB) to 6's end (503)
    rows = [(r.object, r.kind, r.target_size // MiB, r.target_type) for r in p.rows if r.kind == "partition"]
    assert [r[0] for r in rows] == ["part-t0-1", "part-t0-2", "part-t0-3", "part-t0-4", "part-t0-5", "part-t0-6"]
    assert rows[3] == ("part-t0-4", "partition", 202, "extended")
    assert re.search(r"^part-t0-4\s+partition\s+new → 202\.0 MiB\s+- → extended\s+- → part-t0-4$", p.table(), re.M)
    four = plan(Layout((disk,), parts[:4], filesystems=fss[:4]), Target("/img/m.img", 0))
    assert "extended" not in four.table(), "4 partitions on msdos are all primary"


# -- images to create ---------------------------------------------------------------------------------------------
def test_image_of_size_zero_gets_the_smallest_fit() -> None:
    p = plan(load("bios-lvm"), Target("/img/new.img", 0))
    assert p.resize is Resize.EXACT and p.target_sizes == ((1 + 512 + 1 + 7168) * MiB,)
    g = plan(load("gpt-esp-lvm"), Target("/img/new.img", 0))
    assert g.target_sizes == ((1 + 1 + 512 + 1024 + 1 + 14336 + 1) * MiB,)  # + GPT's last MiB


def test_size_option_sizes_created_images() -> None:
    p = plan(load("gpt-esp-lvm"), Target("/img/new.img", 0), size=20 * GiB)
    assert p.target_sizes == (20 * GiB,)
    assert p.resize is Resize.EXACT  # the source disk was 20 GiB: nothing to grow
    assert geometry(p)[-1] == ("part-t0-4", 4, 1538, 18941)
    p = plan(load("gpt-esp-lvm"), Target("/img/new.img", 0), size=40 * GiB)
    assert p.resize is Resize.GROW and p.target_sizes == (40 * GiB,)
    q = plan(load("bios-lvm"), Target("/dev/sdb", 20 * GiB), size=40 * GiB)
    assert q.target_sizes == (20 * GiB,) and any("--size applies only" in w for w in q.warnings)


# -- conversions --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("convert", "message"),
    [
        ({"vfat": "ext4"}, "--convert vfat=ext4: refused for /boot/efi (fs-boot-efi): vfat is never converted"),
        ({"ext4": "vfat"}, "--convert ext4=vfat: refused for / (fs-root), /boot (fs-boot), /home (fs-home): vfat is"),
        (
            {"ext4": "ext2"},
            "--convert ext4=ext2: refused for / (fs-root), /boot (fs-boot), /home (fs-home): ext2 "
            "cannot hold what ext4 can",
        ),  # fmt: skip
        ({"ntfs": "ext4"}, "--convert ntfs=ext4: unknown filesystem type"),
    ],
)
def test_refused_conversions(convert: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        make_plan(load("gpt-esp-lvm"), [Target("/t", 30 * GiB)], PlanOptions(convert=convert))
    assert str(e.value).startswith(message)


def test_xfs_needs_300_mib() -> None:
    src = load("bios-lvm")
    small = replace(
        src,
        partitions=tuple(replace(p, size=256 * MiB) if p.id == "part-sda1" else p for p in src.partitions),
        filesystems=tuple(replace(f, size=256 * MiB) if f.id == "fs-boot" else f for f in src.filesystems),
    )
    for resize in (Resize.EXACT, Resize.GROW):
        with pytest.raises(LayoutError) as e:
            make_plan(small, [Target("/t", 20 * GiB)], PlanOptions(resize=resize, convert={"ext4": "xfs"}))
        assert str(e.value) == (
            "filesystem /boot (fs-boot): xfs needs at least 300 MiB, the target gives 256 MiB; "
            "use --resize fit or grow with a larger target, or do not convert"
        )
    p = plan(small, Target("/t", 20 * GiB), resize=Resize.FIT, convert={"ext4": "xfs"})
    assert p.target.filesystem_at("/boot").size == 300 * MiB  # type: ignore[union-attr]


def test_conversion_truncates_labels_drops_options_and_warns_about_boot_on_btrfs() -> None:
    p = plan(load("gpt-esp-lvm"), Target("/t", 30 * GiB), convert={"ext4": "xfs"})
    home = p.target.filesystem_at("/home")
    assert home is not None and (home.label, home.options) == ("home-directo", "defaults,noatime")
    assert "filesystem /home (fs-home): label 'home-directories' is too long for xfs; it becomes 'home-directo'" in (
        p.warnings
    )
    assert "filesystem /home (fs-home): mount option(s) user_xattr do not apply to xfs; dropped" in p.warnings
    b = plan(load("gpt-esp-lvm"), Target("/t", 30 * GiB), convert={"ext4": "btrfs"})
    assert any(w.startswith("filesystem /boot (fs-boot): /boot on btrfs") for w in b.warnings)
    assert b.target.filesystem_at("/home").label == "home-directories"  # type: ignore[union-attr]


def test_t_flag_ext3_to_ext4_keeps_ext_options() -> None:
    src = load("plain-msdos")
    ext3 = replace(src, filesystems=tuple(replace(f, type=FsType.EXT3) for f in src.filesystems))
    p = plan(ext3, Target("/t", 20 * GiB), convert={"ext2": "ext4", "ext3": "ext4"})
    root = p.target.filesystem_at("/")
    assert root is not None and (root.type, root.options, root.features) == (FsType.EXT4, "errors=remount-ro", {})


# -- names --------------------------------------------------------------------------------------------------------
def test_lv_name_limit_lists_every_offender() -> None:
    src = load("bios-lvm")
    renamed = {"root": "verylongname", "var": "otherlongname"}
    long = replace(src, lvs=tuple(replace(lv, name=renamed.get(lv.name, lv.name)) for lv in src.lvs))
    with pytest.raises(LayoutError) as e:
        make_plan(long, [Target("/t", 8 * GiB)], PlanOptions(lv_name_limit=15))
    assert str(e.value) == (
        "logical volume names too long for --lv-name-limit 15 (the alt_ prefix takes 4): rootvg/verylongname "
        "(12 > 11), rootvg/otherlongname (13 > 11); rename them in a layout file: imgclone archive show --layout "
        'ARCHIVE > layout.json, edit the "name" of each, then restore -i /full/path/layout.json'
    )
    assert lv_mib(plan(long, Target("/t", 8 * GiB)))["alt_otherlongname"] == 2048
    with pytest.raises(UsageError, match="--lv-name-limit 4: give 5 to 127"):
        make_plan(src, [Target("/t", 8 * GiB)], PlanOptions(lv_name_limit=4))


# -- arguments ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("targets", "opts", "message"),
    [
        ([], PlanOptions(), "no target disks"),
        ([Target("/t", GiB), Target("/t", GiB)], PlanOptions(), "target /t is given more than once"),
        ([Target("/t", GiB, 1000)], PlanOptions(), "sector size 1000 is not valid"),
        ([Target("/t", 0)], PlanOptions(size=1000), "--size 1000"),
    ],
)
def test_bad_arguments(targets: list[Target], opts: PlanOptions, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        make_plan(load("bios-lvm"), targets, opts)


# -- output -------------------------------------------------------------------------------------------------------
def test_table_shows_sizes_types_and_names() -> None:
    p = plan(load("bios-lvm"), Target("/img/t0.img", 4 * GiB), resize=Resize.FIT, convert={"ext4": "xfs"},
             files={"fs-root": 1200})  # fmt: skip
    table = p.table()
    lines = table.splitlines()
    assert lines[0].split() == ["OBJECT", "KIND", "SIZE", "TYPE", "NAME", "FILES"]
    row = next(line for line in lines if line.startswith("fs-root "))
    assert re.search(r"4\.0 GiB → 1\.6 GiB\s+ext4 → xfs\s+/ \[root\]\s+1200$", row), row
    assert next(line for line in lines if line.startswith("fs-boot ")).endswith("/boot [boot]"), "count not known"
    assert {r.object: r.files for r in p.rows if r.kind == "filesystem"} == {"fs-root": 1200, "fs-boot": 0, "fs-var": 0}
    assert re.search(r"vg-rootvg\s+vg\s+7\.5 GiB → 3\.0 GiB\s+rootvg → altinst_rootvg$", table, re.M)
    assert re.search(r"lv-rootvg-root\s+lv\s+.*root → alt_root$", table, re.M)
    assert re.search(r"disk-t0\s+disk\s+8\.0 GiB → 4\.0 GiB\s+msdos\s+/dev/sda → /img/t0\.img$", table, re.M)
    two = plan(load("bios-lvm"), Target("/a", 4 * GiB), Target("/b", 6 * GiB)).table()
    assert re.search(r"part-t1-1\s+partition\s+new → 6\.0 GiB\s+- → lvm\s+- → part-t1-1$", two, re.M)


def test_to_dict_is_json_and_round_trips_the_target() -> None:
    p = plan(load("gpt-esp-lvm"), Target("/t", 30 * GiB), convert={"ext4": "xfs"})
    d = json.loads(json.dumps(p.to_dict()))
    assert Layout.from_dict(d["target"]) == p.target
    assert Layout.from_dict(d["source"]) == p.source
    assert d["target_sizes"] == [30 * GiB] and d["resize"] == "grow" and d["warnings"] == list(p.warnings)
    assert {r["object"] for r in d["rows"]} >= {"disk-t0", "part-t0-4", "vg-vg0", "lv-vg0-home", "fs-home"}


def test_every_example_plans_under_every_policy() -> None:
    for name in ("bios-lvm", "gpt-esp-lvm", "wholedisk", "plain-msdos", "two-disks"):
        for resize in (None, Resize.EXACT, Resize.GROW, Resize.FIT):
            for size in (0, 64 * GiB):
                plan(load(name), Target("/img/x.img", size), resize=resize)


def test_lvs_are_whole_extents_of_the_source_vg() -> None:
    src = load("bios-lvm")
    src = replace(src, vgs=(replace(src.vgs[0], extent_size=32 * MiB),))
    p = plan(src, Target("/img/t0.img", 20 * GiB))
    assert p.target.vgs[0].extent_size == 32 * MiB  # vgcreate -s 32768k (build.create_lvm)
    # 19967 MiB PV: (19967 - 1) // 32 = 623 extents; LVs 128 + 64 + 32, the 399 free go to root and var 2:1
    assert lv_mib(p) == {"alt_root": (128 + 266) * 32, "alt_var": (64 + 133) * 32, "alt_swap": 1024}
    fit = plan(src, Target("/img/t0.img", 0), resize=Resize.FIT)
    need = {"alt_root": space.required_bytes("ext4", 1500000000), "alt_var": space.required_bytes("xfs", 300000000)}
    for lv in fit.target.lvs:
        assert lv.size % (32 * MiB) == 0 and need.get(lv.name, GiB) <= lv.size < need.get(lv.name, GiB) + 32 * MiB


def test_thin_pools_and_thin_lvs_keep_their_sizes_and_cost_their_vg_the_pool_only() -> None:
    """The stacks layout: pool 1 GiB (64 KiB chunks, 4 MiB metadata) holding thin LV data of 3 GiB virtual, on a
    2 GiB PV. The target has them with alt_ names, the same sizes whatever the policy (a thin LV is not grown
    or shrunk, nor its pool); the VG needs the pool's data and twice its metadata (its spare), not the 3 GiB."""
    src = stacks()
    for resize in (Resize.GROW, Resize.FIT, Resize.EXACT):
        p = make_plan(src, [Target("/t", 16 * GiB)], PlanOptions(resize=resize))
        lvs = {lv.name: lv for lv in p.target.lvs}
        pool, data = lvs["alt_pool"], lvs["alt_data"]
        assert (pool.kind, pool.size, pool.chunk_size, pool.metadata_size) == ("thin-pool", GiB, 64 * 1024, 4 * MiB)
        assert (data.kind, data.pool, data.size) == ("thin", "lv-vg0-pool", 3 * GiB), resize
    fit = make_plan(src, [Target("/t", 16 * GiB)], PlanOptions(resize=Resize.FIT))
    [pv] = [p for p in fit.target.partitions if p.id in fit.target.vgs[0].pvs]
    assert GiB + 8 * MiB <= pv.size < GiB + 8 * MiB + 16 * MiB, "pool + metadata + spare, rounded to extents"


def _btrfs_only() -> Layout:
    layout = stacks()
    return replace(layout, lvs=(), vgs=(), filesystems=layout.filesystems[:2],
                   partitions=layout.partitions[:2])  # fmt: skip


def test_btrfs_subvolumes_go_into_the_target_layout_as_they_are_snapshots_when_captured() -> None:
    """The target layout has the source's subvolumes (same ids, paths, mount points): restore makes them; its
    snapshots only when the archive holds them (capture --snapshots); the --dry-run table lists them."""
    src = _btrfs_only()
    p = make_plan(src, [Target("/t", 16 * GiB)], PlanOptions())
    assert p.target.subvolumes == tuple(s for s in src.subvolumes if not s.snapshot) != src.subvolumes
    p.target.validate()
    assert "sv-root-at    subvolume   -" in p.table() and "/ (@)" in p.table() and "sv-root-snap" not in p.table()
    kept = make_plan(src, [Target("/t", 16 * GiB)], PlanOptions(snapshots=True))
    assert kept.target.subvolumes == src.subvolumes


def test_converting_a_btrfs_with_subvolumes_is_refused_by_name() -> None:
    """--convert btrfs=ext4 would lose the subvolumes each stream is for: one line naming a subvolume."""
    with pytest.raises(LayoutError, match=r"^Subvolume sv-root-\S+: --convert btrfs=ext4 cannot hold btrfs subvolume"):
        make_plan(_btrfs_only(), [Target("/t", 16 * GiB)], PlanOptions(convert={"btrfs": "ext4"}))
