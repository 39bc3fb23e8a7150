"""topology.yaml: what a node reads, and errors that name the file, the line and a fix."""

from __future__ import annotations

import pytest

from actors.topology import TopologyError, load, parse

GOOD = """\
broker: {host: 127.0.0.1, port: 1883}
units:
  sim01: {hardware: sim, admin_port: 1901, time_scale: 1}
  sim02: {hardware: "1.2", admin_port: 1902}
experiments:
  demo: {units: [sim01]}
"""


def test_the_issue_example_parses():
    topo = parse(GOOD)
    assert topo.broker.port == 1883
    assert topo.units["sim01"].admin_port == 1901 and topo.units["sim01"].time_scale == 1.0
    assert topo.units["sim02"].hardware == "1.2"
    assert topo.experiment_of("sim01") == "demo"
    assert topo.experiment_of("sim02") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("units:\n  sim01: {hardwear: sim}\n", ["t.yaml:2", "units.sim01.hardwear", "unknown key 'hardwear'", "hardware"]),
        ("units:\n  sim01: {admin_port: lots}\n", ["t.yaml:2", "admin_port", "not a port number"]),
        ("units:\n  sim01: {admin_port: 80}\n", ["use a port from 1024"]),
        ("units:\n  sim01: {time_scale: 0}\n", ["must be above 0"]),
        ("units:\n  sim01: {hardware: quantum}\n", ["unknown hardware 'quantum'", "sim"]),
        ("units:\n  a: {admin_port: 1901}\n  b: {admin_port: 1901}\n", ["also used by a", "its own admin port"]),
        ("units:\n  a: {}\n  a: {}\n", ["t.yaml:3", "appears twice"]),
        ("units: {a: {}}\nexperiments:\n  e: {units: [b]}\n", ["t.yaml:3", "unknown unit 'b'"]),
        ("broker: {port: 99999}\nunits: {a: {}}\n", ["not a TCP port"]),
        ("broker: [1, 2]\nunits: {a: {}}\n", ["t.yaml:1", "expected a mapping"]),
        ("units: [a\n", ["t.yaml:", "not valid YAML"]),
        ("", ["empty"]),
        ("brokers: {}\nunits: {a: {}}\n", ["unknown key 'brokers'", "broker"]),
    ],
)
def test_invalid_files_name_file_line_and_fix(text, expected):
    with pytest.raises(TopologyError) as e:
        parse(text, "t.yaml")
    message = str(e.value)
    for fragment in expected:
        assert fragment in message


def test_every_error_is_reported_at_once():
    with pytest.raises(TopologyError) as e:
        parse("units:\n  a: {hardwear: sim, admin_port: x}\n", "t.yaml")
    assert len(e.value.errors) == 2


def test_a_missing_file(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        load(str(tmp_path / "nope.yaml"))


def test_the_repository_topology_is_valid():
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    topo = load(os.path.join(root, "topology.yaml"))
    assert topo.units
