"""Topics, subscriptions and rules with the sync SDK, plus the SQL filter language."""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode

from devstack.servicebus.entities import RuleSpec
from devstack.servicebus.filters import FilterError, MessageFacts, Rule, parse_sql_filter
from devstack.servicebus.store import StoredMessage

MAX_WAIT = 3


def drain(client: ServiceBusClient, subscription: str) -> list:
    with client.get_subscription_receiver(
        "events", subscription, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        got = []
        while batch := receiver.receive_messages(max_message_count=20, max_wait_time=1):
            got.extend(batch)
        return got


def test_every_matching_subscription_gets_its_own_copy(client):
    with client.get_topic_sender("events") as sender:
        sender.send_messages(
            ServiceBusMessage("invoice", application_properties={"team": "billing"})
        )
        sender.send_messages(ServiceBusMessage("bug", application_properties={"team": "tech"}))
    assert [str(m) for m in drain(client, "all")] == ["invoice", "bug"]
    assert [str(m) for m in drain(client, "billing")] == ["invoice"]


def test_correlation_filter_on_a_system_property(client):
    with client.get_topic_sender("events") as sender:
        sender.send_messages(ServiceBusMessage("{}", content_type="application/json"))
        sender.send_messages(ServiceBusMessage("<x/>", content_type="application/xml"))
    assert [str(m) for m in drain(client, "json")] == ["{}"]


def test_sql_filter_and_set_action(client):
    with client.get_topic_sender("events") as sender:
        sender.send_messages([
            ServiceBusMessage("big p1", application_properties={"priority": "P1", "size": 20}),
            ServiceBusMessage("small p1", application_properties={"priority": "P1", "size": 1}),
            ServiceBusMessage("vip p1", subject="vip-42",
                              application_properties={"priority": "P1", "size": 1}),
            ServiceBusMessage("big p2", application_properties={"priority": "P2", "size": 20}),
        ])
    urgent = drain(client, "urgent")
    assert [str(m) for m in urgent] == ["big p1", "vip p1"]
    assert all(m.to == "pager" for m in urgent)
    assert all(m.application_properties[b"routed"] == 1 for m in urgent)
    assert [m.to for m in drain(client, "all")] == [None] * 4


def test_subscription_peek_lock_complete(client):
    with client.get_topic_sender("events") as sender:
        sender.send_messages(ServiceBusMessage("hello"))
    with client.get_subscription_receiver("events", "all") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.complete_message(message)
        assert receiver.peek_messages(5, sequence_number=0) == []


def _facts(user: dict, **system) -> MessageFacts:
    from devstack.amqp.message import encode_properties, section

    bare = encode_properties(**system) + section(0x74, user) + section(0x77, "body")
    message = StoredMessage(bare=bare, annotations={}, session_id=None, ttl_ms=None)
    return MessageFacts(message)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("color = 'red'", True),
        ("color <> 'red'", False),
        ("qty > 5 AND qty <= 10", True),
        ("qty < 5 OR color = 'red'", True),
        ("NOT (color = 'red')", False),
        ("color IN ('blue', 'red')", True),
        ("color NOT IN ('blue', 'green')", True),
        ("color LIKE 'r_d'", True),
        ("name LIKE 'a!%%' ESCAPE '!'", True),
        ("color NOT LIKE 'b%'", True),
        ("missing IS NULL", True),
        ("color IS NOT NULL", True),
        ("EXISTS(color)", True),
        ("NOT EXISTS(missing)", True),
        ("missing = 'x'", False),
        ("NOT (missing = 'x')", False),
        ("sys.MessageId = 'm-1'", True),
        ("sys.Label = 'greeting'", True),
        ("user.color = 'red'", True),
        ("qty * 2 + 1 = 15", True),
        ("ratio >= 0.5", True),
        ("flag = TRUE", True),
        ("[odd name] = 'y'", True),
        ("1 = 1", True),
    ],
)
def test_sql_filter_language(expression: str, expected: bool) -> None:
    facts = _facts(
        {"color": "red", "qty": 7, "name": "a%b", "ratio": 0.75, "flag": True, "odd name": "y"},
        message_id="m-1",
        subject="greeting",
    )
    rule = Rule.from_spec(RuleSpec("r", "Sql", sql=expression))
    assert rule.matches(facts) is expected


def test_invalid_sql_filter_is_refused() -> None:
    with pytest.raises(FilterError):
        parse_sql_filter("color = = 'red'")


def test_correlation_rule_needs_every_field_to_match() -> None:
    rule = Rule.from_spec(RuleSpec("r", "Correlation",
                                   {"Label": "greeting", "Properties": {"color": "red"}}))
    assert rule.matches(_facts({"color": "red"}, subject="greeting"))
    assert not rule.matches(_facts({"color": "blue"}, subject="greeting"))
    assert not rule.matches(_facts({"color": "red"}, subject="other"))


def test_subscription_dead_letter_queue(client):
    from azure.servicebus import ServiceBusSubQueue

    with client.get_topic_sender("events") as sender:
        sender.send_messages(ServiceBusMessage("bad"))
    with client.get_subscription_receiver("events", "all") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.dead_letter_message(message, reason="invalid")
    with client.get_subscription_receiver(
            "events", "all", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        (dead,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert (str(dead), dead.dead_letter_reason) == ("bad", "invalid")
        assert dead.dead_letter_source == "events/subscriptions/all"
        receiver.complete_message(dead)


def test_message_scheduled_on_a_topic_reaches_subscriptions_at_its_time(client):
    import datetime

    from .conftest import wait_until

    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    with client.get_topic_sender("events") as sender:
        sender.schedule_messages(
            ServiceBusMessage("later", application_properties={"team": "billing"}), due)
    got = wait_until(lambda: drain(client, "billing"))
    assert [str(m) for m in got] == ["later"]
    assert got[0].enqueued_time_utc >= due - datetime.timedelta(milliseconds=1)
