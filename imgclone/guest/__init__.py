"""The only user of libguestfs: the appliance handle and the session one command's phases share."""
