"""The administration API with the official `ServiceBusAdministrationClient` (sync and aio):
entities created, read, listed, updated and deleted over HTTP, and runtime counts."""

from __future__ import annotations

import datetime
import json
import urllib.request
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio.management import (
    ServiceBusAdministrationClient as AsyncAdministrationClient,
)
from azure.servicebus.management import (
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from devstack.server import DevStack

from .conftest import TEST_CONFIG

MAX_WAIT = 5


class PlainHttp(RequestsTransport):
    """azure-servicebus 7.15 parses UseDevelopmentEmulator for the administration client but
    still builds https:// URLs; Microsoft's emulator serves plain HTTP there too, so the
    client needs this transport for either (the JavaScript and .NET clients do not)."""

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        request.url = request.url.replace("https://", "http://", 1)
        return super().send(request, **kwargs)


class AioPlainHttp(AioHttpTransport):
    async def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        request.url = request.url.replace("https://", "http://", 1)
        return await super().send(request, **kwargs)


@pytest.fixture
def stack() -> Iterator[DevStack]:
    with DevStack([TEST_CONFIG], port=0, management_port=0) as running:
        yield running


@pytest.fixture
def admin(stack: DevStack) -> Iterator[ServiceBusAdministrationClient]:
    assert stack.management_connection_string is not None
    with ServiceBusAdministrationClient.from_connection_string(
            stack.management_connection_string, transport=PlainHttp()) as client:
        yield client


def send(stack: DevStack, entity: str, *bodies: str) -> None:
    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_sender(entity) as sender:
        sender.send_messages([ServiceBusMessage(body) for body in bodies])


def test_health_answers_on_the_management_port(stack):
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.management_port}/health") as reply:
        assert reply.status == 200
        assert json.loads(reply.read()) == {"status": "healthy"}


def test_the_management_connection_string_names_the_http_port(stack):
    assert f"localhost:{stack.management_port};" in stack.management_connection_string
    assert "UseDevelopmentEmulator=true" in stack.management_connection_string


def test_configured_queues_are_listed_with_their_settings(admin):
    queues = {q.name: q for q in admin.list_queues()}
    assert "work" in queues and "sessions" in queues
    assert queues["sessions"].requires_session is True
    assert queues["short-lock"].lock_duration == datetime.timedelta(seconds=1)
    assert queues["dedupe"].requires_duplicate_detection is True


