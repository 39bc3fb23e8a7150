"""What each published record becomes in the leader's database (leader/parsers.py)."""

from __future__ import annotations

import json

import pytest

from actors.records import Record
from leader import parsers
from leader.parsers import ParseError, Sink, SinkTable, rows_for

AT = "2026-03-01T10:00:00.000Z"
TS = "2026-03-01T09:59:59.500Z"
RECEIVED = "2026-03-01T10:00:00.250Z"


def record(suffix: str, payload: object, *, unit: str = "u1", experiment: str = "exp1", seq: int = 7) -> Record:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return Record(stream=suffix.split("/")[0], seq=seq, at=AT, topic=f"pioreactor/{unit}/{experiment}/{suffix}", payload=text)


def only_row(suffix: str, payload: object, table: str) -> dict:
    out = rows_for(record(suffix, payload), RECEIVED)
    assert [t for t, _ in out] == [table]
    return out[0][1]


def common(row: dict, timestamp: str = TS, stream: str | None = None) -> None:
    assert row["experiment"] == "exp1"
    assert row["pioreactor_unit"] == "u1"
    assert row["timestamp"] == timestamp
    assert row["received_at"] == RECEIVED
    assert row["seq"] == 7
    if stream is not None:
        assert row["stream"] == stream


def od_entry(channel: str = "2", od: object = 0.0513, **extra: object) -> dict:
    entry = {"od": od, "angle": "90", "channel": channel, "ir_led_intensity": 80.0, "timestamp": TS, "calibrated": 0}
    entry.update(extra)
    return entry


# --- the mapping --------------------------------------------------------------------------------------------


def test_ods_become_one_od_readings_row_per_channel():
    payload = {"timestamp": TS, "ods": {"1": od_entry("1", 0.2, angle="45"), "2": od_entry("2", 0.05, calibrated=1)}}
    out = rows_for(record("od_reading/ods", payload), RECEIVED)
    assert [t for t, _ in out] == ["od_readings", "od_readings"]
    by_channel = {row["channel"]: row for _, row in out}
    assert set(by_channel) == {1, 2}
    assert by_channel[1]["angle"] == 45 and by_channel[1]["od_reading"] == 0.2 and by_channel[1]["calibrated"] == 0
    assert by_channel[2]["angle"] == 90 and by_channel[2]["calibrated"] == 1
    assert by_channel[2]["ir_led_intensity"] == 80.0
    for row in by_channel.values():
        common(row, stream="od_reading")


def test_ods_as_the_od_reading_job_publishes_them():
    from actors.od_processing import ODReading, ods_payload

    reading = ODReading(channel="2", angle="90", od=0.031, ir_led_intensity=70.0, timestamp=TS)
    payload = json.dumps(ods_payload(TS, [reading]))
    (table, row), = rows_for(record("od_reading/ods", payload), RECEIVED)
    assert table == "od_readings"
    assert (row["channel"], row["angle"], row["od_reading"], row["ir_led_intensity"], row["calibrated"]) == (2, 90, 0.031, 70.0, 0)


def test_a_channel_without_its_own_timestamp_takes_the_payloads():
    entry = od_entry()
    del entry["timestamp"]
    (_, row), = rows_for(record("od_reading/ods", {"timestamp": TS, "ods": {"2": entry}}), RECEIVED)
    assert row["timestamp"] == TS


def test_raw_od_becomes_a_raw_od_readings_row():
    from actors.od_processing import ODReading

    payload = ODReading(channel="2", angle="90", od=0.75, ir_led_intensity=80.0, timestamp=TS).payload()
    row = only_row("od_reading/raw_od2", payload, "raw_od_readings")
    common(row)
    assert (row["channel"], row["angle"], row["od_reading"]) == (2, 90, 0.75)


@pytest.mark.parametrize("suffix", ["od_reading/od2", "od_reading/od1", "od_reading/calibrated_od2"])
def test_per_channel_copies_of_ods_become_no_rows(suffix):
    assert rows_for(record(suffix, od_entry(calibrated=1, calibration_name="c")), RECEIVED) == []


@pytest.mark.parametrize(
    "suffix, payload, table, column, value",
    [
        ("growth_rate_calculating/growth_rate", {"growth_rate": 0.21, "timestamp": TS}, "growth_rates", "rate", 0.21),
        ("growth_rate_calculating/od_filtered", {"od_filtered": 1.04, "timestamp": TS}, "od_readings_filtered", "normalized_od_reading", 1.04),
        ("temperature_automation/temperature", {"temperature": 30.125, "timestamp": TS}, "temperature_readings", "temperature_c", 30.125),
        ("stirring/measured_rpm", {"measured_rpm": 498.3, "timestamp": TS}, "stirring_rates", "measured_rpm", 498.3),
    ],
)
def test_measurements(suffix, payload, table, column, value):
    row = only_row(suffix, payload, table)
    common(row, stream=suffix.split("/")[0])
    assert row[column] == value


