"""Dosing policies: each automation's decisions, the shared stale-input and max-fill rules, the registry."""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.automations.dosing.policies import (
    POLICIES,
    SETTLING_WINDOW_S,
    STALE_AFTER_S,
    Chemostat,
    Exchange,
    FedBatch,
    Inputs,
    PidMorbidostat,
    Reading,
    Silent,
    Turbidostat,
    create,
    parameters,
)
from actors.automations.dosing.subdosing import totals
from actors.bioreactor import BioreactorState

ROOT = pathlib.Path(__file__).resolve().parents[2]


def inputs(
    t: float, *, nod: float | None = None, gr: float | None = None, volume: float = 15.0, **kw
) -> Inputs:
    return Inputs(
        bioreactor=BioreactorState(current_volume_ml=volume),
        normalized_od=None if nod is None else Reading(nod, t),
        growth_rate=None if gr is None else Reading(gr, t),
        **kw,
    )


# -- purity -----------------------------------------------------------------------------------------------

MODULES = [
    "actors/bioreactor.py",
    "actors/automations/dosing/__init__.py",
    "actors/automations/dosing/policies.py",
    "actors/automations/dosing/subdosing.py",
]
FORBIDDEN = {
    "thespian",
    "paho",
    "pigpio",
    "lgpio",
    "board",
    "busio",
    "aiohttp",
    "sqlite3",
    "numpy",
    "time",
    "datetime",
}


@pytest.mark.parametrize("module", MODULES)
def test_pure_modules_import_no_io_library_and_no_clock(module):
    tree = ast.parse((ROOT / module).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert not roots & FORBIDDEN


# -- turbidostat ------------------------------------------------------------------------------------------


def test_turbidostat_exchanges_when_a_fresh_reading_reaches_the_target():
    p = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5)
    below = p.decide(inputs(0.0, nod=1.9), 0.0)
    assert below.exchange is None and below.event.event_name == "NoEvent"
    d = p.decide(inputs(5.0, nod=2.0), 5.0)
    assert d.exchange == Exchange(0.5, 0.0, 0.5)
    assert d.event.event_name == "DilutionEvent"
    assert d.event.data["latest_biomass"] == 2.0
    assert d.next_check is None  # event-driven


def test_turbidostat_acts_on_each_reading_once():
    p = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5)
    p.decide(inputs(0.0, nod=1.0), 0.0)
    assert p.decide(inputs(0.0, nod=1.0), 3.0).event.message.startswith("no new")


def test_turbidostat_waits_out_the_settling_window():
    p = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5)
    assert p.decide(inputs(0.0, nod=2.5), 0.0).exchange is not None
    assert p.decide(inputs(5.0, nod=2.5), 5.0).exchange is None
    assert p.decide(inputs(SETTLING_WINDOW_S - 1, nod=2.5), SETTLING_WINDOW_S - 1).exchange is None
    assert p.decide(inputs(SETTLING_WINDOW_S, nod=2.5), SETTLING_WINDOW_S).exchange is not None


def test_turbidostat_settling_counts_from_the_end_of_dosing():
    p = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5)
    p.decide(inputs(0.0, nod=2.5), 0.0)
    p.on_dosing_finished(50.0)  # the pumps took 50 s
    assert p.decide(inputs(60.0, nod=2.5), 60.0).exchange is None
    assert p.decide(inputs(80.0, nod=2.5), 80.0).exchange is not None


def test_turbidostat_ignores_a_reading_taken_before_the_window_ended():
    p = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5)
    p.decide(inputs(0.0, nod=2.5), 0.0)
    late = Inputs(normalized_od=Reading(2.5, 20.0))  # measured mid-window, delivered after it
    assert p.decide(late, 40.0).exchange is None


@pytest.mark.parametrize("age", [STALE_AFTER_S + 1, 3600.0])
def test_stale_readings_give_an_error_and_no_dose(age):
    p = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5)
    d = p.decide(Inputs(normalized_od=Reading(5.0, 0.0)), age)
    assert d.exchange is None
    assert d.event.event_name == "ErrorOccurred"
    assert "growth_rate_calculating" in d.event.message


