"""Phase 1's capture (mksysb): the running system or an offline image into an archive."""
