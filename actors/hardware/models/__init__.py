"""Package data: one YAML file per vessel model, read by actors.hardware.description."""