def test_missing_readings_give_an_error_and_no_dose():
    d = Turbidostat(target_biomass=2.0, exchange_volume_ml=0.5).decide(Inputs(), 0.0)
    assert d.exchange is None and d.event.event_name == "ErrorOccurred"


def test_turbidostat_can_follow_calibrated_od_and_auto_prefers_it():
    od = Inputs(od=Reading(0.9, 0.0), normalized_od=Reading(1.0, 0.0))
    assert Turbidostat(target_biomass=0.8, exchange_volume_ml=1, biomass_signal="od").decide(od, 0).exchange
    auto = Turbidostat(target_biomass=0.95, exchange_volume_ml=1, biomass_signal="auto")
    assert auto.decide(od, 0).exchange is None  # od 0.9 < 0.95, although normalized_od is 1.0
    fused = Inputs(od=Reading(0.9, 0.0), od_fused=Reading(1.2, 0.0))
    assert (
        Turbidostat(target_biomass=1, exchange_volume_ml=1, biomass_signal="auto").decide(fused, 0).exchange
    )


# -- chemostat and fed-batch ------------------------------------------------------------------------------


def test_chemostat_runs_2_s_after_start_then_every_duration():
    p = Chemostat(exchange_volume_ml=1.0, duration=20)
    first = p.decide(inputs(0), 100.0)
    assert first.exchange is None and first.next_check == 102.0
    run = p.decide(inputs(0), 102.0)
    assert run.exchange == Exchange(1.0, 0.0, 1.0)
    assert run.next_check == 102.0 + 1200.0
    early = p.decide(inputs(0), 500.0)
    assert early.exchange is None and early.next_check == 1302.0
    assert p.decide(inputs(0), 1302.0).exchange is not None


def test_chemostat_needs_no_od():
    d = Chemostat(exchange_volume_ml=1.0, skip_first_run=True)
    d.decide(Inputs(), 0.0)
    assert d.decide(Inputs(), 1200.0).exchange is not None


def test_changing_duration_reschedules_from_the_last_run():
    p = Chemostat(exchange_volume_ml=1.0, duration=20)
    p.decide(inputs(0), 0.0)
    p.decide(inputs(0), 2.0)
    p.update({"duration": "5"})
    assert p.decide(inputs(0), 10.0).next_check == 2.0 + 300.0


def test_chemostat_dilution_rate():
    assert Chemostat(exchange_volume_ml=1.0, duration=20).dilution_rate_per_hour(15.0) == pytest.approx(
        0.2
    )


def test_fed_batch_adds_media_only():
    p = FedBatch(dosing_volume_ml=0.5, duration=60)
    p.decide(inputs(0), 0.0)
    d = p.decide(inputs(0), 2.0)
    assert d.exchange == Exchange(0.5, 0.0, 0.0, net_addition=True)
    assert totals(d.exchange.plan()) == {"media": 0.5, "alt_media": 0.0, "waste": 0.0, "extra_waste": 0.0}
    assert d.event.event_name == "AddMediaEvent"


def test_fed_batch_skips_and_sleeps_when_the_dose_would_reach_max_fill():
    p = FedBatch(dosing_volume_ml=1.0, duration=60)
    p.decide(inputs(0, volume=17.0), 0.0)
    d = p.decide(inputs(0, volume=17.0), 2.0)
    assert d.exchange is None and d.sleep
    assert d.event.event_name == "DosingStopped"


def test_fed_batch_warns_near_max_fill():
    p = FedBatch(dosing_volume_ml=1.0, duration=60)
    p.decide(inputs(0, volume=16.5), 0.0)
    d = p.decide(inputs(0, volume=16.5), 2.0)
    assert d.exchange is not None and d.warnings


# -- pid morbidostat --------------------------------------------------------------------------------------


