"""Reading a system's storage layout and boot facts: of this host, or of an image through libguestfs."""
