"""What the phases need of a clone being worked on: the Guest interface.

For now the libguestfs appliance itself; the typed Protocol takes its place (issue "Architecture").
"""

from imgclone.guest.appliance import Appliance as Guest

__all__ = ["Guest"]