def morbidostat(**kw) -> PidMorbidostat:
    p = PidMorbidostat(target_growth_rate=0.5, target_normalized_od=2.0, duration=60, **kw)
    p.decide(Inputs(), 0.0)  # start: first run is due 2 s later
    return p


def test_morbidostat_waits_until_od_passes_70_percent_of_target():
    d = morbidostat().decide(inputs(2.0, nod=1.4, gr=0.9), 2.0)
    assert d.exchange is None and d.event.event_name == "NoEvent"


def test_morbidostat_growing_too_fast_gets_alt_media():
    d = morbidostat().decide(inputs(2.0, nod=2.0, gr=0.8), 2.0)
    volume = 0.5 * 15.0 * 1.0
    fraction = 0.8 - 0.5  # -kp * (target - gr) with kp = 1
    assert d.exchange.alt_media_ml == pytest.approx(fraction * volume)
    assert d.exchange.media_ml == pytest.approx((1 - fraction) * volume)
    assert d.exchange.waste_ml == d.exchange.media_ml + d.exchange.alt_media_ml
    assert d.event.event_name == "AddAltMediaEvent"
    assert d.next_check == 2.0 + 3600.0


def test_morbidostat_growing_too_slowly_gets_plain_media():
    d = morbidostat().decide(inputs(2.0, nod=2.0, gr=0.2), 2.0)
    assert d.exchange.alt_media_ml == 0.0
    assert d.exchange.media_ml == pytest.approx(7.5)


def test_morbidostat_boosts_volume_above_125_percent_of_target_od():
    d = morbidostat().decide(inputs(2.0, nod=2.6, gr=0.2), 2.0)
    assert d.exchange.media_ml == pytest.approx(7.5 * 2.5)


def test_morbidostat_drops_doses_below_the_minimum():
    d = morbidostat().decide(inputs(2.0, nod=2.0, gr=0.505), 2.0)
    assert d.exchange.alt_media_ml == 0.0  # 0.005 * 7.5 ml is below 0.1 ml
    assert d.exchange.media_ml > 0
    tiny = PidMorbidostat(target_growth_rate=0.001, target_normalized_od=2.0)
    tiny.decide(Inputs(), 0.0)
    assert tiny.decide(inputs(2.0, nod=2.0, gr=0.0), 2.0).exchange is None


@given(gr=st.floats(min_value=-5, max_value=50), nod=st.floats(min_value=1.5, max_value=10))
def test_morbidostat_fraction_stays_in_0_1(gr, nod):
    d = morbidostat(ki=1.0).decide(inputs(2.0, nod=nod, gr=gr), 2.0)
    fraction = d.event.data.get("pid_output")
    if fraction is not None:
        assert 0.0 <= fraction <= 1.0


def test_morbidostat_with_a_stale_growth_rate_errors():
    p = morbidostat()
    d = p.decide(Inputs(normalized_od=Reading(2.0, 2.0), growth_rate=Reading(0.5, -400.0)), 2.0)
    assert d.exchange is None and d.event.event_name == "ErrorOccurred"
    assert d.next_check == 2.0 + 3600.0  # the run counts; the next one is a period later


# -- shared rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [Turbidostat(2.0, 0.5), Chemostat(1.0), FedBatch(1.0)])
def test_books_at_max_fill_put_a_dosing_policy_to_sleep(policy):
    d = policy.decide(inputs(0.0, nod=5.0, volume=18.0), 0.0)
    assert d.sleep and d.exchange is None and d.event.event_name == "DosingStopped"


def test_books_near_max_fill_warn():
    d = Turbidostat(2.0, 0.5).decide(inputs(0.0, nod=5.0, volume=17.2), 0.0)
    assert d.exchange is not None and any("max fill" in w for w in d.warnings)


def test_silent_never_doses_or_sleeps():
    d = Silent().decide(inputs(0.0, nod=100.0, volume=18.0), 0.0)
    assert d.exchange is None and not d.sleep and d.event.event_name == "NoEvent"


