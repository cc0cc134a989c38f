"""The archive container: one uncompressed outer tar, written and read as a stream.

Members, in order (docs/archive-format.md is the specification):

    manifest.json                     format, layout, boot facts, excludes, streams
    streams/<fs-id>.tar.zst.00000     a GNU tar (pax) stream of one filesystem, zstd,
    streams/<fs-id>.tar.zst.00001     cut into parts of at most PART_SIZE bytes
    …
    manifest.json                     only when the output was not seekable (stdout)

A tar header needs the member's size before its data, and a stream's size is known only
at its end; cutting it into parts keeps memory flat (one part) with no temp copy. The
first manifest is written with room reserved (JSON padded with spaces) and rewritten in
place with the streams' digests when the output is a file; on a pipe the final manifest
is appended instead, and, as with tar extraction, the last one wins.

Every manifest carries its own sha256 (`manifest_sha256`, over the member's exact bytes
with that value zeroed), so a changed byte in it is found even where the JSON still parses
(a size, a UUID). Readers check it, and check each stream's parts, size and sha256 against
the manifest as they go: a damaged archive is an ArchiveError naming the manifest or the
stream, never a silent success.

This module is the format: member names, part size and tar blocks, the manifest, its bytes and its digest.
writer.py writes archives (ArchiveWriter), reader.py reads them (ArchiveReader, read_manifest, is_archive).
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import time
from typing import Any

from imgclone.errors import ArchiveError
from imgclone.model.manifest import FORMAT, FORMAT_VERSION, MANIFEST

STREAM_DIR = "streams"
PART_SIZE = 32 * 1024 * 1024  # writer.py and reader.py read it here when they run: tests make it small
BLOCK = 512
RECORD = 20 * BLOCK
DIGEST = "manifest_sha256"
_ZEROS = b"0" * 64
_DIGEST_FIELD = re.compile(rb'\n  "manifest_sha256": "([0-9a-f]{64})"')  # top level: json.dumps(indent=2)
DIGEST_SINCE = (0, 2, 0)  # imgclone versions from this one write manifest_sha256; older archives have none


def stream_member(fs_id: str) -> str:
    """Base member name of a filesystem's stream; parts append .NNNNN."""
    return f"{STREAM_DIR}/{fs_id}.tar.zst"


def tar_header(name: str, size: int) -> bytes:
    """The GNU tar header of a regular member of size bytes (its length does not depend on the size)."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = 0o644
    ti.mtime = int(time.time())
    ti.type = tarfile.REGTYPE
    return ti.tobuf(format=tarfile.GNU_FORMAT)


def tar_pad(n: int) -> bytes:
    """The zeros after n bytes of member data, up to the end of its tar block."""
    return b"\0" * (-n % BLOCK)


def manifest_bytes(manifest: dict[str, Any], room: int = 0) -> bytes:
    """The manifest member's data: sorted, indented JSON padded with spaces to room, holding its own sha256."""
    text = json.dumps(dict(manifest, **{DIGEST: _ZEROS.decode()}), indent=2, sort_keys=True).encode()
    data = text + b" " * (room - len(text))
    digest = hashlib.sha256(data).hexdigest().encode()
    return _DIGEST_FIELD.sub(lambda m: m.group(0).replace(_ZEROS, digest), data, count=1)


def check_manifest(m: Any, where: str) -> dict[str, Any]:
    """Validate the manifest's format and version; return it."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArchiveError(f"{where}: not an imgclone archive (its {MANIFEST} has no imgclone format)")
    v = m.get("format_version")
    if not isinstance(v, int) or v > FORMAT_VERSION:
        raise ArchiveError(
            f"{where}: archive format version {v} is newer than this imgclone reads ({FORMAT_VERSION})",
            "upgrade imgclone",
        )
    return m


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """The manifest in a member's bytes, checked: JSON, its digest (required since DIGEST_SINCE), format, version."""
    try:
        m = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{where}: {MANIFEST} is damaged ({e})") from e
    if isinstance(m, dict) and DIGEST in m:
        check_digest(data, m[DIGEST], where)
    checked = check_manifest(m, where)
    if DIGEST not in checked and not _older_than_digests(checked.get("imgclone_version")):
        raise ArchiveError(f"{where}: {MANIFEST} is damaged (its {DIGEST} is missing)")
    return checked


def check_digest(data: bytes, recorded: Any, where: str) -> None:
    """The manifest member's bytes against the sha256 it records of itself."""
    found = _DIGEST_FIELD.findall(data)
    ok = isinstance(recorded, str) and found == [recorded.encode()]
    if ok:
        zeroed = _DIGEST_FIELD.sub(lambda m: m.group(0).replace(m.group(1), _ZEROS), data, count=1)
        ok = hashlib.sha256(zeroed).hexdigest() == recorded
    if not ok:
        raise ArchiveError(f"{where}: {MANIFEST} is damaged (its sha256 does not match)")


def _older_than_digests(version: Any) -> bool:
    """Whether an archive made by this imgclone version has no manifest digest (made before they existed)."""
    try:
        return tuple(int(x) for x in str(version).split(".")[:3]) < DIGEST_SINCE
    except ValueError:
        return False  # unreadable: a damaged manifest, not an old one
