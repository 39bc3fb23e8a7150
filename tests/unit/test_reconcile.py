"""The reconcile planner and the leader's payloads: what a node does with its desired state."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.reconcile import (
    Command,
    CommandError,
    Desired,
    DesiredError,
    Running,
    Set,
    Start,
    Stop,
    in_sync,
    parse_command,
    parse_desired,
    plan,
    restarts,
    same_value,
)


def desired(jobs: dict[str, dict[str, str]], experiment: str = "exp1", generation: str = "g1") -> Desired:
    return Desired(generation=generation, experiment=experiment, jobs=jobs)


def run(settings: dict[str, str], settable: set[str] = frozenset(), state: str = "ready", experiment: str = "exp1", **kw) -> Running:
    return Running(state=state, experiment=experiment, settings=settings, settable=frozenset(settable), **kw)


# --- parsing the desired state -----------------------------------------------------------------------


def test_a_desired_state_payload_is_parsed_with_text_settings():
    payload = json.dumps(
        {"generation": "abc123", "experiment": "trial", "jobs": {"stirring": {"target_rpm": "500"}, "od_reading": {}}, "issued_at": "2024-01-01T00:00:00.000Z"}
    )
    d = parse_desired(payload)
    assert d == Desired(generation="abc123", experiment="trial", jobs={"stirring": {"target_rpm": "500"}, "od_reading": {}}, issued_at="2024-01-01T00:00:00.000Z")


def test_an_empty_payload_means_no_desired_state():
    assert parse_desired("") is None
    assert parse_desired(b"  ") is None


def test_plain_json_scalars_are_taken_as_their_text():
    d = parse_desired(json.dumps({"generation": "g", "experiment": "e", "jobs": {"stirring": {"target_rpm": 500, "use_rpm": False}}}))
    assert d is not None and d.jobs["stirring"] == {"target_rpm": "500", "use_rpm": "false"}


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"experiment": "e", "jobs": {}}), "generation"),
        (json.dumps({"generation": "g", "jobs": {}}), "experiment"),
        (json.dumps({"generation": "g", "experiment": "a/b", "jobs": {}}), "not a valid name"),
        (json.dumps({"generation": "g", "experiment": "e"}), "'jobs'"),
        (json.dumps({"generation": "g", "experiment": "e", "jobs": {"stirring": [1]}}), "settings must be an object"),
        (json.dumps({"generation": "g", "experiment": "e", "jobs": {"stirring": {"target_rpm": {"a": 1}}}}), "send the value as text"),
        (json.dumps({"generation": "g", "experiment": "e", "jobs": {"a+b": {}}}), "not a valid name"),
        (json.dumps({"generation": "g", "experiment": "e", "jobs": {}, "extra": 1}), "unknown field"),
    ],
)
def test_malformed_desired_states_are_refused_with_one_line(payload, reason):
    with pytest.raises(DesiredError) as e:
        parse_desired(payload)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_same_instruction_ignores_issued_at():
    a = Desired(generation="g", experiment="e", jobs={"stirring": {}}, issued_at="t1")
    assert a.same_as(Desired(generation="g", experiment="e", jobs={"stirring": {}}, issued_at="t2"))
    assert not a.same_as(Desired(generation="g", experiment="other", jobs={"stirring": {}}))
    assert not a.same_as(None)


# --- planning ----------------------------------------------------------------------------------------


def test_starts_what_is_desired_and_not_running():
    assert plan(desired({"stirring": {"target_rpm": "500"}, "od_reading": {}}), {}) == [
        Start("od_reading", {}),
        Start("stirring", {"target_rpm": "500"}),
    ]


def test_a_lost_job_is_started_again():
    actual = {"stirring": run({"target_rpm": "500"}, state="lost", managed=True)}
    assert plan(desired({"stirring": {"target_rpm": "500"}}), actual) == [Start("stirring", {"target_rpm": "500"})]


def test_a_changed_settable_setting_is_set_in_place_never_restarted():
    actual = {"stirring": run({"target_rpm": "500.0", "use_rpm": "true"}, settable={"target_rpm", "duty_cycle"}, managed=True)}
    actions = plan(desired({"stirring": {"target_rpm": "700", "use_rpm": "true"}}), actual)
    assert actions == [Set("stirring", "target_rpm", "700")]
    assert restarts(actions) == set()


def test_a_changed_startup_option_restarts_the_job_with_the_desired_options():
    actual = {"dosing_automation": run({"automation_name": "chemostat", "volume": "1.0"}, settable={"volume"}, managed=True)}
    want = {"automation_name": "turbidostat", "volume": "1.0"}
    actions = plan(desired({"dosing_automation": want}), actual)
    assert actions == [Stop("dosing_automation"), Start("dosing_automation", want)]
    assert restarts(actions) == {"dosing_automation"}


def test_a_job_in_another_experiment_is_restarted_in_the_desired_one():
    actual = {"stirring": run({}, experiment="old", managed=True)}
    assert plan(desired({"stirring": {}}, experiment="new"), actual) == [Stop("stirring"), Start("stirring", {})]


def test_equal_values_in_other_spellings_change_nothing():
    actual = {"x": run({"a": "500.0", "b": "True", "c": '{"k": [1, 2]}', "d": "turbidostat"}, settable={"a", "b", "c", "d"})}
    assert plan(desired({"x": {"a": "500", "b": "true", "c": '{"k":[1,2]}', "d": "turbidostat"}}), actual) == []


def test_stops_managed_jobs_that_are_no_longer_desired_and_leaves_hand_started_ones():
    actual = {
        "stirring": run({}, managed=True),
        "od_reading": run({}, managed=False),  # started by hand with `pio run`
    }
    assert plan(desired({}), actual) == [Stop("stirring")]


def test_long_running_jobs_and_one_shot_actions_are_never_stopped_by_a_plan():
    actual = {
        "monitor": run({}, managed=True, long_running=True),
        "add_media": run({"ml": "2"}, managed=True, one_shot=True),
    }
    assert plan(desired({}), actual) == []


def test_known_one_shot_actions_are_not_started_by_a_plan():
    assert plan(desired({"add_media": {"ml": "1"}, "stirring": {}}), {}, one_shot=frozenset({"add_media"})) == [Start("stirring", {})]


def test_no_desired_state_plans_nothing():
    assert plan(None, {"stirring": run({}, managed=True)}) == []


def test_a_running_hand_started_job_that_becomes_desired_is_adopted_in_place():
    actual = {"stirring": run({"target_rpm": "400.0"}, settable={"target_rpm"})}
    assert plan(desired({"stirring": {"target_rpm": "400"}}), actual) == []


def test_in_sync_needs_every_desired_job_settled():
    d = desired({"stirring": {"target_rpm": "500"}})
    assert not in_sync(d, {})
    assert not in_sync(d, {"stirring": run({"target_rpm": "500"}, state="init", managed=True)})
    assert in_sync(d, {"stirring": run({"target_rpm": "500"}, state="ready", managed=True)})
    assert in_sync(d, {"stirring": run({"target_rpm": "500"}, state="sleeping", managed=True)})
    assert not in_sync(d, {"stirring": run({"target_rpm": "400"}, settable={"target_rpm"}, managed=True)})
    assert in_sync(None, {})


def test_same_value():
    assert same_value("500", "500.0")
    assert same_value(" true", "TRUE")
    assert not same_value("true", "false")
    assert not same_value("500", "501")
    assert not same_value(None, "1")
    assert same_value("NaN", "NaN")  # same text, whatever it means
    assert not same_value("turbidostat", "chemostat")


# --- property: a plan applied leaves nothing to do ------------------------------------------------

JOBS = st.sampled_from(["stirring", "od_reading", "growth_rate_calculating", "temperature_automation", "dosing_automation", "monitor"])
SETTINGS = st.sampled_from(["target_rpm", "use_rpm", "automation_name", "volume", "target"])
VALUES = st.one_of(st.integers(-5, 5).map(str), st.sampled_from(["true", "false", "chemostat", "turbidostat", "1.5", "2.0", "2"]))
EXPERIMENTS = st.sampled_from(["exp1", "exp2"])
STATES = st.sampled_from(["init", "ready", "sleeping", "disconnected", "lost"])

desired_states = st.builds(
    lambda jobs, exp: Desired(generation="g", experiment=exp, jobs=jobs),
    st.dictionaries(JOBS, st.dictionaries(SETTINGS, VALUES, max_size=3), max_size=4),
    EXPERIMENTS,
)
runnings = st.builds(
    Running,
    state=STATES,
    experiment=EXPERIMENTS,
    settings=st.dictionaries(SETTINGS, VALUES, max_size=3),
    settable=st.frozensets(SETTINGS),
    managed=st.booleans(),
    long_running=st.booleans(),
    one_shot=st.booleans(),
)
actuals = st.dictionaries(JOBS, runnings, max_size=5)


def apply(desired_state: Desired, actual: dict[str, Running], actions: list) -> dict[str, Running]:
    """What a node does with a plan, as the supervisor does it: a Start runs the job managed with the
    desired options in the desired experiment; a Stop ends it; a Set changes one value in place."""
    out = dict(actual)
    for a in actions:
        if isinstance(a, Stop):
            out.pop(a.job, None)
        elif isinstance(a, Start):
            old = actual.get(a.job)
            out[a.job] = Running(
                state="init",
                experiment=desired_state.experiment,
                settings=dict(a.options),
                settable=old.settable if old else frozenset(),
                managed=True,
                long_running=old.long_running if old else False,
                one_shot=old.one_shot if old else False,
            )
        else:
            r = out[a.job]
            out[a.job] = Running(
                state=r.state, experiment=r.experiment, settings={**r.settings, a.setting: a.value}, settable=r.settable,
                managed=True, long_running=r.long_running, one_shot=r.one_shot,
            )
    return out


@given(desired_states, actuals)
def test_a_plan_applied_leaves_nothing_to_do(d, actual):
    assert plan(d, apply(d, actual, plan(d, actual))) == []


@given(desired_states, actuals)
def test_a_plan_never_restarts_for_a_settable_value_and_never_touches_hand_started_jobs(d, actual):
    actions = plan(d, actual)
    for job in restarts(actions):
        r = actual[job]
        changed = {k for k, v in d.jobs[job].items() if not same_value(r.settings.get(k), v)}
        assert r.experiment != d.experiment or not changed <= r.settable
    for a in actions:
        if isinstance(a, Stop) and a.job not in d.jobs:
            assert actual[a.job].managed and not actual[a.job].long_running and not actual[a.job].one_shot


@given(desired_states, actuals)
def test_planning_is_deterministic_and_stops_come_first(d, actual):
    actions = plan(d, actual)
    assert actions == plan(d, dict(reversed(list(actual.items()))))
    first_other = next((i for i, a in enumerate(actions) if not (isinstance(a, Stop) and a.job not in d.jobs)), len(actions))
    assert all(not (isinstance(a, Stop) and a.job not in d.jobs) for a in actions[first_other:])


# --- commands ----------------------------------------------------------------------------------------

NOW = 1_700_000_000.0


def cmd(**fields) -> str:
    return json.dumps({"id": "c1", "expires_at": NOW + 30, **fields})


def test_commands_are_parsed():
    assert parse_command(cmd(action="run", job="stirring", options={"target_rpm": "500"}), NOW) == Command(
        id="c1", expires_at=NOW + 30, action="run", job="stirring", options={"target_rpm": "500"}
    )
    assert parse_command(cmd(action="kill", job="stirring"), NOW).job == "stirring"
    assert parse_command(cmd(action="kill"), NOW).job is None  # every job, as `pio kill --all`
    c = parse_command(cmd(action="set", job="stirring", setting="target_rpm", value="300"), NOW)
    assert (c.setting, c.value) == ("target_rpm", "300")


def test_an_expired_command_is_refused_with_its_id():
    with pytest.raises(CommandError) as e:
        parse_command(json.dumps({"id": "c9", "expires_at": NOW - 2.5, "action": "kill", "job": "stirring"}), NOW)
    assert e.value.command_id == "c9" and "expired 2.5 s" in str(e.value)


@pytest.mark.parametrize(
    "payload, has_id, reason",
    [
        ("nope", False, "not JSON"),
        (json.dumps({"expires_at": NOW + 1, "action": "kill"}), False, "'id'"),
        (cmd(action="explode", job="x"), True, "unknown action"),
        (json.dumps({"id": "c1", "action": "kill"}), True, "expires_at"),
        (cmd(action="run"), True, "needs 'job'"),
        (cmd(action="run", job="a/b"), True, "not a valid job name"),
        (cmd(action="set", job="stirring", value="1"), True, "'setting'"),
        (cmd(action="set", job="stirring", setting="target_rpm"), True, "'value'"),
        (cmd(action="run", job="stirring", options=[1]), True, "'options'"),
    ],
)
def test_malformed_commands_are_refused_with_one_line(payload, has_id, reason):
    with pytest.raises(CommandError) as e:
        parse_command(payload, NOW)
    assert (e.value.command_id == "c1") == has_id
    assert reason in str(e.value) and "\n" not in str(e.value)
