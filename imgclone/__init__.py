"""imgclone: the Linux counterpart of AIX alt_disk_copy / mksysb."""

__version__ = "0.2.0"
