"""Exchange planning: the reference order, exact totals, sub-dose sizes, and the overflow projections."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actors.automations.dosing.subdosing import (
    MAX_PIECES,
    Dose,
    Pause,
    first_unsafe_step,
    plan_exchange,
    project_volume,
    totals,
    volume_trajectory,
)

ml = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)
subdose = st.floats(min_value=0.05, max_value=5.0)
# The extra-waste multiplier is 0 (off) or a real factor. Below ~1e-3 it is meaningless for a pump, and
# near 1e-308 the per-piece and split-total products round differently in their last bits.
multiplier = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=5.0))


def reference_recursion(media, alt, waste, max_subdose, mult, pause):
    """An independent, literal reading of the reference's recursion: halve everything while the additions
    exceed max_subdose; at a leaf, each addition then a pause, then waste, then the extra waste."""
    if media + alt > max_subdose:
        half = reference_recursion(media / 2, alt / 2, waste / 2, max_subdose, mult, pause)
        return [*half, Pause(pause), *half]
    out = []
    for pump, v in (("media", media), ("alt_media", alt)):
        if v > 0:
            out += [Dose(pump, v), Pause(pause)]
    if waste > 0:
        out.append(Dose("waste", waste))
    if waste * mult > 0:
        out.append(Dose("waste", waste * mult, extra=True))
    return out


@st.composite
def exchanges(draw):
    media, alt = draw(ml), draw(ml)
    waste = media + alt + draw(st.floats(min_value=0.0, max_value=10.0))
    return media, alt, waste


def test_a_small_exchange_is_media_pause_waste_extra_waste():
    assert plan_exchange(0.5, 0.0, 0.5) == [
        Dose("media", 0.5),
        Pause(5.0),
        Dose("waste", 0.5),
        Dose("waste", 1.0, extra=True),
    ]


def test_a_3_ml_exchange_is_four_pieces_of_0_75():
    steps = plan_exchange(3.0, 0.0, 3.0)
    doses = [s for s in steps if isinstance(s, Dose)]
    assert [d.ml for d in doses if d.pump == "media"] == [0.75] * 4
    assert [d.ml for d in doses if d.extra] == [1.5] * 4
    assert totals(steps) == {"media": 3.0, "alt_media": 0.0, "waste": 3.0, "extra_waste": 6.0}


def test_alt_media_follows_media_in_each_piece():
    steps = plan_exchange(0.3, 0.2, 0.5)
    assert [type(s).__name__ + getattr(s, "pump", "") for s in steps] == [
        "Dosemedia",
        "Pause",
        "Dosealt_media",
        "Pause",
        "Dosewaste",
        "Dosewaste",
    ]


@settings(max_examples=500)
@given(ex=exchanges(), max_subdose=subdose, mult=multiplier, pause=st.sampled_from([0.0, 5.0]))
def test_plan_matches_the_reference_recursion(ex, max_subdose, mult, pause):
    media, alt, waste = ex
    assume((media + alt) / max_subdose <= MAX_PIECES)
    assume(all(v == 0 or v >= 1e-300 for v in ex))  # the recursion's halves of subnormals round
    expected = [
        s for s in reference_recursion(media, alt, waste, max_subdose, mult, pause) if s != Pause(0.0)
    ]
    assert plan_exchange(media, alt, waste, max_subdose, mult, pause_between_subdoses_s=pause) == expected


@settings(max_examples=500)
@given(ex=exchanges(), max_subdose=subdose, mult=multiplier)
def test_totals_are_exact_to_the_last_bit(ex, max_subdose, mult):
    media, alt, waste = ex
    assume((media + alt) / max_subdose <= MAX_PIECES)
    t = totals(plan_exchange(media, alt, waste, max_subdose, mult))
    assert t["media"] == media
    assert t["alt_media"] == alt
    assert t["waste"] == waste
    assert t["extra_waste"] == waste * mult


@settings(max_examples=300)
@given(ex=exchanges(), max_subdose=subdose)
def test_each_piece_fits_the_max_subdose_and_is_not_needlessly_small(ex, max_subdose):
    media, alt, waste = ex
    assume(media + alt > 0 and (media + alt) / max_subdose <= MAX_PIECES)
    steps = plan_exchange(media, alt, waste, max_subdose)
    media_doses = [s.ml for s in steps if isinstance(s, Dose) and s.pump == "media"]
    alt_doses = [s.ml for s in steps if isinstance(s, Dose) and s.pump == "alt_media"]
    n = max(len(media_doses), len(alt_doses))
    assert n & (n - 1) == 0  # a power of two: halving
    piece = (media_doses[0] if media_doses else 0.0) + (alt_doses[0] if alt_doses else 0.0)
    assert piece <= max_subdose
    if n > 1:
        assert piece > max_subdose / 2


@settings(max_examples=300)
@given(ex=exchanges(), max_subdose=subdose, start_above=st.floats(min_value=0.0, max_value=3.0))
def test_an_exchange_pins_the_efflux_level_and_peaks_one_piece_above_the_start(ex, max_subdose, start_above):
    media, alt, waste = ex
    assume((media + alt) / max_subdose <= MAX_PIECES)
    efflux = 15.0
    start = efflux + start_above
    steps = plan_exchange(media, alt, waste, max_subdose)
    trajectory = volume_trajectory(start, steps, efflux)
    assert max(trajectory, default=start) <= start + max_subdose + 1e-9
    assert project_volume(start, steps, efflux) <= start
    if waste > 0:
        assert project_volume(efflux, steps, efflux) == efflux


@pytest.mark.parametrize(
    "args, words",
    [
        ((-1.0, 0.0, 1.0), "media_ml is negative"),
        ((1.0, -0.5, 1.0), "alt_media_ml is negative"),
        ((0.0, 0.0, -1.0), "waste_ml is negative"),
        ((math.nan, 0.0, 1.0), "finite"),
        ((1.0, 0.5, 1.0), "send waste_ml >= 1.5"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(args, words):
    with pytest.raises(ValueError) as excinfo:
        plan_exchange(*args)
    assert words in str(excinfo.value)


def test_waste_covering_additions_tolerates_rounding():
    v, f = 1.7, 0.3
    plan_exchange(v * (1 - f), v * f, v * (1 - f) + v * f)  # waste computed as the sum: always fine
    plan_exchange(v * (1 - f), v * f, v)  # the two parts may round a hair above v


def test_fed_batch_may_add_without_waste():
    assert plan_exchange(0.75, 0.0, 0.0, allow_net_addition=True) == [Dose("media", 0.75), Pause(5.0)]
    with pytest.raises(ValueError, match="waste_ml"):
        plan_exchange(0.75, 0.0, 0.0)


def test_subnormal_volumes_still_sum_exactly():
    tiny = 2.2250738585e-313
    assert totals(plan_exchange(3.0, tiny, 3.0))["alt_media"] == tiny


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_subdose"):
        plan_exchange(1.0, 0.0, 1.0, max_subdose=0.0)
    with pytest.raises(ValueError, match="waste_removal_multiplier"):
        plan_exchange(1.0, 0.0, 1.0, waste_removal_multiplier=-1.0)
    with pytest.raises(ValueError, match="sub-doses"):
        plan_exchange(5000.0, 0.0, 5000.0)


def test_first_unsafe_step_finds_the_addition_that_would_reach_max_fill():
    steps = plan_exchange(1.0, 0.0, 1.0)
    assert first_unsafe_step(17.0, steps, 18.0, efflux_ml=15.0) == 0  # 17 + 1 reaches 18
    assert first_unsafe_step(16.9, steps, 18.0, efflux_ml=15.0) is None
    assert first_unsafe_step(16.9, steps, 18.0, efflux_ml=15.0, calibration_margin=0.1) == 0


def test_first_unsafe_step_without_efflux_assumes_waste_removes_nothing():
    steps = plan_exchange(4.0, 0.0, 4.0)  # four pieces of 1 ml
    assert first_unsafe_step(15.0, steps, 18.0, efflux_ml=15.0) is None
    media_steps = [i for i, s in enumerate(steps) if isinstance(s, Dose) and s.pump == "media"]
    assert first_unsafe_step(15.0, steps, 18.0) == media_steps[2]  # 15 + 1 + 1 + 1 reaches 18


def test_waste_and_pauses_are_never_unsafe():
    assert first_unsafe_step(17.99, [Dose("waste", 5.0), Pause(5.0)], 18.0) is None


def test_projection_refuses_nonsense_levels():
    with pytest.raises(ValueError):
        project_volume(-1.0, [], 15.0)
    with pytest.raises(ValueError):
        first_unsafe_step(15.0, [], 0.0)
    assert project_volume(15.0, [], 15.0) == 15.0
