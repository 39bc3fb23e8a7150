"""Topic builders, parsing and MQTT filter matching."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors import topics

segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_$", min_size=1, max_size=8)


def test_reference_topic_shapes():
    assert topics.job_topic("sim01", "demo", "stirring", "target_rpm") == "pioreactor/sim01/demo/stirring/target_rpm"
    assert topics.state_topic("sim01", "demo", "stirring") == "pioreactor/sim01/demo/stirring/$state"
    assert topics.set_topic("sim01", "demo", "stirring", "target_rpm") == "pioreactor/sim01/demo/stirring/target_rpm/set"
    assert topics.log_topic("sim01", "demo", "app", "WARNING") == "pioreactor/sim01/demo/logs/app/warning"
    assert topics.node_topic("sim01", "$state") == "pioreactor/sim01/$node/$state"


@given(segment, segment, segment, segment)
def test_set_topics_round_trip(unit, exp, job, attr):
    parsed = topics.parse_set_topic(topics.set_topic(unit, exp, job, attr))
    assert parsed == topics.SetRequest(unit=unit, experiment=exp, job=job, attr=attr)


def test_non_set_topics_are_not_parsed():
    assert topics.parse_set_topic("pioreactor/sim01/demo/stirring/target_rpm") is None
    assert topics.parse_set_topic("other/sim01/demo/stirring/target_rpm/set") is None


def test_filter_matching():
    assert topics.matches("pioreactor/+/+/stirring/+/set", "pioreactor/sim01/demo/stirring/target_rpm/set")
    assert topics.matches("pioreactor/#", "pioreactor/sim01/demo/stirring/$state")
    assert not topics.matches("pioreactor/+/demo/+", "pioreactor/sim01/other/x")
    assert not topics.matches("a/+", "a/b/c")
    assert not topics.matches("a/b/c", "a/b")


@given(st.lists(segment, min_size=1, max_size=5))
def test_a_topic_matches_itself_and_hash(parts):
    topic = "/".join(parts)
    assert topics.matches(topic, topic)
    assert topics.matches("#", topic)
    assert topics.matches("/".join("+" for _ in parts), topic)


def test_encoding():
    assert topics.encode("ready") == "ready"
    assert topics.encode(500.0) == "500.0"
    assert topics.encode(True) == "true"
    assert topics.encode({"measured_rpm": 5.0}) == '{"measured_rpm":5.0}'
    assert topics.decode("500.0") == 500.0 and topics.decode("ready") == "ready"
