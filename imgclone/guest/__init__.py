"""The clone being worked on: the Guest interface the steps use, its libguestfs implementation (the only user of
guestfs), the session a command's phases share, and the step runner."""
