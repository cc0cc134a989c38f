"""AIX's three phases of a restore or copy (1 restore, 2 customize, 3 finalize), each a table of steps, and the
request and runner that take a restore through them."""
