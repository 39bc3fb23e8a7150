"""Shared fixtures: a real Mosquitto broker per test and an MQTT watcher on it.

Environment defaults for Thespian are set here, before anything imports thespian.
"""

import atexit
import os
import tempfile

os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")
_THESPLOG_DIR = tempfile.mkdtemp(prefix="thesplog-")
os.environ.setdefault("THESPLOG_FILE", os.path.join(_THESPLOG_DIR, "thespian.log"))


def _remove_thesplog_dir_if_empty() -> None:
    try:
        os.rmdir(_THESPLOG_DIR)  # only succeeds when nothing was logged; logs are kept for debugging
    except OSError:
        pass


atexit.register(_remove_thesplog_dir_if_empty)

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# No per-example deadline: on a loaded 2-core machine timing is noise, not a property. In CI the examples
# are derandomised so a run is reproducible; local runs keep exploring new examples.
settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "local")

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.mqtt import MqttWatcher  # noqa: E402


def pytest_report_header(config):
    return [f"thespian log: {os.environ['THESPLOG_FILE']}"]


@pytest.fixture
def broker():
    """A started Mosquitto on a free 127.0.0.1 port; stopped and removed after the test."""
    mosquitto = Mosquitto()
    try:
        mosquitto.start()
        yield mosquitto
    finally:
        mosquitto.cleanup()


@pytest.fixture
def mqtt_watcher(broker):
    """An MqttWatcher subscribed to pioreactor/# on the test's broker."""
    watcher = MqttWatcher(broker.host, broker.port)
    try:
        yield watcher
    finally:
        watcher.close()


@pytest.fixture
def node_factory(tmp_path, broker):
    """Builds real node processes on the test's broker; every one is stopped after the test."""
    from tests.support.node import Node

    nodes = []

    def make(unit="sim01", time_scale=10.0, simulation=None, via=None):
        # `via`: anything with host and port between the node and the broker (a cuttable proxy).
        node = Node(tmp_path / unit, via or broker, unit=unit, time_scale=time_scale, simulation=simulation)
        nodes.append(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.cleanup()
        leftovers = [pid for node in nodes for pid in node.processes()]
        assert not leftovers, f"actor processes left behind by the test: {leftovers}"


@pytest.fixture
def node(node_factory):
    """A started simulated node `sim01` at 10x real time."""
    return node_factory().start()
