"""The node daemon and the `pio` CLI."""
