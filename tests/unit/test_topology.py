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


# --- cluster, leader, jobs and overrides (the leader's deployment keys) -------------------------------

FULL = """\
cluster: lab3
broker: {host: 127.0.0.1, port: 18830}
leader: {unit: leader, address: 127.0.0.1, admin_port: 1899, web_port: 8080}
units:
  sim01: {hardware: sim, admin_port: 1901, time_scale: 10, simulation: {heater_w: 10}}
  sim02: {hardware: sim, admin_port: 1902, time_scale: 10}
  sim03: {hardware: sim, admin_port: 1903}
experiments:
  growth:
    description: two vials at 37 C
    units: [sim01, sim02]
    jobs:
      monitor:
      stirring: {target_rpm: 500}
      od_reading: {interval: 5.0}
      temperature_automation: {automation_name: thermostat, target_temperature: 37}
      dosing_automation: {automation_name: turbidostat, target_biomass: 2.0, exchange_volume_ml: 0.5}
    overrides:
      sim02:
        stirring: {target_rpm: 650}
        dosing_automation: null
        led_intensity: {a: 20}
"""


def test_a_full_file_parses_with_text_values_and_overrides():
    topo = parse(FULL, "t.yaml")
    assert topo.cluster == "lab3"
    assert (topo.leader.unit, topo.leader.admin_port, topo.leader.web_port) == ("leader", 1899, 8080)
    exp = topo.experiments["growth"]
    assert exp.description == "two vials at 37 C"
    # Values are the text `pio run` takes: 2.0 -> "2", 5.0 -> "5", a bare job runs with its defaults.
    assert exp.jobs["dosing_automation"] == {"automation_name": "turbidostat", "target_biomass": "2", "exchange_volume_ml": "0.5"}
    assert exp.jobs["od_reading"] == {"interval": "5"} and exp.jobs["monitor"] == {}
    assert topo.jobs_for("sim01") == exp.jobs
    sim02 = topo.jobs_for("sim02")
    assert sim02["stirring"] == {"target_rpm": "650"}
    assert "dosing_automation" not in sim02  # null: this unit does not run it
    assert sim02["led_intensity"] == {"a": "20"}  # a job the experiment lacks, added for this unit
    assert sim02["temperature_automation"] == exp.jobs["temperature_automation"]
    assert topo.jobs_for("sim03") == {}  # in no experiment: runs nothing


def test_defaults_of_the_new_keys():
    topo = parse("broker: {host: 10.0.0.2}\nunits: {a: {}}\n", "t.yaml")
    assert topo.cluster == "pioreactor"
    # No leader section: a leader named `leader` next to the broker, admin port 1899, dashboard on 8080.
    assert (topo.leader.unit, topo.leader.address, topo.leader.admin_port, topo.leader.web_port) == ("leader", "10.0.0.2", 1899, 8080)
    leader_is_a_unit = parse("leader: {unit: a}\nunits: {a: {address: 10.0.0.7}}\n", "t.yaml")
    assert leader_is_a_unit.leader.address == "10.0.0.7"


def test_the_value_spellings_are_the_text_pio_run_takes():
    topo = parse(
        "units: {a: {}}\nexperiments:\n  e:\n    units: [a]\n    jobs:\n"
        "      stirring: {target_rpm: 500.0, use_rpm: no, duty_cycle: 12.5}\n",
        "t.yaml",
    )
    assert topo.jobs_for("a")["stirring"] == {"target_rpm": "500", "use_rpm": "false", "duty_cycle": "12.5"}


def _units(n: int = 2) -> str:
    return "units:\n" + "".join(f"  sim0{i}: {{admin_port: 190{i}}}\n" for i in range(1, n + 1))


