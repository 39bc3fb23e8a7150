"""Package data: one YAML file per HAT version, read by actors.hardware.description."""
