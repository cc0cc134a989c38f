"""LVM names: the alt prefixes, LVM's rules, --lv-name-limit."""

from __future__ import annotations

import pytest

from imgclone.errors import LayoutError, UsageError
from imgclone.model import names
from imgclone.model.layout import Disk, Layout, LogicalVolume, Partition, VolumeGroup


def layout(vg: str, *lvs: str) -> Layout:
    """A layout after prefixing: VG altinst_<vg> holding alt_<lv> for each lv."""
    return Layout(
        disks=(Disk("disk-t0", "/t", 1 << 34),),
        partitions=(Partition("part-t0-1", "disk-t0", 1, 1 << 20, 1 << 33),),
        vgs=(VolumeGroup("vg-x", names.alt_vg(vg), ("part-t0-1",)),),
        lvs=tuple(LogicalVolume(f"lv-{i}", names.alt_lv(lv), "vg-x", 1 << 22) for i, lv in enumerate(lvs)),
    )


def test_prefixes_and_final_names() -> None:
    assert names.alt_vg("rootvg") == "altinst_rootvg"
    assert names.alt_lv("root") == "alt_root"
    assert names.final_name("altinst_rootvg") == "rootvg"
    assert names.final_name("alt_root") == "root"
    assert names.final_name("alt_altinst_x") == "altinst_x"
    assert names.final_name(names.alt_vg("alt_vg")) == "alt_vg"
    with pytest.raises(ValueError, match="no alt prefix"):
        names.final_name("rootvg")


def test_dm_name_doubles_hyphens() -> None:
    assert names.dm_name("altinst_my-vg", "alt_a-b") == "altinst_my--vg-alt_a--b"


@pytest.mark.parametrize(
    ("name", "lv", "problem"),
    [
        ("bad name", True, "invalid character(s) ' '"),
        ("a/b:c", False, "invalid character(s) '/' ':'"),
        ("-x", False, "starts with '-'"),
        (".", False, "'.' is reserved"),
        ("..", True, "'..' is reserved"),
        ("x" * 128, False, "128 characters, LVM allows 127"),
        ("snapshot", True, "starts with the reserved 'snapshot'"),
        ("snapshot1", True, "starts with the reserved 'snapshot'"),
        ("pvmove0", True, "starts with the reserved 'pvmove'"),
        ("", True, "empty"),
    ]
    + [(f"my{s}1", True, f"contains the reserved {s!r}") for s in names.RESERVED_LV_STRINGS],
)
def test_name_rules(name: str, lv: bool, problem: str) -> None:
    assert any(p.startswith(problem) for p in names.name_problems(name, lv=lv)), names.name_problems(name, lv=lv)


@pytest.mark.parametrize("name", ["root", "a+b", "x.y_z-1", "x" * 127, "snap", "my_cdat", "_mlo"])
def test_valid_lv_names(name: str) -> None:
    assert names.name_problems(name, lv=True) == []


def test_reserved_lv_words_are_fine_for_vgs() -> None:
    assert names.name_problems("snapshot", lv=False) == []
    assert names.name_problems("x_tdata", lv=False) == []
    assert len(names.RESERVED_LV_STRINGS) == 17  # lvm2 2.03: the 13 of lvm(8) plus _cpool _cvol _imeta _iorig


def test_check_names_passes_good_layouts() -> None:
    names.check_names(layout("rootvg", "root", "var", "swap"), limit=15)
    names.check_names(layout("rootvg", "x" * 108), limit=127)  # dm name: 14 + 1 + 112 = 127


def test_limit_lists_every_long_lv() -> None:
    with pytest.raises(LayoutError) as e:
        names.check_names(layout("rootvg", "verylongname", "ok", "otherlongname"), limit=15)
    assert str(e.value) == (
        "logical volume names too long for --lv-name-limit 15 (the alt_ prefix takes 4): rootvg/verylongname "
        "(12 > 11), rootvg/otherlongname (13 > 11); rename them in a layout file: imgclone archive show --layout "
        'ARCHIVE > layout.json, edit the "name" of each, then restore -i /full/path/layout.json'
    )
    names.check_names(layout("rootvg", "x" * 11), limit=15)


def test_lvm_rules_are_checked_on_the_final_names_too() -> None:
    # alt_snapshot1 is a fine name, but Phase 3 would rename it back to snapshot1
    with pytest.raises(LayoutError, match=r"rootvg/snapshot1 \(as snapshot1 after Phase 3: starts with the reserved"):
        names.check_names(layout("rootvg", "snapshot1"), limit=127)
    with pytest.raises(LayoutError, match=r"rootvg/-x \(as -x after Phase 3: starts with '-'\)"):
        names.check_names(layout("rootvg", "-x"), limit=127)


def test_every_problem_in_one_message() -> None:
    with pytest.raises(LayoutError) as e:
        names.check_names(layout("root vg", "a b", "x_rimage_0", "fine", "fine"), limit=127)
    msg = str(e.value)
    assert msg.startswith("names LVM refuses: volume group root vg (invalid character(s) ' '")
    for part in ("root vg/a b (invalid character", "x_rimage_0 (contains the reserved '_rimage')",
                 "root vg/fine (named twice in its volume group)", names.RENAME_HINT):  # fmt: skip
        assert part in msg


def test_device_mapper_name_length() -> None:
    # altinst_ + 60 = 68, alt_ + 56 = 60, joined 129 > 127 although each name is short enough
    with pytest.raises(LayoutError, match=r"device-mapper name .* has 129 characters, at most 127"):
        names.check_names(layout("v" * 60, "l" * 56), limit=127)
    names.check_names(layout("v" * 60, "l" * 54), limit=127)
    # hyphens count twice
    with pytest.raises(LayoutError, match="device-mapper name"):
        names.check_names(layout("v-" * 30, "l" * 40), limit=127)


def test_check_limit() -> None:
    names.check_limit(5)
    names.check_limit(127)
    for bad in (4, 128):
        with pytest.raises(UsageError, match="--lv-name-limit"):
            names.check_limit(bad)


def test_prefix_warnings() -> None:
    src = Layout(
        vgs=(VolumeGroup("vg-a", "altinst_old", ("p",)), VolumeGroup("vg-b", "rootvg", ("q",))),
        lvs=(LogicalVolume("lv-a", "alt_x", "vg-b", 1), LogicalVolume("lv-b", "x", "vg-b", 1)),
    )
    warnings = names.prefix_warnings(src)
    assert len(warnings) == 2
    assert warnings[0].startswith("volume group altinst_old already starts with an alt prefix")
    assert warnings[1].startswith("logical volume alt_x already starts with an alt prefix")
