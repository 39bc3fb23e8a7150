"""The deployer's pure core: topology -> per-unit desired state, payloads, and the plan `pios apply` shows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.topology import parse
from leader.deployer import (
    ADD_UNIT,
    EXPERIMENT,
    REMOVE_UNIT,
    SET,
    START,
    STOP,
    UNASSIGNED,
    UNSET,
    Change,
    DesiredState,
    DesiredStateError,
    canonical_jobs,
    desired_states,
    generation_of,
    plan,
    render,
    to_json,
)

TOPOLOGY = """\
units:
  sim01: {admin_port: 1901}
  sim02: {admin_port: 1902}
  sim03: {admin_port: 1903}
experiments:
  demo:
    units: [sim01, sim02]
    jobs:
      monitor:
      stirring: {target_rpm: 500.0}
      temperature_automation: {automation_name: thermostat, target_temperature: 37}
      dosing_automation: {automation_name: turbidostat, target_biomass: 2.0, exchange_volume_ml: 0.5}
    overrides:
      sim02:
        stirring: {target_rpm: 650, use_rpm: yes}
        dosing_automation: null
"""


def test_desired_states_follow_the_experiment_and_the_overrides():
    states = desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2025-01-01T00:00:00.000Z")
    assert set(states) == {"sim01", "sim02", "sim03"}
    sim01, sim02, sim03 = states["sim01"], states["sim02"], states["sim03"]
    assert sim01.experiment == "demo"
    assert sim01.jobs == {
        "monitor": {},
        "stirring": {"target_rpm": "500"},
        "temperature_automation": {"automation_name": "thermostat", "target_temperature": "37"},
        "dosing_automation": {"automation_name": "turbidostat", "target_biomass": "2", "exchange_volume_ml": "0.5"},
    }
    # The override: merged over the experiment's settings, null leaves the job out on that unit.
    assert sim02.jobs["stirring"] == {"target_rpm": "650", "use_rpm": "true"}
    assert "dosing_automation" not in sim02.jobs and "temperature_automation" in sim02.jobs
    # In no experiment: an empty desired state, so whatever the leader started there stops.
    assert sim03.experiment == UNASSIGNED and sim03.jobs == {}
    assert sim01.generation != sim02.generation
    assert {s.issued_at for s in states.values()} == {"2025-01-01T00:00:00.000Z"}


def test_every_value_is_the_text_pio_run_takes():
    states = desired_states(parse(TOPOLOGY, "t.yaml"))
    for state in states.values():
        for settings in state.jobs.values():
            assert all(isinstance(v, str) for v in settings.values())


def test_the_payload_is_the_contract_and_parses_back():
    state = desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2025-01-01T00:00:00.000Z")["sim02"]
    body = json.loads(state.payload())
    assert set(body) == {"generation", "experiment", "jobs", "issued_at"}
    assert len(body["generation"]) == 16 and int(body["generation"], 16) >= 0
    assert body["generation"] == generation_of(body["jobs"])
    assert body["experiment"] == "demo" and body["issued_at"] == "2025-01-01T00:00:00.000Z"
    assert DesiredState.parse(state.payload()) == state
    assert DesiredState.parse(state.payload().encode()) == state


@pytest.mark.parametrize("payload", [None, "", b"", "  \n"])
def test_an_empty_payload_is_no_desired_state(payload):
    assert DesiredState.parse(payload) is None


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"experiment": "e", "jobs": {}}', "generation"),
        ('{"generation": "g", "experiment": 3, "jobs": {}}', "experiment must be a name"),
        ('{"generation": "g", "experiment": null, "jobs": {}}', "experiment must be a name"),
        ('{"generation": "g", "experiment": "e", "jobs": []}', "jobs must be an object"),
        ('{"generation": "g", "experiment": "e", "jobs": {"stirring": 3}}', "jobs.stirring must be an object"),
        ('{"generation": "g", "experiment": "e", "jobs": {"stirring": {"target_rpm": [1]}}}', "jobs.stirring.target_rpm must be a text value"),
        ('{"generation": "g", "experiment": "e", "jobs": {}, "issued_at": 5}', "issued_at"),
    ],
)
def test_a_bad_payload_is_refused_saying_where(payload, fragment):
    with pytest.raises(DesiredStateError, match=fragment):
        DesiredState.parse(payload)


def test_a_hand_written_payload_with_numbers_reads_as_text():
    state = DesiredState.parse('{"generation": "g1", "experiment": "e", "jobs": {"stirring": {"target_rpm": 500.0, "use_rpm": true}, "monitor": null}}')
    assert state is not None and state.jobs == {"stirring": {"target_rpm": "500", "use_rpm": "true"}, "monitor": {}}


def test_the_generation_is_stable_and_follows_the_content():
    a = desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2025-01-01T00:00:00.000Z")
    b = desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2026-06-01T12:00:00.000Z")
    assert {u: s.generation for u, s in a.items()} == {u: s.generation for u, s in b.items()}  # time is not content
    # Key order in the file does not matter; a value does.
    reordered = TOPOLOGY.replace("automation_name: thermostat, target_temperature: 37", "target_temperature: 37, automation_name: thermostat")
    assert desired_states(parse(reordered, "t.yaml"))["sim01"].generation == a["sim01"].generation
    changed = TOPOLOGY.replace("target_temperature: 37", "target_temperature: 36")
    assert desired_states(parse(changed, "t.yaml"))["sim01"].generation != a["sim01"].generation
    # Writing 37 or 37.0 is the same setting.
    spelled = TOPOLOGY.replace("target_temperature: 37", "target_temperature: 37.0")
    assert desired_states(parse(spelled, "t.yaml"))["sim01"].generation == a["sim01"].generation


def test_the_generation_is_the_sha256_of_the_canonical_jobs():
    import hashlib

    jobs = {"stirring": {"target_rpm": "500"}, "monitor": {}}
    assert canonical_jobs(jobs) == '{"monitor":{},"stirring":{"target_rpm":"500"}}'
    assert generation_of(jobs) == hashlib.sha256(canonical_jobs(jobs).encode()).hexdigest()[:16]


# --- plan and render ---------------------------------------------------------------------------------


def _state(jobs, experiment="demo"):
    return DesiredState.of(experiment, jobs)


def test_a_fresh_cluster_starts_every_job():
    new = desired_states(parse(TOPOLOGY, "t.yaml"))
    changes = plan({unit: None for unit in new}, new)
    starts = {(c.unit, c.job) for c in changes if c.kind == START}
    assert starts == {(u, j) for u, s in new.items() for j in s.jobs}
    assert [c.unit for c in changes if c.kind == ADD_UNIT] == ["sim01", "sim02", "sim03"]
    stirring = next(c for c in changes if c.kind == START and c.unit == "sim02" and c.job == "stirring")
    assert dict(stirring.settings) == {"target_rpm": "650", "use_rpm": "true"}
    text = render(changes)
    assert "sim02:\n  + unit added (experiment demo)" in text
    assert "  + start stirring  target_rpm=650 use_rpm=true" in text
    assert "sim03:\n  + unit added (no experiment)" in text
    assert text.endswith(f"{len(changes)} changes on 3 units")


def test_applying_the_same_file_twice_changes_nothing():
    new = desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2025-01-01T00:00:00.000Z")
    held = {u: DesiredState.parse(s.payload()) for u, s in desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2024-01-01T00:00:00.000Z").items()}
    assert plan(held, new) == []
    assert render(plan(held, new)) == "no changes"


def test_one_setting_on_one_unit_is_one_change():
    old = desired_states(parse(TOPOLOGY, "t.yaml"))
    new = desired_states(parse(TOPOLOGY.replace("target_rpm: 650", "target_rpm: 700"), "t.yaml"))
    assert plan(old, new) == [Change(unit="sim02", kind=SET, job="stirring", setting="target_rpm", old="650", new="700")]
    assert render(plan(old, new)) == "sim02:\n  ~ stirring.target_rpm: 650 -> 700\n1 change on 1 unit"


def test_removing_a_job_stops_it_on_exactly_the_units_that_ran_it():
    old = desired_states(parse(TOPOLOGY, "t.yaml"))
    text = TOPOLOGY.replace("      dosing_automation: {automation_name: turbidostat, target_biomass: 2.0, exchange_volume_ml: 0.5}\n", "")
    text = text.replace("        dosing_automation: null\n", "")
    new = desired_states(parse(text, "t.yaml"))
    assert plan(old, new) == [Change(unit="sim01", kind=STOP, job="dosing_automation")]
    assert "  - stop dosing_automation" in render(plan(old, new))


def test_settings_given_and_no_longer_given():
    old = {"u": _state({"stirring": {"target_rpm": "500"}})}
    new = {"u": _state({"stirring": {"duty_cycle": "30"}})}
    changes = plan(old, new)
    assert changes == [
        Change(unit="u", kind=SET, job="stirring", setting="duty_cycle", old=None, new="30"),
        Change(unit="u", kind=UNSET, job="stirring", setting="target_rpm", old="500"),
    ]
    text = render(changes)
    assert "~ stirring.duty_cycle: (default) -> 30" in text and "~ stirring.target_rpm: 500 -> (no longer set)" in text


def test_a_unit_moving_experiment_and_a_unit_leaving_the_topology():
    old = {"a": _state({"monitor": {}}, "e1"), "gone": _state({"stirring": {}})}
    new = {"a": _state({"monitor": {}}, "e2")}
    changes = plan(old, new)
    assert changes == [Change(unit="a", kind=EXPERIMENT, old="e1", new="e2"), Change(unit="gone", kind=REMOVE_UNIT, old="demo")]
    text = render(changes)
    assert "~ experiment: experiment e1 -> experiment e2" in text and "gone:\n  - unit removed from the topology" in text


def test_the_payloads_are_what_the_node_accepts():
    from actors.reconcile import parse_desired

    for state in desired_states(parse(TOPOLOGY, "t.yaml"), issued_at="2025-01-01T00:00:00.000Z").values():
        held = parse_desired(state.payload())
        assert held is not None and (held.generation, held.experiment, held.jobs) == (state.generation, state.experiment, state.jobs)


def test_the_plan_as_data():
    changes = plan({"u": None}, {"u": _state({"stirring": {"target_rpm": "500"}})})
    assert to_json(changes) == [
        {"unit": "u", "kind": ADD_UNIT, "new": "demo"},
        {"unit": "u", "kind": START, "job": "stirring", "settings": {"target_rpm": "500"}},
    ]


# --- properties ---------------------------------------------------------------------------------------

_names = st.sampled_from(["stirring", "od_reading", "monitor", "dosing_automation", "led_intensity"])
_settings = st.dictionaries(st.sampled_from(["a", "b", "target_rpm", "interval"]), st.sampled_from(["0", "1", "2.5", "true", "x"]), max_size=3)
_jobs = st.dictionaries(_names, _settings, max_size=4)
_state_st = st.builds(DesiredState.of, st.sampled_from(["e1", "e2", UNASSIGNED]), _jobs)
_cluster = st.dictionaries(st.sampled_from(["u1", "u2", "u3"]), _state_st, max_size=3)
_held = st.dictionaries(st.sampled_from(["u1", "u2", "u3", "u4"]), st.one_of(st.none(), _state_st), max_size=4)


@given(_cluster)
def test_plan_of_a_state_against_itself_is_empty(states):
    assert plan(states, states) == []
    assert render(plan(states, states)) == "no changes"


def _apply(held: dict, changes: list[Change]) -> dict:
    """What a cluster holds after carrying out ``changes``: the plan must say everything that differs."""
    out = {u: (None if s is None else (s.experiment, {j: dict(v) for j, v in s.jobs.items()})) for u, s in held.items()}
    for c in changes:
        if c.kind == REMOVE_UNIT:
            out.pop(c.unit)
            continue
        if c.kind == ADD_UNIT:
            out[c.unit] = (c.new, {})
            continue
        experiment, jobs = out[c.unit]
        if c.kind == EXPERIMENT:
            out[c.unit] = (c.new, jobs)
        elif c.kind == START:
            jobs[c.job] = dict(c.settings)
        elif c.kind == STOP:
            del jobs[c.job]
        elif c.kind == SET:
            assert jobs[c.job].get(c.setting) == c.old
            jobs[c.job][c.setting] = c.new
        elif c.kind == UNSET:
            assert jobs[c.job].pop(c.setting) == c.old
    return {u: v for u, v in out.items() if v is not None}


@given(_held, _cluster)
def test_carrying_out_the_plan_gives_the_new_state(held, new):
    changes = plan(held, new)
    assert _apply(held, changes) == {u: (s.experiment, s.jobs) for u, s in new.items()}
    assert (changes == []) == (render(changes) == "no changes")
    assert [c.unit for c in changes] == sorted(c.unit for c in changes)


@given(_state_st)
def test_a_payload_round_trips_and_the_node_reads_it(state):
    from actors.reconcile import parse_desired

    assert DesiredState.parse(state.payload()) == state
    held = parse_desired(state.payload())
    assert held is not None and (held.experiment, held.jobs, held.generation) == (state.experiment, state.jobs, state.generation)


@given(_jobs, _jobs)
def test_the_generation_differs_when_the_jobs_do(a, b):
    assert (generation_of(a) == generation_of(b)) == (a == b)