def test_dosing_event():
    payload = {"volume_change": 0.5, "event": "add_media", "source_of_event": "turbidostat", "timestamp": TS}
    row = only_row("dosing_events", payload, "dosing_events")
    common(row, stream="dosing_events")
    assert (row["event"], row["volume_change_ml"], row["source_of_event"]) == ("add_media", 0.5, "turbidostat")


def test_led_change_event():
    row = only_row("led_change_events", {"channel": "B", "intensity": 12.5, "source_of_event": "led_intensity", "timestamp": TS}, "led_change_events")
    common(row, stream="led_change_events")
    assert (row["channel"], row["intensity"], row["source_of_event"]) == ("B", 12.5, "led_intensity")


@pytest.mark.parametrize(
    "attr, payload, table, column",
    [("current_volume_ml", "14.25", "liquid_volumes", "liquid_volume"), ("alt_media_fraction", "0.125", "alt_media_fractions", "alt_media_fraction")],
)
def test_the_vials_books_are_stamped_with_the_record_time(attr, payload, table, column):
    row = only_row(f"bioreactor/{attr}", payload, table)
    common(row, timestamp=AT, stream="bioreactor")
    assert row[column] == float(payload)


def test_other_books_go_to_the_settings_history():
    row = only_row("bioreactor/efflux_tube_volume_ml", "14", "settings_history")
    common(row, timestamp=AT)
    assert (row["job_name"], row["setting"], row["value"]) == ("bioreactor", "efflux_tube_volume_ml", "14")


@pytest.mark.parametrize("job", ["dosing_automation", "temperature_automation", "led_automation"])
def test_automation_events(job):
    payload = {"event_name": "DilutionEvent", "message": "exchanged 1.0 ml", "data": {"volume": 1.0, "od": 0.9}}
    row = only_row(f"{job}/latest_event", payload, "automation_events")
    common(row, timestamp=AT, stream=job)
    assert (row["job_name"], row["event_name"], row["message"]) == (job, "DilutionEvent", "exchanged 1.0 ml")
    assert json.loads(row["data"]) == {"volume": 1.0, "od": 0.9}


def test_logs():
    payload = {"message": "Updated LED B to 12.5 %.", "level": "INFO", "task": "led_intensity", "source": "app", "timestamp": TS}
    row = only_row("logs/app/info", payload, "logs")
    common(row, stream="logs")
    assert (row["message"], row["level"], row["task"], row["source"]) == ("Updated LED B to 12.5 %.", "INFO", "led_intensity", "app")


def test_a_log_without_source_or_level_takes_them_from_its_topic():
    row = only_row("logs/supervisor/warning", {"message": "m", "task": "reconcile", "timestamp": TS}, "logs")
    assert (row["source"], row["level"]) == ("supervisor", "WARNING")


@pytest.mark.parametrize(
    "suffix, payload, timestamp",
    [
        ("stirring/target_rpm", "500", AT),
        ("stirring/$state", "ready", AT),
        ("od_reading/interval", "5.0", AT),
        ("dosing_automation/automation_name", "turbidostat", AT),
        ("some_plugin_job/status/detail", json.dumps({"x": 1, "timestamp": TS}), TS),
        ("some_plugin_job/odd", json.dumps({"timestamp": 12}), AT),
        ("some_plugin_job/broken", "{not json", AT),
    ],
)
def test_everything_else_is_a_setting(suffix, payload, timestamp):
    row = only_row(suffix, payload, "settings_history")
    common(row, timestamp=timestamp)
    job, rest = suffix.split("/", 1)
    assert (row["job_name"], row["setting"], row["value"]) == (job, rest, payload)


def test_records_outside_any_experiment_keep_its_name():
    out = rows_for(record("stirring/$state", "ready", experiment="$experiment"), RECEIVED)
    assert out[0][1]["experiment"] == "$experiment"


def test_a_payload_without_a_timestamp_takes_the_records_time():
    row = only_row("growth_rate_calculating/growth_rate", {"growth_rate": 0.1}, "growth_rates")
    assert row["timestamp"] == AT


