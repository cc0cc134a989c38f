"""Filesystem types: what each costs (overhead, minimum, room for data), what it allows (labels, options,
conversions), and the check of a target layout's filesystems against it. Pure functions.

The models follow the mkfs defaults of Debian 12 (e2fsprogs 1.47.0, xfsprogs 6.1.0, btrfs-progs 6.2,
dosfstools 4.2) and were checked against real filesystems on sparse files (tests/test_space.py, integration):

- ext2/3/4: mke2fs.conf picks 1 KiB blocks and 4096 bytes per inode below 512 MiB ("small"), 4 KiB blocks and
  16384 bytes per inode up to 4 TiB ("big" 32768 and "huge" 65536 above), 256-byte inodes. Counted: the inode
  tables, the block and inode bitmaps, the superblock and group-descriptor backups (sparse_super: groups 0, 1 and
  the powers of 3, 5 and 7) with the GDT blocks reserved for online growth, the journal (ext3/4, mke2fs's own size
  table, in blocks: <32Ki blocks → 1024, <256Ki → 4096, <512Ki → 8192, <4Mi → 16384, <32Mi → 32768, else 262144,
  i.e. with 4 KiB blocks 16 MiB below 1 GiB … 128 MiB below 128 GiB, 1 GiB above) and, for ext4, the clusters the
  kernel keeps back for delayed allocation (2 % or 4096 clusters). The 5 % reserved for root is NOT counted: the
  restore runs as root and may use it.
- xfs: the internal log (xfsprogs ≥ 5.19: at least 64 MiB, size/2048 above 128 GiB, at most 521728 blocks), the
  reserve pool (5 % or 8192 blocks, whichever is less) and 0.7 % for AG headers and btrees with their per-AG
  reservations (finobt, reflink), plus 1 MiB.
- btrfs: the system chunk (8 MiB, DUP) and the first metadata chunks (DUP, size/16 clamped to 32…256 MiB, of which
  the global reserve is part) plus 1 % for metadata growing with the data. A real tree of small files needs more
  metadata; with `files` known, required_bytes() adds 1 KiB per file (inode, refs and dir items, twice).
- vfat: two FATs (FAT16 below 512 MiB in 2 KiB clusters, FAT32 above in 4 KiB clusters) plus 1 MiB for the
  reserved sectors and the root directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from imgclone.fs import features as fsfeatures
from imgclone.model.layout import Filesystem, FsType, Layout, LvKind
from imgclone.units import MiB, TiB

EXT_INODE_SIZE = 256
XFS_INODE_SIZE = 512  # dynamic: a file converted from ext costs an inode chunk slot on xfs
BTRFS_PER_FILE = 1024  # inode item, inode ref and two dir items (~500 B), metadata DUP
XFS_MAX_LOG = 521728 * 4096
LVM_PE_START = MiB  # where LVM puts a PV's first extent by default (pvs -o pe_start)

_MINIMUM = {
    "ext2": 8 * MiB,  # mke2fs accepts less, but below 2048 blocks there is no room for a journal
    "ext3": 8 * MiB,
    "ext4": 8 * MiB,
    "xfs": 300 * MiB,  # xfsprogs ≥ 5.19: "Filesystem must be larger than 300MB"
    "btrfs": 114294784,  # btrfs-progs: "minimum size for each btrfs device is 114294784" (109 MiB)
    "vfat": 33 * MiB,  # room for FAT32 (65525 clusters), what UEFI firmware expects of an ESP
}
_LABEL_MAX = {"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "btrfs": 255, "vfat": 11}


def _known(fstype: str) -> str:
    if fstype not in _MINIMUM:
        raise ValueError(f"unknown filesystem type {fstype!r}")
    return fstype


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def ext_geometry(size: int, block_size: int = 0) -> tuple[int, int]:
    """(block size, bytes per inode) mke2fs picks for a filesystem of size bytes (block_size: given with -b)."""
    if block_size:
        return block_size, ext_geometry(size)[1]  # the inode ratio still follows the size's fs_type
    if size < 3 * MiB:
        return 1024, 8192  # "floppy"
    if size < 512 * MiB:
        return 1024, 4096  # "small"
    if size < 4 * TiB:
        return 4096, 16384
    return (4096, 32768) if size < 16 * TiB else (4096, 65536)  # "big", "huge"


def ext_journal_blocks(blocks: int) -> int:
    """mke2fs's default journal size in filesystem blocks (ext2fs_default_journal_size)."""
    if blocks < 2048:
        return 0
    for limit, journal in ((32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192), (4096 * 1024, 16384)):
        if blocks < limit:
            return journal
    return 32768 if blocks < 32768 * 1024 else 262144


