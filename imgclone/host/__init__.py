"""This host: the one process spawner, target disks and images, per-target locks, the QEMU accelerator."""
