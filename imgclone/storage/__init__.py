"""A planned layout built on the clone's disks: partitions, LVM, filesystems, mounts."""
