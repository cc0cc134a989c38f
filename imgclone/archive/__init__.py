"""The archive: the container (manifest and streams), the tar/zstd stream commands, verify."""
