"""What each filesystem type can hold per file, and the check of a target layout against the content's extremes.

Pure. Limits, as the Linux kernel enforces them (fs/ext4/super.c ext4_max_size / ext4_max_bitmap_size,
EXT4_LINK_MAX, xfs XFS_MAXLINK, btrfs BTRFS_LINK_MAX and BTRFS_MAX_XATTR_SIZE, the VFS's XATTR_SIZE_MAX):

- file size: ext with extents: 2^32 - 1 blocks (16 TiB with 4 KiB blocks, 4 TiB with 1 KiB), and without
  huge_file at most 2^32 - 1 sectors (2 TiB); ext without extents (ext2/ext3): the block map's 12 + n + n^2 + n^3
  blocks (n = block size / 4: 16 GiB with 1 KiB blocks, 256 GiB with 2 KiB), less its own blocks when the
  2^32-sector limit binds (2 TiB with 4 KiB blocks); xfs and btrfs: 8 EiB (the VFS's limit); vfat 4 GiB - 1.
- hard links: ext2/ext3 32 000 (ext2's EXT2_LINK_MAX, the conservative one of the two kernel drivers), ext4
  65 000, xfs 2^31 - 1, btrfs 65 535, vfat 1.
- one extended attribute (name and value): ext without ea_inode one block, less the block's header (32 bytes),
  the entry (16 bytes) and the end marker (4 bytes); btrfs a metadata item of a 16 KiB node (16 228 bytes);
  ext with ea_inode and xfs 64 KiB (the VFS's limit for every type).

An ext target made with mke2fs's defaults (no recorded features: a conversion from another family) gets
mke2fs.conf's features (ext4: extent and huge_file; ext2/ext3: neither) and its block size for the size.
"""

from __future__ import annotations

from collections.abc import Mapping

from imgclone.fs import features as fsfeatures
from imgclone.fs import space
from imgclone.model.content import ContentFacts
from imgclone.model.layout import Filesystem, Layout
from imgclone.units import MiB

EIB8 = (1 << 63) - 1  # MAX_LFS_FILESIZE on 64-bit
LINKS = {"ext2": 32000, "ext3": 32000, "ext4": 65000, "xfs": (1 << 31) - 1, "btrfs": 65535, "vfat": 1}
VFS_XATTR = 65536
EXT_XATTR_OVERHEAD = 32 + 16 + 4
BTRFS_XATTR = 16384 - 101 - 25 - 30  # nodesize - header - item - dir item


def ext_features(fs: Filesystem) -> frozenset[str]:
    """The ext features the target filesystem is made with (mke2fs.conf's when none are recorded)."""
    recorded = fs.features.get("ext_features")
    if recorded is not None:
        return frozenset(str(f) for f in recorded)
    base = set(fsfeatures.MKE2FS_BASE) | ({"has_journal"} if fs.type != "ext2" else set())
    return frozenset(base | set(fsfeatures.MKE2FS_EXT4) if fs.type == "ext4" else base)


def ext_block_size(fs: Filesystem) -> int:
    """The block size mke2fs makes it with: the recorded one, else mke2fs's for its size."""
    return int(fs.features.get("block_size") or 0) or space.ext_geometry(fs.size)[0]


