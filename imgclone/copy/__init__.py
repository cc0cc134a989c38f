"""imgclone copy (alt_disk_copy): Phase 1 by a streamed capture or by blocks, then the later phases."""
