"""Dosing automations as pure parts: exchange planning (:mod:`.subdosing`), decisions (:mod:`.policies`).

The dosing actor wires them to pumps, readings and the clock; nothing in this package does I/O.
"""
