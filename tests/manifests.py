"""Manifest documents for tests that write archives by hand: the skeleton a capture writes first, as JSON."""

from __future__ import annotations

from typing import Any

from imgclone.model.layout import Layout
from imgclone.model.manifest import Manifest, Source


def manifest_doc(**fields: Any) -> dict[str, Any]:
    """A first manifest (no streams, not complete) with `fields` put over it, as the container writes it."""
    doc = Manifest(Layout(), Source("test"), None).to_dict()
    for key in ("layout", "source", "boot", "excludes", "inodes", "prescan", "read_errors"):
        doc.pop(key, None)  # as the old skeleton: only what the test gives
    doc.update(fields)
    return doc


# a stream entry's fields a test leaves out (planning reads only fs, files and content)
STREAM_DEFAULTS = {"mountpoint": "/", "member": "streams/x.tar.zst", "parts": 1, "bytes": 0, "sha256": "", "files": 0,
                   "data_bytes": 0}  # fmt: skip


def manifest_of(doc: dict[str, Any]) -> Manifest:
    """A manifest from a partial document: an empty layout, and each stream's missing fields filled in."""
    streams = [{**STREAM_DEFAULTS, **s} for s in doc.get("streams", [])]
    return Manifest.from_dict({"layout": Layout().to_dict(), **doc, "streams": streams})