def _ext_max_file(bs: int, extents: bool, huge: bool) -> int:
    bits = bs.bit_length() - 1
    sectors_cap = ((1 << 32) - 1) >> (bits - 9)  # i_blocks in 512-byte units, in blocks
    if extents:
        blocks = (1 << 32) - 1
        return min(blocks << bits, EIB8 if huge else sectors_cap << bits)
    per = 1 << (bits - 2)  # block numbers per block
    blocks, meta = 12 + per + per**2 + per**3, 1 + (1 + per) + (1 + per + per**2)
    cap = (1 << 48) - 1 if huge else sectors_cap
    if blocks + meta <= cap:
        return min(blocks << bits, EIB8)
    rest = cap - 12 - per  # the map blocks a file of cap blocks needs, counted as the kernel does
    if rest < per**2:
        meta = 1 + 1 + -(-rest // per)
    else:
        rest -= per**2
        meta = 1 + (1 + per) + 1 + -(-rest // per) + -(-rest // per**2)
    return min((cap - meta) << bits, EIB8)


def max_file_bytes(fs: Filesystem) -> int:
    """The largest file the target filesystem holds."""
    if fs.type in fsfeatures.EXT_TYPES:
        feats = ext_features(fs)
        return _ext_max_file(ext_block_size(fs), "extent" in feats, "huge_file" in feats)
    return (1 << 32) - 1 if fs.type == "vfat" else EIB8


def max_xattr_bytes(fs: Filesystem) -> int:
    """The largest extended attribute (name plus value) the target filesystem holds."""
    if fs.type in fsfeatures.EXT_TYPES and "ea_inode" not in ext_features(fs):
        return ext_block_size(fs) - EXT_XATTR_OVERHEAD
    return BTRFS_XATTR if fs.type == "btrfs" else VFS_XATTR


def max_subdirs(fs: Filesystem) -> int:
    """The most subdirectories one directory holds (each adds a link to it): ext's link limit less the directory's
    own two, unlimited with ext4's dir_nlink; xfs's link limit; btrfs does not count them (a directory's nlink is 1).

    Why the capture records no subdirectory counts: every conversion the planner allows (space.conversion_refusal)
    gives a type that holds at least as many as the source's, or 2^31 - 3 (xfs, from a type that does not count
    them: ext4 with dir_nlink, btrfs); tests/test_limits.py checks each pair. A filesystem that keeps its type keeps
    its features. So only a directory of over two billion subdirectories, converted to xfs, is not checked."""
    if fs.type in fsfeatures.EXT_TYPES:
        if fs.type == "ext4" and "dir_nlink" in ext_features(fs):
            return EIB8
        return LINKS[str(fs.type)] - 2
    return EIB8 if fs.type == "btrfs" else LINKS.get(str(fs.type), EIB8) - 2


def _what(fs: Filesystem) -> str:
    if fs.type not in fsfeatures.EXT_TYPES:
        return str(fs.type)
    extents = "" if "extent" in ext_features(fs) else ", no extents"
    return f"{fs.type} ({ext_block_size(fs) // 1024} KiB blocks{extents})"


def _instead(fs: Filesystem, old: str, thing: str) -> str:
    """What to do instead, in the order most likely wanted."""
    ways = [f"keep it {old} (leave out --convert {old}={fs.type})"] if old != fs.type else []
    if fs.type in fsfeatures.EXT_TYPES and not fs.features.get("block_size") and fs.size < 512 * MiB:
        ways.append("give it 512 MiB or more (mke2fs picks 1 KiB blocks below)")
    if fs.type in ("ext2", "ext3"):
        ways.append("convert it to ext4 (-T)")
    if "xfs" not in (fs.type, old):
        ways.append(f"convert it to xfs (--convert {old}=xfs)")
    return ", ".join([*ways, f"or exclude {thing} from the capture"])


def content_problems(target: Layout, content: Mapping[str, ContentFacts | None], old_types: Mapping[str, str]
                     ) -> list[str]:  # fmt: skip
    """Each target filesystem whose content (the capture's facts) exceeds what its type holds; old_types: fs id →
    the source's type."""
    out = []
    for fs in target.filesystems:
        old = old_types.get(fs.id, str(fs.type))
        facts = content.get(fs.id)
        if facts is None:
            continue
        what = f"filesystem {fs.mountpoint} ({fs.id})"
        limit = max_file_bytes(fs)
        if facts.largest_file > limit:
            out.append(f"{what}: file {facts.largest_file_path} is {_size(facts.largest_file)}; {_what(fs)} holds "
                       f"files up to {_size(limit)}: {_instead(fs, old, 'the file')}")  # fmt: skip
        links = LINKS.get(str(fs.type), EIB8)
        if facts.most_links > links:
            out.append(f"{what}: file {facts.most_links_path} has {facts.most_links} hard links; {fs.type} allows "
                       f"{links}: {_instead(fs, old, 'some of its links')}")  # fmt: skip
        xattr = max_xattr_bytes(fs)
        if facts.largest_xattr is not None and facts.largest_xattr + len(facts.largest_xattr_name) > xattr:
            out.append(f"{what}: file {facts.largest_xattr_path} has an extended attribute "
                       f"{facts.largest_xattr_name} of {facts.largest_xattr} bytes; {_what(fs)} holds {xattr} bytes "
                       f"of name and value: {_instead(fs, old, 'the file')}")  # fmt: skip
    return out


def content_warnings(source: Layout, target: Layout, content: Mapping[str, ContentFacts | None]) -> list[str]:
    """Converted filesystems whose xattr sizes are not known (a host capture, or copy's prescan) and whose new type
    holds smaller xattrs than the old one: such an xattr stops the restore when it passes (phases/stream_guard.py)."""
    old = {f.id: f for f in source.filesystems}
    out = []
    for fs in target.filesystems:
        facts, was = content.get(fs.id), old[fs.id]
        if facts is None or facts.largest_xattr is not None or was.type == fs.type:
            continue
        new, before = max_xattr_bytes(fs), max_xattr_bytes(was)
        if new < before:
            out.append(f"filesystem {fs.mountpoint} ({fs.id}): xattr sizes are not known (a host capture does not "
                       f"see them, nor does copy before it writes); {_what(fs)} holds {new} bytes of name and "
                       f"value per xattr, {was.type} {before}: the restore reads the stream's xattrs as they pass "
                       "and stops at the first one too large")  # fmt: skip
    return out


def _size(n: int) -> str:
    unit = next((u for u in range(6, 0, -1) if n >= 1024**u), 0)
    return f"{n} bytes" if not unit else f"{n / 1024**unit:.1f} {('KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB')[unit - 1]}"