# --- bad payloads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, payload, problem",
    [
        ("growth_rate_calculating/growth_rate", "{oops", "not JSON"),
        ("growth_rate_calculating/growth_rate", "[1, 2]", "JSON object"),
        ("growth_rate_calculating/growth_rate", {"timestamp": TS}, "'growth_rate'"),
        ("growth_rate_calculating/growth_rate", {"growth_rate": "fast", "timestamp": TS}, "number"),
        ("growth_rate_calculating/growth_rate", {"growth_rate": True, "timestamp": TS}, "number"),
        ("growth_rate_calculating/growth_rate", '{"growth_rate": NaN}', "finite"),
        ("growth_rate_calculating/growth_rate", {"growth_rate": 0.1, "timestamp": "yesterday"}, "timestamp"),
        ("temperature_automation/temperature", {"temperature": None}, "number"),
        ("stirring/measured_rpm", {"rpm": 500}, "'measured_rpm'"),
        ("od_reading/ods", {"timestamp": TS}, "'ods'"),
        ("od_reading/ods", {"ods": {"2": "0.5"}}, "JSON object"),
        ("od_reading/ods", {"ods": {"2": od_entry(od="high")}}, "'od'"),
        ("od_reading/ods", {"ods": {"2": od_entry(angle="ninety")}}, "'angle'"),
        ("od_reading/ods", {"ods": {"1": od_entry("2")}}, "channel"),
        ("od_reading/ods", {"ods": {"2": od_entry(calibrated=2)}}, "'calibrated'"),
        ("od_reading/raw_od2", {"od": 0.5, "angle": "90"}, "'channel'"),
        ("dosing_events", {"volume_change": 1.0, "timestamp": TS}, "'event'"),
        ("dosing_events", {"volume_change": "1 ml", "event": "add_media"}, "'volume_change'"),
        ("led_change_events", {"channel": 1, "intensity": 10}, "'channel'"),
        ("led_change_events", {"channel": "A"}, "'intensity'"),
        ("bioreactor/current_volume_ml", "lots", "not JSON"),
        ("bioreactor/alt_media_fraction", "true", "number"),
        ("dosing_automation/latest_event", {"message": "no name"}, "'event_name'"),
        ("logs/app/info", {"level": "INFO", "task": "x", "source": "app"}, "'message'"),
        ("logs/app/info", {"message": "m", "level": "INFO", "source": "app"}, "'task'"),
    ],
)
def test_bad_payloads_raise_a_parse_error_naming_the_topic_and_the_problem(suffix, payload, problem):
    rec = record(suffix, payload)
    with pytest.raises(ParseError) as caught:
        rows_for(rec, RECEIVED)
    message = str(caught.value)
    assert message.startswith(rec.topic + ": ")
    assert problem in message


def test_a_topic_without_a_job_level_is_a_parse_error():
    rec = Record(stream="x", seq=1, at=AT, topic="pioreactor/u1/exp1", payload="1")
    with pytest.raises(ParseError, match="pioreactor/u1/exp1"):
        rows_for(rec, RECEIVED)


# --- the table as data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, suffix, expected",
    [
        ("od_reading/raw_od[0-9]*", "od_reading/raw_od2", True),
        ("od_reading/od[0-9]*", "od_reading/ods", False),
        ("*_automation/latest_event", "dosing_automation/latest_event", True),
        ("*_automation/latest_event", "dosing_automation/x/latest_event", False),
        ("logs/#", "logs/app/info", True),
        ("logs/#", "logs", True),
        ("dosing_events", "dosing_events/x", False),
        ("#", "anything/at/all", True),
    ],
)
def test_patterns_match_level_by_level(pattern, suffix, expected):
    assert parsers.pattern_matches(pattern, suffix) is expected


def test_a_plugin_sink_comes_before_the_built_ins():
    def parse_ph(msg: parsers.Message) -> list[dict]:
        return [{"timestamp": msg.at, "ph": float(msg.payload)}]

    sinks = SinkTable()
    assert rows_for(record("ph_reading/ph", "7.1"), RECEIVED, sinks)[0][0] == "settings_history"
    sinks.add(Sink("ph_reading/ph", parse_ph, "ph_readings"))
    (table, row), = rows_for(record("ph_reading/ph", "7.1"), RECEIVED, sinks)
    assert table == "ph_readings" and row["ph"] == 7.1 and row["pioreactor_unit"] == "u1"
    # the shared default table is untouched
    assert rows_for(record("ph_reading/ph", "7.1"), RECEIVED)[0][0] == "settings_history"


def test_every_built_in_table_exists_in_the_schema():
    from leader import database

    schema = "\n".join(sql for _, _, sql in database.migrations())
    for sink in parsers.SINKS:
        if sink.table is not None:
            assert f"CREATE TABLE {sink.table} (" in schema


def test_a_failing_plugin_parser_costs_only_its_record():
    def broken(msg: parsers.Message) -> list[dict]:
        return [{"timestamp": msg.at, "ph": float(msg.payload)}]

    sinks = SinkTable()
    sinks.add(Sink("ph_reading/ph", broken, "ph_readings"))
    sinks.add(Sink("ph_reading/raw", lambda msg: {"not": "a list"}, "ph_readings"))
    with pytest.raises(ParseError, match=r"^pioreactor/u1/exp1/ph_reading/ph: the parser of 'ph_reading/ph' failed: ValueError"):
        rows_for(record("ph_reading/ph", "acidic"), RECEIVED, sinks)
    with pytest.raises(ParseError, match="must return a list of dicts"):
        rows_for(record("ph_reading/raw", "1"), RECEIVED, sinks)
