"""The Event Grid adapter sends CloudEvents with the official client to a real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from agents.backbone import (
    ConfigurationError,
    Envelope,
    EventGridPublisher,
    OutboxRow,
    PublishFailed,
    SchemaRegistry,
    parse_eventgrid,
    settings,
)
from tests.integration.support import RecordingEndpoint


@pytest.fixture
def topic() -> Iterator[RecordingEndpoint]:
    """A loopback stand-in for an Event Grid topic endpoint: records, answers 200 or 503."""
    with RecordingEndpoint(status=200) as endpoint:
        yield endpoint


@pytest.fixture
def publisher(topic) -> EventGridPublisher:
    env = {"TRIAGE_EVENTGRID__topicEndpointUri":
           f"http://127.0.0.1:{topic.port}/api/events",
           "TRIAGE_EVENTGRID__topicKey": "local-key"}
    client = settings.eventgrid_publisher("TRIAGE_EVENTGRID", env=env, retry_total=0)
    return EventGridPublisher({"triage-routed": client})


def rows(count: int) -> list[OutboxRow]:
    return [OutboxRow.new("t1", Envelope.new("triage.ticket.routed", {"team": f"t{n}"},
                                             source="/agents/triage", subject="t1"),
                          destination="triage-routed", scheduled_at=None,
                          created_at=datetime.now(UTC)) for n in range(count)]


def test_rows_go_out_as_one_cloudevents_batch_that_parses_back(topic, publisher):
    sent = rows(3)
    publisher.publish(sent)
    [(headers, body)] = topic.received
    assert headers["aeg-sas-key"] == "local-key"
    assert headers["Content-Type"].startswith("application/cloudevents-batch+json")
    schemas = SchemaRegistry()
    schemas.register("triage.ticket.routed", {"type": "object", "required": ["team"]})
    assert parse_eventgrid(body, registry=schemas) == [row.envelope for row in sent]


def test_more_than_a_hundred_rows_are_sent_in_chunks(topic, publisher):
    publisher.publish(rows(150))
    assert [len(json.loads(body)) for _, body in topic.received] == [100, 50]


def test_a_refusing_topic_raises_publish_failed(topic, publisher):
    topic.status = 503
    with pytest.raises(PublishFailed, match="triage-routed"):
        publisher.publish(rows(1))


def test_a_scheduled_row_is_refused_rather_than_delivered_early(topic, publisher):
    [row] = rows(1)
    row.scheduled_at = datetime.now(UTC)
    with pytest.raises(ConfigurationError, match="cannot schedule"):
        publisher.publish([row])
    assert topic.received == []
