"""What the ops tool reads: the entity catalogue from infra/entities/ and the app settings."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from agents.backbone.errors import ConfigurationError
from agents.ops.config import Catalogue, OpsError, blob_service, load_settings
from agents.ops.outbox import parse_age


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def test_every_queue_and_subscription_of_the_app_has_a_dead_letter_entry(catalogue):
    paths = {entity.path for entity in catalogue.servicebus}
    assert {"orders-saga", "fraud-poison-events", "fraud-alerts/orders",
            "triage-tickets/billing", "triage-tickets/urgent"} <= paths
    assert "fraud-alerts" not in paths  # a topic has no dead-letter queue of its own


def test_the_name_prefix_picks_the_connection_setting(catalogue):
    assert catalogue.entity("orders-saga").setting == "ORDERS_SERVICEBUS"
    assert catalogue.entity("fraud-alerts/orders").setting == "FRAUD_SERVICEBUS"
    assert catalogue.entity("triage-tickets/billing").setting == "TRIAGE_SERVICEBUS"
    assert catalogue.grid_subscription("triage").setting == "TRIAGE_EVENTGRID"


def test_a_subscription_is_found_by_azures_path_form_in_any_case(catalogue):
    entity = catalogue.entity("Triage-Tickets/Subscriptions/Billing")
    assert (entity.topic, entity.name, entity.send_to) == (
        "triage-tickets", "billing", "triage-tickets")


def test_the_duplicate_window_is_the_topics_for_a_subscription(catalogue):
    entity = catalogue.entity("triage-tickets/billing")
    assert entity.requires_duplicate_detection
    assert entity.duplicate_window == timedelta(minutes=5)


def test_the_parking_queue_and_dead_letter_container_come_from_the_files(catalogue):
    assert [queue.name for queue in catalogue.poison_queues()] == ["fraud-poison-events"]
    assert catalogue.dead_letter_containers() == ["eventgrid-deadletter"]
    assert catalogue.hubs == {"fraud-payments"}


def test_an_unknown_entity_names_the_known_ones(catalogue):
    with pytest.raises(OpsError, match="unknown Service Bus entity 'orders'; known: orders-saga"):
        catalogue.entity("orders")


def test_a_missing_entity_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(OpsError, match="--entities"):
        Catalogue.load(tmp_path)


def test_the_environment_wins_over_local_settings_json(tmp_path):
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"ORDERS_SERVICEBUS": "from-file",
                                               "STATE_STORAGE": "file-only"}}))
    values = load_settings(settings, env={"ORDERS_SERVICEBUS": "from-env"})
    assert values["ORDERS_SERVICEBUS"] == "from-env"
    assert values["STATE_STORAGE"] == "file-only"


def test_blob_storage_takes_the_identity_based_form():
    client = blob_service("AzureWebJobsStorage", {
        "AzureWebJobsStorage__blobServiceUri": "https://appstore.blob.core.windows.net",
        "AzureWebJobsStorage__credential": "managedidentity"})
    assert client.url.startswith("https://appstore.blob.core.windows.net")


def test_missing_blob_storage_names_both_forms():
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage__blobServiceUri"):
        blob_service("AzureWebJobsStorage", {})


@pytest.mark.parametrize(("text", "age"), [("30s", timedelta(seconds=30)),
                                           ("5m", timedelta(minutes=5)),
                                           ("2h", timedelta(hours=2)),
                                           ("1d", timedelta(days=1))])
def test_ages_are_written_with_a_unit(text, age):
    assert parse_age(text) == age
