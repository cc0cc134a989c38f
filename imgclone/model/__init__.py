"""The data: the storage layout, LVM names, partition types, boot facts, content facts, an archive's manifest, an
alternate's journal (frozen dataclasses with versioned JSON)."""