def ext_inodes(size: int, block_size: int = 0, inode_size: int = 0) -> int:
    """How many inodes mke2fs gives an ext filesystem of size bytes (they cannot be added later)."""
    bs, ratio = ext_geometry(size, block_size)
    groups = max(1, _ceil(size // bs, 8 * bs))
    per_block = max(8, bs // (inode_size or EXT_INODE_SIZE))
    per_group = _ceil(_ceil(size // ratio, groups), per_block) * per_block
    return groups * per_group


def _backup_groups(groups: int) -> int:
    found = {0, 1} & set(range(groups))
    for base in (3, 5, 7):
        g = base
        while g < groups:
            found.add(g)
            g *= base
    return len(found)


def _ext_overhead(fstype: str, size: int, block_size: int, inode_size: int) -> int:
    bs, _ = ext_geometry(size, block_size)
    blocks = size // bs
    groups = max(1, _ceil(blocks, 8 * bs))
    per_gdt_block = bs // (64 if fstype == "ext4" else 32)
    gdt = _ceil(groups, per_gdt_block)
    rsv_gdt = max(0, min(bs // 4, _ceil(_ceil(min(2**32 - 1, blocks * 1024), 8 * bs), per_gdt_block) - gdt))
    sb_area = _backup_groups(groups) * (1 + gdt + rsv_gdt) * bs
    tables = ext_inodes(size, bs, inode_size) * (inode_size or EXT_INODE_SIZE) + 2 * groups * bs
    journal = 0 if fstype == "ext2" else ext_journal_blocks(blocks) * bs
    delalloc = min(blocks // 50, 4096) * bs if fstype == "ext4" else 0
    return sb_area + tables + journal + delalloc + 8 * bs  # root directory, lost+found


def _xfs_overhead(size: int) -> int:
    log = min(max(64 * MiB, size // 2048), XFS_MAX_LOG)
    return log + min(size // 20, 32 * MiB) + size * 7 // 1000 + MiB


def _btrfs_overhead(size: int) -> int:
    return 16 * MiB + 2 * min(max(size // 16, 32 * MiB), 256 * MiB) + size // 100


def _vfat_overhead(size: int) -> int:
    entry, clusters = (2, min(size // 2048, 65525)) if size < 512 * MiB else (4, size // 4096)
    return 2 * entry * clusters + MiB


def overhead_bytes(fstype: str, size: int, *, block_size: int = 0, inode_size: int = 0) -> int:
    """Bytes of a fresh fstype filesystem of size bytes that data cannot use (see the module docstring).

    block_size, inode_size: an ext filesystem made with these (fsfeatures: the source's), else mke2fs's defaults.
    """
    fstype = _known(fstype)
    if fstype in fsfeatures.EXT_TYPES:
        return _ext_overhead(fstype, size, block_size, inode_size)
    if fstype == "xfs":
        return _xfs_overhead(size)
    return _btrfs_overhead(size) if fstype == "btrfs" else _vfat_overhead(size)


def minimum_bytes(fstype: str) -> int:
    """The smallest filesystem of this type imgclone makes."""
    return _MINIMUM[_known(fstype)]


def label_max_bytes(fstype: str) -> int:
    """The longest label (in bytes) the type stores."""
    return _LABEL_MAX[_known(fstype)]


def per_file_bytes(fstype: str) -> int:
    """Metadata a file costs on a type with dynamic inodes (xfs, btrfs); 0 for ext (its inodes are overhead)."""
    return {"xfs": XFS_INODE_SIZE, "btrfs": BTRFS_PER_FILE}.get(_known(fstype), 0)


def required_bytes(
    fstype: str, used: int, margin: float = 0.10, *, files: int = 0, block_size: int = 0, inode_size: int = 0
) -> int:
    """The smallest size (a MiB multiple, ≥ the type's minimum) holding used bytes plus overhead plus margin × used.

    files: for ext, the inodes the filesystem must have (plus the margin); for xfs and btrfs, files whose inodes
    are not in `used` yet (data coming from ext) and cost per_file_bytes() each. block_size, inode_size: as for
    overhead_bytes().
    """
    geo = {"block_size": block_size, "inode_size": inode_size}
    data = used + int(used * margin) + files * per_file_bytes(fstype)
    inodes = int(files * (1 + margin)) if fstype in fsfeatures.EXT_TYPES else 0

    def ok(size: int) -> bool:
        return data + overhead_bytes(fstype, size, **geo) <= size and (not inodes or ext_inodes(size, **geo) >= inodes)

    size = max(minimum_bytes(fstype), _ceil(data, MiB) * MiB)
    for _ in range(256):  # overhead grows with size: iterate up to a size that holds it all (a few rounds)
        if ok(size):
            break
        need = _ceil(data + overhead_bytes(fstype, size, **geo), MiB) * MiB
        if need <= size:  # inodes are short: the size that gives enough at this geometry, at least 1 MiB more
            need = max(size + MiB, _ceil(inodes * ext_geometry(size)[1], MiB) * MiB)
        size = need
    else:
        raise ValueError(f"required_bytes({fstype!r}, {used}): no size found")
    # overhead is not monotonic (mke2fs's block size and journal steps): the smallest size may lie just below
    while size - MiB >= minimum_bytes(fstype) and ok(size - MiB):
        size -= MiB
    return size


def fits(fstype: str, size: int, used: int, *, files: int = 0, block_size: int = 0, inode_size: int = 0) -> bool:
    """Whether used bytes (and files, as for required_bytes) fit a fresh fstype filesystem of size bytes."""
    if fstype in fsfeatures.EXT_TYPES and files > ext_inodes(size, block_size, inode_size):
        return False
    overhead = overhead_bytes(fstype, size, block_size=block_size, inode_size=inode_size)
    return used + files * per_file_bytes(fstype) + overhead <= size


# -- changing a filesystem's type ------------------------------------------------------------------------------
# mount options every Linux filesystem takes; the others are dropped when a filesystem changes family
GENERIC_OPTIONS = frozenset(
    "defaults ro rw suid nosuid dev nodev exec noexec auto noauto user nouser users owner group nofail sync async "
    "atime noatime relatime norelatime strictatime nostrictatime lazytime nolazytime diratime nodiratime "
    "iversion noiversion mand nomand dirsync silent loud _netdev discard nodiscard".split()
)
GENERIC_PREFIXES = ("x-", "comment=", "context=", "fscontext=", "defcontext=", "rootcontext=")
CONVERTIBLE = ("ext2", "ext3", "ext4", "xfs", "btrfs")


def conversion_refusal(old: str, new: str) -> str | None:
    """Why a filesystem of type old cannot become new (None when it can)."""
    if "vfat" in (old, new):
        return "vfat is never converted (an EFI system partition must stay FAT)"
    if old not in CONVERTIBLE or new not in CONVERTIBLE:
        return "unknown filesystem type; convertible: " + " ".join(CONVERTIBLE)
    if new in ("ext2", "ext3") and old not in ("ext2", "ext3"):
        return f"{new} cannot hold what {old} can (extents, huge files, big directories); only ext2/ext3 become {new}"
    return None


def fit_label(fstype: str, label: str) -> str:
    """label cut to what fstype stores (whole UTF-8 characters)."""
    return label.encode()[: label_max_bytes(fstype)].decode(errors="ignore")


def portable_options(options: str) -> tuple[str, list[str]]:
    """(the mount options any filesystem takes, the dropped rest); 'defaults' when nothing is left."""
    opts = [o for o in options.split(",") if o]
    keep = [o for o in opts if o in GENERIC_OPTIONS or o.startswith(GENERIC_PREFIXES)]
    return ",".join(keep) or "defaults", [o for o in opts if o not in keep]


def files_cost(old: str, new: str, files: int) -> int:
    """Files that count on new: ext inodes always; xfs/btrfs inodes only when ext's `used` did not hold them."""
    return files if new in fsfeatures.EXT_TYPES or (old in fsfeatures.EXT_TYPES and new in ("xfs", "btrfs")) else 0


# -- checking a target layout -------------------------------------------------------------------------------------
def space_problems(target: Layout, old_types: Mapping[str, str], files: Mapping[str, int]) -> list[str]:
    """Each target filesystem whose data (used, files) and overhead exceed its size; old_types: fs id → old type."""
    out = []
    for fs in target.filesystems:
        what, n = f"filesystem {fs.mountpoint} ({fs.id})", files_cost(old_types[fs.id], fs.type, files.get(fs.id, 0))
        geo = fsfeatures.ext_sizes(fs.features)
        inodes = ext_inodes(fs.size, **geo) if fs.type in fsfeatures.EXT_TYPES else 0
        if fs.type in fsfeatures.EXT_TYPES and n > inodes:
            out.append(f"{what}: {n} files need as many inodes, {fs.type} on {fs.size // MiB} MiB has {inodes}")
        needs = fs.used + n * per_file_bytes(fs.type) + overhead_bytes(fs.type, fs.size, **geo)
        if needs > fs.size:
            need_mib, gives = _ceil(needs, MiB), fs.size // MiB
            out.append(
                f"{what}: needs {need_mib} MiB for {_ceil(fs.used, MiB)} MiB of data as {fs.type}, the target gives "
                f"{gives} MiB (short by {need_mib - gives} MiB)"
            )
    return out


def minimum_problems(target: Layout, old_types: Mapping[str, str]) -> list[str]:
    """Each converted filesystem smaller than its new type's minimum (mkfs would refuse it)."""
    return [
        f"filesystem {fs.mountpoint} ({fs.id}): {fs.type} needs at least {_ceil(minimum_bytes(fs.type), MiB)} MiB, "
        f"the target gives {fs.size // MiB} MiB"
        for fs in target.filesystems
        if fs.type != old_types[fs.id] and fs.size < minimum_bytes(fs.type)
    ]


def convert_filesystem(fs: Filesystem, new: str, device: str, size: int) -> tuple[Filesystem, list[str]]:
    """The target filesystem for fs (uuid empty) on device of size bytes, as type new, and warnings about it.

    Unchanged types keep label and options; a new type gets the label cut to its limit and, across families, only
    the portable mount options. Features are what fsfeatures.carry() gives the target type.
    """
    what = f"filesystem {fs.mountpoint} ({fs.id})"
    features, warnings = fsfeatures.carry(fs.type, new, fs.features, size, what)
    if new == fs.type:
        return replace(fs, device=device, size=size, uuid="", features=features), warnings
    label = fit_label(new, fs.label)
    if label != fs.label:
        warnings.append(f"{what}: label {fs.label!r} is too long for {new}; it becomes {label!r}")
    options, dropped = (fs.options, []) if {fs.type, new} <= fsfeatures.EXT_TYPES else portable_options(fs.options)
    if dropped:
        warnings.append(f"{what}: mount option(s) {','.join(dropped)} do not apply to {new}; dropped")
    if fs.mountpoint == "/boot" and new == "btrfs":
        warnings.append(f"{what}: /boot on btrfs: GRUB reads it, but check that the bootloader setup supports it")
    if fs.mountpoint == "/":
        warnings.append(f"{what}: / becomes {new}: the target's initramfs must carry the {new} driver")
    made = replace(fs, device=device, type=FsType(new), size=size, uuid="", label=label, options=options,
                   features=features)  # fmt: skip
    return made, warnings


def pv_extents(size: int, extent_size: int) -> int:
    """The extents a PV of size bytes holds (its first extent at LVM_PE_START)."""
    return max(0, size - LVM_PE_START) // extent_size


def free_bytes(target: Layout) -> tuple[int, int]:
    """Bytes a layout leaves free: unpartitioned on its disks (GPT's last MiB excluded), and in its VGs."""
    reserve = MiB if target.disks and target.disks[0].table == "gpt" else 0
    ends = [max((p.start + p.size for p in target.partitions if p.disk == d.id), default=MiB) for d in target.disks]
    unparted = sum(max(0, d.size // MiB * MiB - reserve - end) for d, end in zip(target.disks, ends, strict=True))
    pvs = {p.id: p.size for p in target.partitions}
    extents = sum(pv_extents(pvs[pv], vg.extent_size) * vg.extent_size for vg in target.vgs for pv in vg.pvs)
    return unparted, extents - sum(lv.size for lv in target.lvs if lv.kind != LvKind.THIN)  # thin: in its pool
