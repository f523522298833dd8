"""SDK clients from one connection setting name: connection string or identity-based."""

from __future__ import annotations

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from agents.backbone import ConfigurationError, settings
from devstack.azurite import ACCOUNT_KEY

EMULATOR = ("Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")
NAMESPACE = "orders-sb.servicebus.windows.net"


def test_a_connection_string_setting_wins():
    client = settings.servicebus_client("ORDERS_SERVICEBUS", env={
        "ORDERS_SERVICEBUS": EMULATOR, "ORDERS_SERVICEBUS__fullyQualifiedNamespace": NAMESPACE})
    assert client.fully_qualified_namespace == "localhost"


def test_identity_based_with_a_user_assigned_managed_identity():
    env = {"ORDERS_SERVICEBUS__fullyQualifiedNamespace": NAMESPACE,
           "ORDERS_SERVICEBUS__credential": "managedidentity",
           "ORDERS_SERVICEBUS__clientId": "00000000-0000-0000-0000-000000000001"}
    assert isinstance(settings.credential("ORDERS_SERVICEBUS", env), ManagedIdentityCredential)
    client = settings.servicebus_client("ORDERS_SERVICEBUS", env=env)
    assert client.fully_qualified_namespace == NAMESPACE


def test_identity_based_without_credential_kind_uses_the_default_chain():
    env = {"FRAUD_EVENTHUBS__fullyQualifiedNamespace": "fraud-eh.servicebus.windows.net"}
    assert isinstance(settings.credential("FRAUD_EVENTHUBS", env), DefaultAzureCredential)
    producer = settings.eventhub_producer("FRAUD_EVENTHUBS", "fraud-payments", env=env)
    assert producer.eventhub_name == "fraud-payments"


def test_a_missing_setting_names_both_ways_to_configure_it():
    with pytest.raises(ConfigurationError, match="ORDERS_SERVICEBUS__fullyQualifiedNamespace"):
        settings.servicebus_client("ORDERS_SERVICEBUS", env={})


def test_tables_from_a_connection_string_or_a_table_service_uri():
    local = settings.table_service("STATE_STORAGE", env={"STATE_STORAGE": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={ACCOUNT_KEY};TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;")})
    assert local.account_name == "devstoreaccount1"
    remote = settings.table_service("STATE_STORAGE", env={
        "STATE_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
        "STATE_STORAGE__credential": "managedidentity"})
    assert remote.url.startswith("https://acct.table.core.windows.net")