def _exp(body: str) -> str:
    """An experiment `e` of sim01 and sim02 whose body starts on line 7 of the file."""
    return _units() + "experiments:\n  e:\n    units: [sim01, sim02]\n" + body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the cluster name and the leader
        ("cluster: a/b\nunits: {a: {}}\n", ["t.yaml:1", "cluster", "not a usable cluster name", "cluster: lab3"]),
        ("cluster: [x]\nunits: {a: {}}\n", ["t.yaml:1", "expected a cluster name"]),
        ("leader: {colour: red}\nunits: {a: {}}\n", ["t.yaml:1", "leader.colour", "unknown key 'colour'", "web_port"]),
        ("leader: {web_port: http}\nunits: {a: {}}\n", ["t.yaml:1", "leader.web_port", "not a port number"]),
        ("leader: {admin_port: 80}\nunits: {a: {}}\n", ["leader.admin_port", "use a port from 1024"]),
        ("leader: {unit: 'my leader'}\nunits: {a: {}}\n", ["leader.unit", "not a usable unit name"]),
        ("leader: {unit: a, address: 10.0.0.9}\nunits: {a: {}}\n", ["t.yaml:1", "leader.address", "not the address of unit a", "remove leader.address"]),
        # unit names become topic levels
        ("units:\n  a/b: {}\n", ["t.yaml:2", "units.a/b", "not a usable unit name", "sim01"]),
        # duplicated units
        ("units: {a: {}}\nexperiments:\n  e: {units: [a, a]}\n", ["t.yaml:3", "experiments.e.units", "a is listed twice"]),
        ("units: {a: {}}\nexperiments:\n  e: {units: [a]}\n  f: {units: [a]}\n", ["t.yaml:4", "a is already in e", "one experiment at a time"]),
        # port clashes: admin ports, the broker, the leader's ports, on the same address only
        ("broker: {port: 1901}\nunits:\n  a: {admin_port: 1901}\n", ["t.yaml:3", "units.a.admin_port", "also used by the broker"]),
        ("leader: {web_port: 1901}\nunits:\n  a: {admin_port: 1901}\n", ["t.yaml:3", "also used by the leader (leader.web_port)"]),
        ("units:\n  a: {admin_port: 1899}\n", ["t.yaml:2", "also used by the leader (leader.admin_port, by default)"]),
        ("leader: {admin_port: 1950, web_port: 1950}\nunits: {a: {}}\n", ["t.yaml:1", "leader.web_port", "also used by the leader (leader.admin_port)"]),
        ("units:\n  a: {admin_port: 1901}\n  b: {admin_port: 1901, address: localhost}\n", ["t.yaml:3", "also used by a"]),
        # jobs
        (_exp("    jobs: {stiring: {}}\n"), ["t.yaml:7", "experiments.e.jobs.stiring", "unknown job 'stiring'", "stirring", "od_reading"]),
        (_exp("    jobs: {stirring: [500]}\n"), ["t.yaml:7", "expected the job's settings as a mapping"]),
        (_exp("    jobs:\n      stirring: {speed: 3}\n"), ["t.yaml:8", "stirring.speed", "unknown setting 'speed' of stirring", "target_rpm"]),
        (_exp("    jobs:\n      stirring: {measured_rpm: 3}\n"), ["t.yaml:8", "measured_rpm is published by stirring, not set", "target_rpm"]),
        (_exp("    jobs:\n      stirring: {target_rpm: fast}\n"), ["t.yaml:8", "stirring.target_rpm", "'fast' is not a number", "from 0 to 5000"]),
        (_exp("    jobs:\n      stirring: {target_rpm: 9000}\n"), ["t.yaml:8", "above the maximum", "from 0 to 5000 RPM"]),
        (_exp("    jobs:\n      stirring: {use_rpm: maybe}\n"), ["t.yaml:8", "not a boolean", "true or false"]),
        (_exp("    jobs:\n      stirring: {target_rpm: }\n"), ["t.yaml:8", "no value", "remove the line"]),
        (_exp("    jobs:\n      od_reading: {interval: 0.1}\n"), ["t.yaml:8", "od_reading.interval", "below the minimum", "from 1 to 3600 s"]),
        # automations: the name is required and known; the parameters follow the automation chosen
        (_exp("    jobs:\n      dosing_automation: {}\n"), ["t.yaml:8", "needs automation_name", "automation_name: turbidostat", "chemostat"]),
        (_exp("    jobs:\n      temperature_automation: {automation_name: thermostatt}\n"),
         ["t.yaml:8", "automation_name", "unknown temperature automation 'thermostatt'", "only_record_temperature, thermostat"]),
        (_exp("    jobs:\n      temperature_automation: {automation_name: thermostat}\n"), ["t.yaml:8", "thermostat needs target_temperature", "target_temperature: <value>"]),
        (_exp("    jobs:\n      temperature_automation: {automation_name: thermostat, target_temperature: 37, target_rpm: 3}\n"),
         ["unknown setting 'target_rpm' of temperature_automation", "target_temperature"]),
        (_exp("    jobs:\n      dosing_automation: {automation_name: chemostat, exchange_volume_ml: lots}\n"), ["t.yaml:8", "exchange_volume_ml", "'lots' is not a number"]),
        # overrides
        (_exp("    overrides:\n      sim03: {stirring: {}}\n"), ["t.yaml:8", "overrides.sim03", "unknown unit 'sim03'", "sim01, sim02"]),
        (_units(3) + "experiments:\n  e:\n    units: [sim01]\n    overrides:\n      sim02: {}\n",
         ["t.yaml:9", "sim02 is not in experiment e", "add it to experiments.e.units"]),
        (_exp("    jobs: {stirring: }\n    overrides:\n      sim02:\n        stirring: {target_rpm: -5}\n"),
         ["t.yaml:10", "overrides.sim02.stirring.target_rpm", "below the minimum"]),
        (_exp("    jobs: {stirring: }\n    overrides:\n      sim02: {od_reading: null}\n"), ["t.yaml:9", "e does not run od_reading", "stirring", "remove this line"]),
        (_exp("    overrides:\n      sim02: {stiring: {}}\n"), ["t.yaml:8", "unknown job 'stiring'"]),
        (_exp("    overrides:\n      sim02: [stirring]\n"), ["t.yaml:8", "expected a mapping"]),
        (_exp("    jobs:\n      temperature_automation: {automation_name: thermostat, target_temperature: 37}\n"
              "    overrides:\n      sim02:\n        temperature_automation: {automation_name: only_record_temperature}\n"),
         ["t.yaml:8", "unknown setting 'target_temperature' of temperature_automation", "(for sim02, with its override)"]),
        (_exp("    jobs: {bogus: }\n"), ["experiments.e.jobs.bogus"]),
        ("units: {a: {}}\nexperiments:\n  a/b: {units: [a]}\n", ["t.yaml:3", "not a usable experiment name"]),
        ("units: {a: {}}\nexperiments:\n  _unassigned: {units: [a]}\n", ["t.yaml:3", "not a usable experiment name", "starting with a letter or digit"]),
    ],
)
def test_invalid_deployment_keys_name_file_line_and_fix(text, expected):
    with pytest.raises(TopologyError) as e:
        parse(text, "t.yaml")
    message = str(e.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_units_on_different_machines_may_share_an_admin_port():
    topo = parse("units:\n  a: {address: 10.0.0.1}\n  b: {address: 10.0.0.2}\n", "t.yaml")
    assert topo.units["a"].admin_port == topo.units["b"].admin_port == 1900


def test_deployment_errors_come_all_at_once_in_file_order():
    text = _exp("    jobs:\n      stirring: {target_rpm: 9000}\n      stiring: {}\n      od_reading: {interval: x}\n")
    with pytest.raises(TopologyError) as e:
        parse(text, "t.yaml")
    lines = [int(err.split(":")[1]) for err in e.value.errors]
    assert lines == [8, 9, 10]


def test_a_setting_wrong_for_every_unit_is_reported_once():
    text = _exp("    jobs:\n      stirring: {target_rpm: 9000}\n    overrides:\n      sim01: {stirring: {use_rpm: true}}\n      sim02: {stirring: {duty_cycle: 10}}\n")
    with pytest.raises(TopologyError) as e:
        parse(text, "t.yaml")
    assert len(e.value.errors) == 1 and "t.yaml:8" in e.value.errors[0]


def test_check_jobs_false_skips_the_job_declarations():
    topo = parse(_exp("    jobs: {anything: {whatever: 1}}\n"), "t.yaml", check_jobs=False)
    assert topo.jobs_for("sim01") == {"anything": {"whatever": "1"}}


def test_plugin_jobs_and_automations_are_known_from_the_plugin_dir(tmp_path):
    import shutil
    from pathlib import Path

    plugins = Path(__file__).resolve().parents[1] / "plugins"
    shutil.copy(plugins / "doubling_time.py", tmp_path / "doubling_time.py")
    (tmp_path / "automations").mkdir()
    shutil.copy(plugins / "automations" / "pulse_feed.py", tmp_path / "automations" / "pulse_feed.py")
    text = _exp(
        "    jobs:\n      doubling_time: {log_every_minutes: 5}\n"
        "      dosing_automation: {automation_name: pulse_feed, exchange_volume_ml: 0.5}\n"
    )
    with pytest.raises(TopologyError, match="unknown job 'doubling_time'"):
        parse(text, "t.yaml")
    topo = parse(text, "t.yaml", plugin_dir=str(tmp_path))
    assert topo.jobs_for("sim02")["doubling_time"] == {"log_every_minutes": "5"}
    with pytest.raises(TopologyError, match="log_every_minutes: 0.0 is below the minimum"):
        parse(text.replace("log_every_minutes: 5", "log_every_minutes: 0"), "t.yaml", plugin_dir=str(tmp_path))


def test_the_repository_topology_is_the_demo_cluster():
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    topo = load(os.path.join(root, "topology.yaml"), check_jobs=True)
    sims = [u for u in topo.units.values() if u.hardware == "sim"]
    assert len(sims) >= 4 and len({u.admin_port for u in sims}) == len(sims)
    assert all(dict(u.simulation).get("heater_w") == 10 for u in sims)  # enough to hold 37 C
    (experiment,) = topo.experiments.values()
    assert set(experiment.units) == {u.name for u in sims}
    wanted = {"monitor", "stirring", "od_reading", "growth_rate_calculating", "temperature_automation", "dosing_automation"}
    assert wanted <= set(experiment.jobs)
    assert experiment.jobs["temperature_automation"] == {"automation_name": "thermostat", "target_temperature": "37"}
    assert experiment.jobs["dosing_automation"]["automation_name"] == "turbidostat"
    assert experiment.overrides  # the file shows the override syntax
