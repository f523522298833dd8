"""Every entity the fraud agent names is declared in infra/entities/ (shared with Bicep and
devstack)."""

import json
from pathlib import Path

from agents.fraud import entities

ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities"


def _servicebus() -> dict:
    return json.loads((ENTITIES / "servicebus.json").read_text())["UserConfig"]["Namespaces"][0]


def _hubs() -> dict:
    config = json.loads((ENTITIES / "eventhubs.json").read_text())
    return {entity["Name"]: entity for namespace in config["UserConfig"]["NamespaceConfig"]
            for entity in namespace["Entities"]}


def test_the_payment_hub_and_the_scoring_consumer_group_are_declared() -> None:
    groups = {group["Name"] for group in _hubs()[entities.PAYMENTS_HUB]["ConsumerGroups"]}
    assert entities.CONSUMER_GROUP in groups


def test_the_alerts_topic_and_the_poison_queue_are_declared_with_duplicate_detection() -> None:
    namespace = _servicebus()
    topics = {t["Name"]: t["Properties"] for t in namespace["Topics"]}
    queues = {q["Name"]: q["Properties"] for q in namespace["Queues"]}
    assert topics[entities.ALERTS_TOPIC]["RequiresDuplicateDetection"]
    assert queues[entities.POISON_QUEUE]["RequiresDuplicateDetection"]
