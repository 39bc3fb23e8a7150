"""Test support: a real Mosquitto broker on a free loopback port, an MQTT watcher that records
everything it sees, and deadline-based waiting. Tests never sleep a fixed time to wait for something."""

from .broker import Mosquitto, free_port, mosquitto_binary
from .mqtt import Message, MqttWatcher, retained
from .waiting import wait_until

__all__ = ["Message", "Mosquitto", "MqttWatcher", "free_port", "mosquitto_binary", "retained", "wait_until"]
