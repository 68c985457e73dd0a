"""The interface: the `dripd` command, its tables, init, the demo, export."""
