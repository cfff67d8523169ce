"""A local network on this machine: `mycelium up` and the commands that act on it."""
