"""Settings resolution (local.settings.json, %SETTING% expressions) and indexing the app."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devstack.host.index import index_functions, load_app
from devstack.host.settings import AppSettings, HostConfig, SettingsError, parse_timespan
from tests.devstack_host.conftest import SAMPLE_APP


def test_local_settings_values_are_read_and_the_environment_wins():
    settings = AppSettings.load(SAMPLE_APP, environ={"SAMPLE_GREETING": "Hi"})
    assert settings.get("TICK_SCHEDULE") == "0 0 0 1 1 *"
    assert settings.get("SAMPLE_GREETING") == "Hi"


def test_binding_expression_is_replaced_by_the_app_setting():
    settings = AppSettings({"QUEUE": "orders-saga"})
    assert settings.resolve("%QUEUE%") == "orders-saga"
    assert settings.resolve("prefix-%QUEUE%-suffix") == "prefix-orders-saga-suffix"


def test_binding_expression_naming_a_missing_setting_is_a_clear_error():
    with pytest.raises(SettingsError, match="'NOT_THERE'"):
        AppSettings({}).resolve("%NOT_THERE%")


def test_missing_connection_setting_names_the_setting():
    with pytest.raises(SettingsError, match="'ORDERS_SERVICEBUS'"):
        AppSettings({}).connection("ORDERS_SERVICEBUS")


def test_timespans_parse_like_dotnet():
    assert parse_timespan("00:05:00") == timedelta(minutes=5)
    assert parse_timespan("1.02:00:00.5") == timedelta(days=1, hours=2, milliseconds=500)
    with pytest.raises(SettingsError):
        parse_timespan("5 minutes")


def test_host_json_route_prefix_and_extension_options_are_read():
    config = HostConfig.load(SAMPLE_APP)
    assert config.route_prefix == "api"
    assert config.extension("servicebus")["maxConcurrentCalls"] == 4


def test_indexing_reads_triggers_outputs_and_retry_policies_from_registrations():
    specs = {spec.name: spec for spec in index_functions(load_app(SAMPLE_APP))}
    assert specs["order"].trigger["route"] == "orders/{order_id:int}"
    assert specs["order"].trigger["authLevel"] == "FUNCTION"
    assert specs["tick"].trigger["schedule"] == "%TICK_SCHEDULE%"
    assert [o["type"] for o in specs["tick"].outputs] == ["blob"]
    assert specs["flaky_tick"].retry == {
        "setting_name": "retry_policy", "strategy": "fixed_delay", "max_retry_count": "3",
        "delay_interval": "00:00:00.05"}
    assert specs["triage_ticket_received"].trigger_type == "eventGridTrigger"
