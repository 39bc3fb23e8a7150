"""The framework every node runs: messages, the job base, the supervisor, the MQTT bridge, the clock,
and the measurement and control jobs."""

__version__ = "0.1.0"
