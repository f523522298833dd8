import json
from pathlib import Path

from agents.orders import entities

ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities"
CONFIG = ENTITIES / "servicebus.json"


def _namespace() -> dict:
    return json.loads(CONFIG.read_text())["UserConfig"]["Namespaces"][0]


def test_every_orders_queue_is_declared_in_the_entity_config() -> None:
    declared = {queue["Name"] for queue in _namespace()["Queues"]}
    assert set(entities.QUEUES) <= declared


def test_the_config_declares_no_orders_queue_the_agent_ignores() -> None:
    declared = {q["Name"] for q in _namespace()["Queues"] if q["Name"].startswith("orders-")}
    assert declared == set(entities.QUEUES)


def test_the_fraud_alerts_subscription_for_orders_is_declared() -> None:
    topics = {topic["Name"]: topic for topic in _namespace()["Topics"]}
    subscriptions = {s["Name"] for s in topics[entities.FRAUD_ALERTS_TOPIC]["Subscriptions"]}
    assert entities.FRAUD_ALERTS_SUBSCRIPTION in subscriptions


def test_orders_queues_detect_duplicates_so_outbox_ids_deduplicate() -> None:
    queues = {q["Name"]: q["Properties"] for q in _namespace()["Queues"]}
    assert all(queues[name]["RequiresDuplicateDetection"] for name in entities.QUEUES)


def test_the_payment_stream_hub_is_declared_in_the_event_hubs_config() -> None:
    config = json.loads((ENTITIES / "eventhubs.json").read_text())
    hubs = {entity["Name"] for namespace in config["UserConfig"]["NamespaceConfig"]
            for entity in namespace["Entities"]}
    assert entities.PAYMENTS_HUB in hubs