def test_a_created_queue_carries_messages_and_is_gone_after_delete(admin, stack):
    created = admin.create_queue("made-here", max_delivery_count=4,
                                 lock_duration=datetime.timedelta(seconds=20))
    assert (created.name, created.max_delivery_count) == ("made-here", 4)
    send(stack, "made-here", "hello")
    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_receiver(
                "made-here", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        assert [str(m) for m in receiver.receive_messages(max_wait_time=MAX_WAIT)] == ["hello"]
    admin.delete_queue("made-here")
    with pytest.raises(ResourceNotFoundError):
        admin.get_queue("made-here")


def test_creating_an_existing_queue_conflicts_and_deleting_a_missing_one_is_not_found(admin):
    with pytest.raises(ResourceExistsError):
        admin.create_queue("work")
    with pytest.raises(ResourceNotFoundError):
        admin.delete_queue("never-made")


def test_an_updated_queue_applies_its_new_max_delivery_count(admin, stack):
    queue = admin.get_queue("two-tries")
    queue.max_delivery_count = 1
    admin.update_queue(queue)
    assert admin.get_queue("two-tries").max_delivery_count == 1
    send(stack, "two-tries", "fragile")
    with ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_receiver("two-tries") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.abandon_message(message)
    assert admin.get_queue_runtime_properties("two-tries").dead_letter_message_count == 1


def test_runtime_properties_count_active_dead_lettered_and_scheduled(admin, stack):
    send(stack, "work", "a", "b", "c")
    with ServiceBusClient.from_connection_string(stack.connection_string) as client:
        with client.get_queue_sender("work") as sender:
            later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
            sender.schedule_messages(ServiceBusMessage("later"), later)
        with client.get_queue_receiver("work") as receiver:
            (first,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
            receiver.dead_letter_message(first, reason="bad")
    runtime = admin.get_queue_runtime_properties("work")
    assert (runtime.active_message_count, runtime.dead_letter_message_count,
            runtime.scheduled_message_count, runtime.total_message_count) == (2, 1, 1, 4)
    assert (runtime.transfer_message_count, runtime.transfer_dead_letter_message_count) == (0, 0)
    assert runtime.size_in_bytes > 0


def test_topic_subscription_and_rules_route_as_created(admin, stack):
    admin.create_topic("made-topic")
    admin.create_subscription("made-topic", "billing")
    assert [r.name for r in admin.list_rules("made-topic", "billing")] == ["$Default"]
    admin.delete_rule("made-topic", "billing", "$Default")
    admin.create_rule("made-topic", "billing", "team",
                      filter=CorrelationRuleFilter(properties={"team": "billing", "tier": 2}))
    admin.create_rule("made-topic", "billing", "big", filter=SqlRuleFilter("amount > 100"),
                      action=SqlRuleAction("SET routed = 'big'"))
    rules = {r.name: r for r in admin.list_rules("made-topic", "billing")}
    assert rules["team"].filter.properties == {"team": "billing", "tier": 2}
    assert rules["big"].filter.sql_expression == "amount > 100"
    assert rules["big"].action.sql_expression == "SET routed = 'big'"
    with ServiceBusClient.from_connection_string(stack.connection_string) as client:
        with client.get_topic_sender("made-topic") as sender:
            sender.send_messages([
                ServiceBusMessage("team", application_properties={"team": "billing", "tier": 2}),
                ServiceBusMessage("other", application_properties={"team": "ops"}),
                ServiceBusMessage("big", application_properties={"amount": 500}),
            ])
        with client.get_subscription_receiver(
                "made-topic", "billing",
                receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            got = receiver.receive_messages(max_message_count=5, max_wait_time=MAX_WAIT)
            got += receiver.receive_messages(max_message_count=5, max_wait_time=1)
    assert sorted(str(m) for m in got) == ["big", "team"]
    routed = {str(m): m.application_properties.get(b"routed") for m in got}
    assert routed["big"] == b"big"
    assert admin.get_topic_runtime_properties("made-topic").subscription_count == 1


def test_a_rule_can_be_replaced_and_a_deleted_subscription_is_gone(admin):
    admin.create_topic("t2")
    admin.create_subscription("t2", "s", max_delivery_count=5)
    rule = admin.get_rule("t2", "s", "$Default")
    assert isinstance(rule.filter, TrueRuleFilter)
    rule.filter = SqlRuleFilter("size > 1")
    admin.update_rule("t2", "s", rule)
    assert admin.get_rule("t2", "s", "$Default").filter.sql_expression == "size > 1"
    assert admin.get_subscription("t2", "s").max_delivery_count == 5
    admin.delete_subscription("t2", "s")
    with pytest.raises(ResourceNotFoundError):
        admin.get_subscription("t2", "s")
    admin.delete_topic("t2")
    assert "t2" not in [t.name for t in admin.list_topics()]


def test_a_rule_with_a_bad_sql_filter_is_refused(admin):
    admin.create_topic("t3")
    admin.create_subscription("t3", "s")
    with pytest.raises(Exception, match="rule 'broken'"):
        admin.create_rule("t3", "s", "broken", filter=SqlRuleFilter("amount >"))


def test_listing_pages_through_more_queues_than_one_page(admin):
    for index in range(5):
        admin.create_queue(f"paged-{index}")
    names = [q.name for q in admin.list_queues(max_page_size=2)]
    assert [n for n in names if n.startswith("paged-")] == [f"paged-{i}" for i in range(5)]
    assert len(names) == len(set(names))


async def test_the_aio_client_creates_and_reads_runtime_properties(stack):
    assert stack.management_connection_string is not None
    async with AsyncAdministrationClient.from_connection_string(
            stack.management_connection_string, transport=AioPlainHttp()) as admin:
        await admin.create_queue("async-made")
        runtime = await admin.get_queue_runtime_properties("async-made")
        assert runtime.active_message_count == 0
        names = [q.name async for q in admin.list_queues()]
        assert "async-made" in names


def test_a_subscription_created_with_a_default_rule_description_uses_it(admin, stack):
    # The .NET client sends the subscription's first rule inside the create request; the
    # Python client has no such option, so the request is written out here.
    admin.create_topic("t4")
    body = (
        b'<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
        b'<SubscriptionDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/'
        b'servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        b'<LockDuration>PT30S</LockDuration><DefaultRuleDescription>'
        b'<Filter i:type="SqlFilter"><SqlExpression>size &gt; 10</SqlExpression></Filter>'
        b'<Action i:type="EmptyRuleAction"/><Name>$Default</Name></DefaultRuleDescription>'
        b'</SubscriptionDescription></content></entry>'
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.management_port}/t4/subscriptions/big?api-version=2021-05",
        data=body, method="PUT", headers={"Content-Type": "application/atom+xml"})
    with urllib.request.urlopen(request) as reply:
        assert reply.status == 201
    (rule,) = admin.list_rules("t4", "big")
    assert (rule.name, rule.filter.sql_expression) == ("$Default", "size > 10")
    assert admin.get_subscription("t4", "big").lock_duration == datetime.timedelta(seconds=30)
