"""Filesystem features: what the layout records of a source (ext), what each target filesystem is made with on
restore (pure), and the mkfs options for it.

The layout records type-specific features (probe/host.py, probe/guest.py): for ext, the superblock's feature list
without its state flags, block size and inode size (ext_features(), one rule for both probes); for xfs, the
superblock's feature bits and the geometry xfs_info reports. A restore makes each target filesystem with "the
target type's equivalent features":

- ext → ext: exactly the source's feature list (mke2fs -O none,<list>: "none" first clears mke2fs.conf's defaults,
  so a feature the source lacks stays off), its block size and inode size, minus, each named in a plan warning:
  state flags (needs_recovery, orphan_present: set while mounted); read-only (the restore must write); features
  the target type lacks (ext2 has no journal; ext2/ext3 mount none of ext4's incompatible or read-only-compatible
  features: the kernel's ext3 feature set is filetype, meta_bg, sparse_super, large_file); features the
  appliance's mke2fs (e2fsprogs 1.47.0) cannot create. An upgrade to ext4 (-T, --convert ext3=ext4) adds
  mke2fs.conf's ext4 features and inodes of at least 256 bytes (room for nanosecond times and dates after 2038).
  A block size the target's size cannot use without 64bit (2^32 blocks) is left to mke2fs.
- xfs → xfs: the v5 feature bits (crc, finobt, rmapbt, reflink, bigtime, inobtcount, sparse, nrext64), ftype on
  a v4 filesystem, block size and inode size, as mkfs.xfs -m/-i/-n/-b options; geometry that follows the size
  (agcount, log size) and the sector size (the target device's) are left to mkfs.xfs.
- Across families (ext ↔ xfs ↔ btrfs), and btrfs/vfat: the target type's mkfs defaults (features {}).

A dropped feature is a warning, not a refusal: none loses content by itself. State flags and read-only describe the
filesystem, not its files; ext2 has no journal; ext4's own features (huge_file, ea_inode, dir_nlink, large_dir, …)
go only in a conversion to ext2/ext3, which conversion_refusal() refuses (and blkid calls any ext with one of them
ext4); a feature mke2fs 1.47.0 cannot make is one it does not know. What such features let the content do (files
over 2 TiB, large xattrs, many links) is checked against the features the target really gets (fs/limits.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXT_TYPES = frozenset({"ext2", "ext3", "ext4"})
EXT_STATE = frozenset({"needs_recovery", "orphan_present"})
# what mke2fs 1.47.0 creates (lib/e2p/feature.c names, as tune2fs -l prints them)
MKE2FS_FEATURES = frozenset(
    "has_journal ext_attr resize_inode dir_index filetype meta_bg extent 64bit mmp flex_bg ea_inode "
    "metadata_csum_seed large_dir inline_data encrypt casefold sparse_super sparse_super2 large_file huge_file "
    "uninit_bg dir_nlink extra_isize quota bigalloc metadata_csum project verity stable_inodes orphan_file "
    "fast_commit".split()
)
# incompat/ro_compat features the kernel refuses on a filesystem mounted as ext2 or ext3
EXT4_ONLY = frozenset(
    "extent 64bit flex_bg huge_file dir_nlink extra_isize uninit_bg metadata_csum metadata_csum_seed inline_data "
    "bigalloc ea_inode large_dir encrypt casefold project quota verity mmp".split()
)
NEEDS_JOURNAL = frozenset({"has_journal", "fast_commit", "orphan_file"})
# mke2fs.conf (e2fsprogs 1.47.0): base_features, then [fs_types] ext4's features
MKE2FS_BASE = ("sparse_super", "large_file", "filetype", "resize_inode", "dir_index", "ext_attr")
MKE2FS_EXT4 = ("has_journal", "extent", "huge_file", "flex_bg", "metadata_csum", "64bit", "dir_nlink", "extra_isize")
EXT_BLOCK_SIZES = frozenset({1024, 2048, 4096})  # larger blocks do not mount on 4 KiB pages

# mkfs.xfs 6.1.0: option section of each recorded feature bit
XFS_META = ("crc", "finobt", "rmapbt", "reflink", "bigtime", "inobtcount")  # -m
XFS_INODE = ("sparse", "nrext64")  # -i


def ext_features(fields: Mapping[str, str]) -> dict[str, Any]:
    """The layout's features of an ext2/3/4 filesystem from its superblock fields as `dumpe2fs -h` and `tune2fs -l`
    list them (libguestfs's tune2fs_l returns the same): the features but the state flags (EXT_STATE: set while
    mounted, not by mkfs), the block size and the inode size (0: not listed)."""
    names = fields.get("Filesystem features", "").split()
    return {
        "ext_features": [f for f in names if f not in EXT_STATE],
        "block_size": _count(fields.get("Block size", "")),
        "inode_size": _count(fields.get("Inode size", "")),
    }


def _count(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else 0


def carry(old: str, new: str, features: Mapping[str, Any], size: int, what: str) -> tuple[dict[str, Any], list[str]]:
    """The features of a target filesystem of type new and size bytes made from a source of type old.

    what names the filesystem in warnings ("filesystem / (fs-root)").
    """
    if old in EXT_TYPES and new in EXT_TYPES and "ext_features" in features:
        return _carry_ext(old, new, features, size, what)
    if old == new == "xfs" and isinstance(features.get("xfs"), Mapping):
        return {"xfs": dict(features["xfs"])}, []
    return (dict(features) if old == new else {}), []


def _carry_ext(old: str, new: str, src: Mapping[str, Any], size: int, what: str) -> tuple[dict[str, Any], list[str]]:
    wanted = [str(f) for f in src.get("ext_features", [])]
    if new == "ext4" and old != "ext4":
        wanted += [f for f in (*MKE2FS_BASE, *MKE2FS_EXT4) if f not in wanted]
    kept, dropped = [], []
    for f in dict.fromkeys(wanted):
        why = _ext_refusal(f, new)
        if why is None:
            kept.append(f)
        elif why:
            dropped.append(f"{f} ({why})")
    warnings = [f"{what}: {new} is made without {', '.join(dropped)}"] if dropped else []
    out: dict[str, Any] = {"ext_features": kept}
    bs = int(src.get("block_size") or 0)
    if bs in EXT_BLOCK_SIZES and (size // bs < 2**32 or "64bit" in kept):
        out["block_size"] = bs
    elif bs:
        warnings.append(f"{what}: block size {bs} does not suit {new} on {size} bytes; mke2fs picks one")
    inode = int(src.get("inode_size") or 0)
    if inode and new == "ext4" and old != "ext4":
        inode = max(inode, 256)
    if inode:
        out["inode_size"] = min(inode, out.get("block_size", 4096))
    return out, warnings


def _ext_refusal(feature: str, new: str) -> str | None:
    """Why feature is not made on a new filesystem of type new; "" to drop it silently (state flags)."""
    if feature in EXT_STATE:
        return ""
    if feature == "read-only":
        return "the restore writes to it; set it afterwards with tune2fs -O read-only"
    if feature not in MKE2FS_FEATURES:
        return "mke2fs 1.47.0 cannot make it"
    if new != "ext4" and feature in EXT4_ONLY:
        return f"{new} cannot mount it"
    if new == "ext2" and feature in NEEDS_JOURNAL:
        return "ext2 has no journal"
    return None


def ext_sizes(features: Mapping[str, Any]) -> dict[str, int]:
    """The block and inode size an ext filesystem with these features is made with (0: mke2fs's default)."""
    return {"block_size": int(features.get("block_size") or 0), "inode_size": int(features.get("inode_size") or 0)}


# -- mkfs options ------------------------------------------------------------------------------------------------
def ext_mkfs_options(features: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of libguestfs mkfs (mke2fs -O/-b/-I) for an ext filesystem; {} = mke2fs's defaults."""
    if "ext_features" not in features:
        return {}
    out: dict[str, Any] = {"features": ",".join(["none", *features["ext_features"]])}
    if features.get("block_size"):
        out["blocksize"] = int(features["block_size"])
    if features.get("inode_size"):
        out["inode"] = int(features["inode_size"])
    return out


def xfs_mkfs_argv(features: Mapping[str, Any], device: str, label: str = "") -> list[str] | None:
    """mkfs.xfs's command line for the recorded parameters; None when none are recorded (mkfs's defaults)."""
    params = features.get("xfs")
    if not isinstance(params, Mapping) or "crc" not in params:
        return None
    crc = int(params["crc"])
    meta = [f"{k}={int(params[k]) if crc or k == 'crc' else 0}" for k in XFS_META if k in params]
    inode = [f"{k}={int(params[k]) if crc else 0}" for k in XFS_INODE if k in params]
    isize = int(params.get("inodesize") or params.get("inode_size") or 0)
    inode += [f"size={isize}"] if isize else []
    argv = ["mkfs.xfs", "-f", "-m", ",".join(meta)]
    argv += ["-i", ",".join(inode)] if inode else []
    if not crc and "ftype" in params:  # v5 always has ftype; v4 records it in features2
        argv += ["-n", f"ftype={int(params['ftype'])}"]
    if params.get("blocksize"):
        argv += ["-b", f"size={int(params['blocksize'])}"]
    return argv + (["-L", label] if label else []) + [device]
