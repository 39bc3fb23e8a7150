"""Stirring control against the simulated motor: closed loop, retargeting, stall recovery."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.hardware.sim_motor import StirMotor
from actors.stirring_control import MAX_DUTY_AFTER_STALL, StirringControl, rpm_from_edges


def run(control: StirringControl, motor: StirMotor, seconds: float, every: float = 5.0) -> float:
    """Closed loop: measure over each window from hall edges, update the duty. Returns the mean RPM
    of the last minute (one window resolves only 60/every RPM, so a single reading is quantised)."""
    rpm = 0.0
    t = 0.0
    recent: list[float] = []
    motor.set_duty(control.duty)
    while t < seconds:
        edges0 = motor.hall_edges
        motor.advance(every)
        t += every
        rpm = rpm_from_edges(edges0, 0.0, motor.hall_edges, every) or 0.0
        recent = (recent + [rpm])[-int(60 / every):]
        step = control.on_measurement(rpm, every)
        if step.kick:
            motor.set_duty(100.0)
            motor.advance(0.5)
        motor.set_duty(step.duty)
    return sum(recent) / len(recent)


@settings(max_examples=40, deadline=None)
@given(st.floats(200, 1200))
def test_closed_loop_reaches_any_reasonable_target(target):
    control = StirringControl(target_rpm=target, duty=30.0)
    rpm = run(control, StirMotor(), seconds=1800)
    assert abs(rpm - target) / target < 0.05


def test_retarget_rescales_the_duty_at_once():
    control = StirringControl(target_rpm=500, duty=30.0)
    step = control.retarget(650, default_duty=30.0)
    assert step.duty == 30.0 * 650 / 500 and not step.kick
    assert control.retarget(0, default_duty=30.0).duty == 0.0
    restart = control.retarget(400, default_duty=30.0)
    assert restart.kick and restart.duty == 30.0


def test_a_stall_kicks_and_caps_the_duty():
    control = StirringControl(target_rpm=500, duty=59.9)
    step = control.on_measurement(0.0, 5.0)
    assert step.stalled and step.kick
    assert step.duty == MAX_DUTY_AFTER_STALL


def test_a_stalled_motor_recovers_after_the_fault_clears():
    motor = StirMotor()
    control = StirringControl(target_rpm=500, duty=30.0)
    run(control, motor, 300)
    motor.stalled = True
    assert run(control, motor, 60) < 10.0  # only the coast-down of the first window turns the bar
    assert control.duty > 30.0  # kicked and raised, but never past the cap
    assert control.duty <= MAX_DUTY_AFTER_STALL
    motor.stalled = False
    assert abs(run(control, motor, 1800) - 500) < 25


def test_rpm_from_edges():
    assert rpm_from_edges(0, 0.0, 50, 6.0) == 500.0
    assert rpm_from_edges(10, 1.0, 10, 1.0) is None
