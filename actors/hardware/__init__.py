"""Driver actors that own hardware, their backends, and the simulated vessel."""