def test_now_must_be_a_time():
    with pytest.raises(ValueError, match="now"):
        Silent().decide(Inputs(), float("nan"))


# -- registry and parameters -------------------------------------------------------------------------------


def test_registry_has_the_reference_automations():
    assert set(POLICIES) == {"turbidostat", "chemostat", "fed_batch", "pid_morbidostat", "silent"}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_parameters_describe_the_constructor(name):
    signature = inspect.signature(POLICIES[name].__init__)
    ctor = {k: v.default for k, v in signature.parameters.items() if k != "self"}
    described = {p.name: p for p in parameters(name)}
    assert set(ctor) == set(described)
    for key, default in ctor.items():
        if default is inspect.Parameter.empty:
            assert described[key].required
        else:
            assert described[key].default == default
        assert described[key].type in {"float", "str", "bool"}


def test_unknown_automation_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="known: \\['chemostat', 'fed_batch', 'pid_morbidostat', 'silent', 'turbidostat'\\]"
    ):
        parameters("morbidostat")
    with pytest.raises(ValueError, match="known"):
        create("turbo")


def test_create_parses_strings_and_the_reference_duration_alias():
    p = create("chemostat", exchange_volume_ml="0.5", duration="30", skip_first_run="true")
    assert isinstance(p, Chemostat)
    assert (p.exchange_volume_ml, p.duration, p.skip_first_run) == (0.5, 30.0, True)


@pytest.mark.parametrize(
    "name, params, words",
    [
        ("turbidostat", {"target_biomass": 1.0}, "needs exchange_volume_ml"),
        (
            "turbidostat",
            {"target_biomass": 1.0, "exchange_volume_ml": 1.0, "speed": 3},
            "no parameter 'speed'",
        ),
        ("turbidostat", {"target_biomass": -1.0, "exchange_volume_ml": 1.0}, "target_biomass must be"),
        ("turbidostat", {"target_biomass": 1.0, "exchange_volume_ml": "a lot"}, "must be a number"),
        ("turbidostat", {"target_biomass": 1.0, "exchange_volume_ml": 25.0}, "more than the vial's max fill"),
        ("turbidostat", {"target_biomass": 1.0, "exchange_volume_ml": 1.0, "biomass_signal": "x"}, "one of"),
        ("chemostat", {"exchange_volume_ml": 1.0, "duration": 0}, "duration must be"),
        ("chemostat", {"exchange_volume_ml": -0.5}, "exchange_volume_ml must be"),
        ("fed_batch", {"dosing_volume_ml": 19.0}, "more than the vial's max fill"),
        (
            "pid_morbidostat",
            {"target_growth_rate": 0.5, "target_normalized_od": 0},
            "target_normalized_od must be",
        ),
        ("pid_morbidostat", {"target_growth_rate": 0.5, "target_normalized_od": 1, "kp": -1}, "kp must be"),
        ("silent", {"x": 1}, "accepts none"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(name, params, words):
    with pytest.raises(ValueError) as excinfo:
        create(name, bioreactor=BioreactorState(), **params)
    assert words in str(excinfo.value)


def test_update_is_validated_and_all_or_nothing():
    p = Turbidostat(2.0, 0.5)
    with pytest.raises(ValueError):
        p.update({"target_biomass": 3.0, "exchange_volume_ml": 30.0}, bioreactor=BioreactorState())
    assert (p.target_biomass, p.exchange_volume_ml) == (2.0, 0.5)
    p.update({"target_biomass": "3"})
    assert p.settings() == {
        "target_biomass": 3.0,
        "exchange_volume_ml": 0.5,
        "biomass_signal": "normalized_od",
    }
    with pytest.raises(ValueError, match="cannot change while"):
        Chemostat(1.0).update({"skip_first_run": True})


def test_update_of_the_morbidostat_target_moves_the_pid_setpoint():
    p = morbidostat()
    p.update({"target_growth_rate": 0.8})
    assert p.pid.setpoint == 0.8
