"""What the parsed Bicep templates promise about the production deployment."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra import templates
from tests.infra.templates import INFRA, MAIN, MODULES

IDENTITY_CONNECTIONS = [
    "ORDERS_SERVICEBUS",
    "FRAUD_SERVICEBUS",
    "FRAUD_EVENTHUBS",
    "TRIAGE_SERVICEBUS",
]
# Roles that manage or own a resource, which the app never needs.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "f526a384-b230-433a-b45c-95f59c4a2dec": "Azure Event Hubs Data Owner",
}


def _properties(resource_type: str) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"{path.name}:{name}", config["properties"])
        for path, name, config in templates.resources(resource_type)
    ]
    assert found, f"no {resource_type} declared"
    return found


def _allowed(path: Path, parameter: str) -> list[Any]:
    decorators = templates.template(path)["parameters"][parameter]["decorators"]
    allowed: list[Any] = next(d["argument"] for d in decorators if d["type"] == "allowed")
    return allowed


def _site_config(module_name: str) -> dict[str, Any]:
    [(_, _, app)] = [
        found
        for found in templates.resources("Microsoft.Web/sites")
        if found[0].name == f"{module_name}.bicep"
    ]
    site_config: dict[str, Any] = app["properties"]["siteConfig"]
    return site_config


def test_main_deploys_at_subscription_scope_with_the_azd_resource_token() -> None:
    main = templates.template(MAIN)
    token = templates.variable(MAIN, "resourceToken")

    assert main["globals"]["scope"]["value"] == "subscription"
    assert {"environmentName", "location"} <= set(main["parameters"])
    assert token["function"]["type"] == "to_lower"
    assert token["function"]["parameters"]["string_to_change"]["function"] == {
        "type": "unique_string",
        "parameters": {
            "base_string": {
                "operator": {
                    "type": "property_accessor",
                    "operands": {
                        "operand_1": {
                            "function": {
                                "type": "subscription",
                                "parameters": {"subscription_id": None},
                            }
                        },
                        "operand_2": "id",
                    },
                }
            },
            "extra_string_1": "environmentName",
            "extra_string_2": "location",
        },
    }


def test_main_outputs_what_azd_reads() -> None:
    outputs = templates.template(MAIN)["outputs"]

    assert {"AZURE_LOCATION", "AZURE_FUNCTION_APP_NAME", "AZURE_RESOURCE_GROUP"} <= set(outputs)


def test_main_names_resources_from_the_abbreviations_table() -> None:
    [load] = templates.function_calls(templates.variable(MAIN, "abbrs"), "load_json_content")

    assert load["parameters"]["file_path"] == "abbreviations.json"
    assert (INFRA / "abbreviations.json").is_file()


def test_every_module_is_a_local_file() -> None:
    for path in templates.bicep_files():
        for name, module in (templates.template(path).get("modules") or {}).items():
            assert module["type"] == "local", f"{path.name}:{name} is a registry module"
            assert (path.parent / module["detail"]["path"]).is_file(), f"{path.name}:{name}"


def test_main_reads_entities_from_the_files_devstack_loads() -> None:
    loaded = {
        call["parameters"]["file_path"]
        for call in templates.function_calls(
            templates.template(MAIN)["variables"], "load_json_content"
        )
    }

    assert {
        "entities/servicebus.json",
        "entities/eventhubs.json",
        "entities/eventgrid.json",
    } <= loaded


def test_premium_plan_keeps_instances_pre_warmed_and_always_ready() -> None:
    premium = MODULES / "function-app-premium.bicep"
    site_config = _site_config("function-app-premium")
    [(_, plan)] = [
        (path, config)
        for path, _, config in templates.resources("Microsoft.Web/serverfarms")
        if path == premium
    ]

    assert templates.parameter_default(premium, "sku") == "EP1"
    assert plan["sku"]["tier"] == "ElasticPremium"
    assert site_config["preWarmedInstanceCount"] == "preWarmedInstanceCount"
    assert site_config["minimumElasticInstanceCount"] == "minimumElasticInstanceCount"
    assert plan["properties"]["maximumElasticWorkerCount"] == "maximumElasticWorkerCount"
    assert templates.parameter_default(premium, "preWarmedInstanceCount") >= 1
    assert templates.parameter_default(premium, "minimumElasticInstanceCount") >= 1
    assert templates.parameter_default(MAIN, "hostingPlan") == "premium"


def test_flex_plan_keeps_the_http_group_and_single_functions_always_ready() -> None:
    flex = MODULES / "function-app-flex.bicep"
    [(_, _, app)] = [
        found for found in templates.resources("Microsoft.Web/sites") if found[0] == flex
    ]
    always_ready = {entry["name"] for entry in templates.parameter_default(flex, "alwaysReady")}

    assert (
        app["properties"]["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"]
        == "alwaysReady"
    )
    assert "http" in always_ready
    assert any(name.startswith("function:") for name in always_ready)
    assert _allowed(MAIN, "hostingPlan") == ["premium", "flexconsumption"]


def test_both_plans_run_python_3_11() -> None:
    flex = MODULES / "function-app-flex.bicep"
    premium = MODULES / "function-app-premium.bicep"
    [(_, _, flex_app)] = [
        found for found in templates.resources("Microsoft.Web/sites") if found[0] == flex
    ]

    assert templates.parameter_default(flex, "pythonVersion") == "3.11"
    assert flex_app["properties"]["functionAppConfig"]["runtime"] == {
        "name": "python",
        "version": "pythonVersion",
    }
    assert templates.parameter_default(premium, "pythonVersion") == "3.11"
    assert _site_config("function-app-premium")["linuxFxVersion"] == "Python|${pythonVersion}"


def test_connections_are_identity_based_with_the_user_assigned_identity() -> None:
    settings = templates.app_settings()

    for connection in IDENTITY_CONNECTIONS:
        assert f"{connection}__fullyQualifiedNamespace" in settings
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert f"{connection}__clientId" in settings
    assert "AzureWebJobsStorage__accountName" in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage__clientId" in settings
    assert "STATE_STORAGE__tableServiceUri" in settings
    assert settings["STATE_STORAGE__credential"] == "managedidentity"


def test_no_app_setting_holds_a_key_or_a_connection_string() -> None:
    settings = templates.app_settings()
    secret_names = re.compile(r"KEY|SECRET|PASSWORD|SAS|CONTENTAZUREFILE", re.IGNORECASE)

    assert [name for name in settings if secret_names.search(name)] == []
    # The one connection string left names the App Insights endpoint; the component refuses
    # telemetry without an Entra token (DisableLocalAuth), so it grants nothing.
    assert [name for name in settings if "CONNECTION_STRING" in name.upper()] == [
        "APPLICATIONINSIGHTS_CONNECTION_STRING"
    ]
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identity.outputs.clientId};Authorization=AAD"
    )
    assert [name for name in settings if name.upper() == "APPINSIGHTS_INSTRUMENTATIONKEY"] == []


@pytest.mark.parametrize("path", templates.bicep_files(), ids=lambda path: path.name)
def test_no_template_reads_or_writes_a_key(path: Path) -> None:
    text = path.read_text()

    for marker in (
        "listKeys",
        "listConnectionStrings",
        "AccountKey=",
        "SharedAccessKey",
        "@secure",
    ):
        assert marker not in text


def test_every_role_assignment_is_scoped_to_a_resource_of_its_template() -> None:
    assignments = list(templates.resources("Microsoft.Authorization/roleAssignments"))

    assert len(assignments) >= 10
    for path, name, config in assignments:
        declared = templates.template(path)["resources"]
        assert config.get("scope") in declared, f"{path.name}:{name} has no resource scope"


def test_role_definitions_are_built_in_guids_named_in_a_comment() -> None:
    for path in templates.bicep_files():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            for guid in templates.GUID.findall(line):
                named = "//" in line or lines[number - 1].lstrip().startswith("//")
                assert named, f"{path.name}:{number + 1} role {guid} has no comment naming it"
                assert guid not in BROAD_ROLES, f"{path.name}: grants {BROAD_ROLES[guid]}"


def test_every_role_assignment_uses_a_role_definition_guid() -> None:
    for path, name, config in templates.resources("Microsoft.Authorization/roleAssignments"):
        role = config["properties"]["roleDefinitionId"]["function"]
        variables = templates.template(path)["variables"]
        assert role["type"] == "subscription_resource_id"
        assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        guid = variables[role["parameters"]["resource_name_1"]]["value"]
        assert templates.GUID.fullmatch(guid), f"{path.name}:{name}"


@pytest.mark.parametrize(
    "subscription_type",
    [
        "Microsoft.EventGrid/topics/eventSubscriptions",
        "Microsoft.EventGrid/partnerTopics/eventSubscriptions",
    ],
)
def test_every_event_grid_subscription_retries_and_dead_letters_to_blob_with_an_identity(
    subscription_type: str,
) -> None:
    for where, properties in _properties(subscription_type):
        dead_letter = properties["deadLetterWithResourceIdentity"]
        assert dead_letter["identity"]["type"] == "SystemAssigned", where
        assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob", where
        assert set(properties["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
        assert properties["destination"]["endpointType"] == "AzureFunction", where
        assert properties["eventDeliverySchema"] == "CloudEventSchemaV1_0", where
        assert "includedEventTypes" in properties["filter"], where


def test_event_grid_entities_dead_letter_into_the_container_storage_creates() -> None:
    container = templates.parameter_default(MODULES / "storage.bicep", "deadLetterContainerName")

    for topic in templates.event_grid_topics():
        assert topic["InputSchema"] == "CloudEventSchemaV1_0"
        for subscription in topic["Subscriptions"]:
            assert subscription["Destination"]["EndpointType"] == "AzureFunction"
            assert subscription["DeadLetterDestination"]["EndpointType"] == "StorageBlob"
            assert subscription["DeadLetterDestination"]["BlobContainerName"] == container


def test_messaging_namespaces_disable_local_auth_and_require_tls_1_2() -> None:
    for resource_type in ("Microsoft.ServiceBus/namespaces", "Microsoft.EventHub/namespaces"):
        for where, properties in _properties(resource_type):
            assert properties["disableLocalAuth"] is True, where
            assert properties["minimumTlsVersion"] == "1.2", where


def test_event_grid_openai_and_app_insights_disable_local_auth() -> None:
    for where, properties in _properties("Microsoft.EventGrid/topics"):
        assert properties["disableLocalAuth"] is True, where
    for where, properties in _properties("Microsoft.CognitiveServices/accounts"):
        assert properties["disableLocalAuth"] is True, where
    for where, properties in _properties("Microsoft.Insights/components"):
        assert properties["DisableLocalAuth"] is True, where


def test_storage_forbids_shared_keys_public_blobs_and_old_tls() -> None:
    [(where, properties)] = _properties("Microsoft.Storage/storageAccounts")

    assert properties["allowSharedKeyAccess"] is False, where
    assert properties["allowBlobPublicAccess"] is False, where
    assert properties["minimumTlsVersion"] == "TLS1_2", where
    assert properties["supportsHttpsTrafficOnly"] is True, where


def test_function_apps_require_https_and_tls_1_2_without_publishing_passwords() -> None:
    for where, properties in _properties("Microsoft.Web/sites"):
        assert properties["httpsOnly"] is True, where
        assert properties["siteConfig"]["minTlsVersion"] == "1.2", where
        assert properties["siteConfig"]["ftpsState"] == "Disabled", where
    policies = list(templates.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies"))
    assert {(path.name, config["name"]) for path, _, config in policies} == {
        (module, kind)
        for module in ("function-app-premium.bicep", "function-app-flex.bicep")
        for kind in ("ftp", "scm")
    }
    assert all(config["properties"]["allow"] is False for _, _, config in policies)


def test_storage_creates_checkpoint_dead_letter_and_package_containers() -> None:
    storage = MODULES / "storage.bicep"
    containers = {
        templates.parameter_default(storage, name)
        for name in ("checkpointContainerName", "deadLetterContainerName", "packageContainerName")
    }
    declared = [
        config["name"]
        for path, _, config in templates.resources(
            "Microsoft.Storage/storageAccounts/blobServices/containers"
        )
        if path == storage
    ]

    assert containers == {"azure-webjobs-eventhub", "eventgrid-deadletter", "app-package"}
    assert sorted(declared) == sorted(
        ["checkpointContainerName", "deadLetterContainerName", "packageContainerName"]
    )


def _read_settings(module_name: str) -> set[str]:
    """Entity-file property names a module reads: `settings.<Name>`."""
    return set(re.findall(r"settings\.(\w+)", (MODULES / f"{module_name}.bicep").read_text()))


@pytest.mark.parametrize(
    ("module_name", "entities"),
    [
        ("servicebus-queue", lambda ns: ns.get("Queues", [])),
        ("servicebus-topic", lambda ns: ns.get("Topics", [])),
        (
            "servicebus-subscription",
            lambda ns: [s for t in ns.get("Topics", []) for s in t.get("Subscriptions", [])],
        ),
    ],
)
def test_service_bus_modules_apply_every_property_the_entity_file_sets(
    module_name: str, entities: Any
) -> None:
    set_in_file = {
        key
        for entity in entities(templates.service_bus_namespace())
        for key in entity.get("Properties", {})
    }
    defaults = set(templates.variable(MODULES / f"{module_name}.bicep", "defaults"))

    assert set_in_file <= defaults
    assert defaults <= _read_settings(module_name)


def test_service_bus_rules_use_filters_the_subscription_module_maps() -> None:
    text = (MODULES / "servicebus-subscription.bicep").read_text()
    mapped = set(re.findall(r"CorrelationFilter\.(\w+)", text))
    rules = [
        rule["Properties"]
        for topic in templates.service_bus_namespace().get("Topics", [])
        for subscription in topic.get("Subscriptions", [])
        for rule in subscription.get("Rules", [])
    ]

    assert {rule["FilterType"] for rule in rules} <= {"Correlation", "Sql"}
    assert {"Correlation", "Sql"} <= {rule["FilterType"] for rule in rules}
    for rule in rules:
        assert set(rule.get("CorrelationFilter", {})) <= mapped
        assert set(rule.get("SqlFilter", {})) <= {"SqlExpression"}
        assert set(rule.get("Action", {})) <= {"SqlExpression"}


def test_every_entity_name_starts_with_a_domain_that_has_its_connection_settings() -> None:
    domains = templates.variable(MAIN, "domains")
    settings = templates.app_settings()
    namespace = templates.service_bus_namespace()
    service_bus_names = [
        e["Name"] for e in namespace.get("Queues", []) + namespace.get("Topics", [])
    ]
    hub_names = [hub["Name"] for hub in templates.event_hubs()]

    for name in service_bus_names + hub_names:
        assert name.split("-", 1)[0] in domains, f"{name} starts with no domain of {domains}"
    for domain in {name.split("-", 1)[0] for name in service_bus_names}:
        assert f"{domain.upper()}_SERVICEBUS__fullyQualifiedNamespace" in settings
    for domain in {name.split("-", 1)[0] for name in hub_names}:
        assert f"{domain.upper()}_EVENTHUBS__fullyQualifiedNamespace" in settings


def test_topology_is_a_parameter_with_centralized_and_federated() -> None:
    assert _allowed(MAIN, "topology") == ["centralized", "federated"]
    assert templates.parameter_default(MAIN, "topology") == "centralized"


def test_openai_is_optional_and_reached_by_identity_only() -> None:
    openai = templates.template(MAIN)["modules"]["openAi"]
    roles = templates.template(MODULES / "openai.bicep")["variables"]

    assert openai["config"]["condition"] == "deployOpenAi"
    assert templates.parameter_default(MAIN, "deployOpenAi") is False
    assert roles["openAiUserRoleId"]["value"] == "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"


def test_reasoner_settings_name_a_provider_the_code_knows_with_a_timeout_and_few_retries(
) -> None:
    from agents.reasoning.settings import PROVIDERS

    reasoner = templates.variable(MAIN, "reasonerSettings")["operator"]["operands"]
    settings = templates.app_settings()

    assert reasoner["true_value"]["LLM_PROVIDER"] == "azure_openai"
    assert reasoner["false_value"]["LLM_PROVIDER"] in PROVIDERS
    assert {"AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_API_VERSION"} <= set(
        reasoner["true_value"])
    assert {"LLM_TIMEOUT_SECONDS", "LLM_MAX_RETRIES"} <= set(settings)
    assert templates.parameter_default(MAIN, "llmMaxRetries") <= 1
    assert not [name for name in settings if "KEY" in name.upper() and "OPENAI" in name.upper()]


def test_azure_yaml_deploys_the_repository_as_a_python_function_app() -> None:
    azure_yaml = yaml.safe_load((templates.REPO / "azure.yaml").read_text())

    assert azure_yaml["infra"]["path"] == "infra"
    assert azure_yaml["services"]["api"] == {
        "project": ".",
        "language": "python",
        "host": "function",
    }
    # azd finds the app to deploy the "api" service to by this tag.
    for _, name, config in templates.resources("Microsoft.Web/sites"):
        assert config["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}, (
            name
        )


def test_parameters_file_sets_only_declared_parameters_and_every_required_one() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = templates.template(MAIN)["parameters"]
    required = {name for name, parameter in declared.items() if parameter["default"] is None}

    assert set(parameters) <= set(declared)
    assert required <= set(parameters)


def test_every_abbreviation_main_uses_is_in_the_table() -> None:
    table = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", MAIN.read_text()))

    assert used
    assert used <= set(table)


@pytest.mark.parametrize(
    ("module_name", "units", "federated_units"),
    [
        ("serviceBus", "serviceBusUnits", "domains"),
        (
            "eventHubsNamespace",
            "eventHubUnits",
            {
                "function": {
                    "type": "union",
                    "parameters": {"arg_1": "eventHubDomains", "arg_2": []},
                }
            },
        ),
    ],
)
def test_federated_topology_gives_each_domain_a_namespace_holding_its_prefixed_entities(
    module_name: str, units: str, federated_units: Any
) -> None:
    namespaces = templates.template(MAIN)["modules"][module_name]["config"]
    choice = templates.variable(MAIN, units)["operator"]

    assert templates.variable(MAIN, "isFederated")["operator"]["operands"] == {
        "operand_1": "topology",
        "operand_2": "federated",
    }
    assert choice["operands"] == {
        "condition": "isFederated",
        "true_value": federated_units,
        "false_value": ["shared"],
    }
    assert namespaces["loop_type"]["detail"] == {"item_name": "unit", "array_name": units}
    assert namespaces["config"]["params"]["entityPrefix"]["operator"]["operands"] == {
        "condition": "isFederated",
        "true_value": "${unit}-",
        "false_value": "",
    }


def test_the_simulated_services_are_off_in_azure_and_on_in_the_local_sample() -> None:
    local = json.loads((templates.REPO / "local.settings.sample.json").read_text())["Values"]
    assert templates.app_settings()["ORDERS_SIMULATORS_ENABLED"] == "false"
    assert local["ORDERS_SIMULATORS_ENABLED"] == "true"


def test_the_helpdesk_webhook_publishes_to_its_topic_with_the_app_identity() -> None:
    settings = templates.app_settings()
    assert "TRIAGE_EVENTGRID__topicEndpointUri" in settings
    assert settings["TRIAGE_EVENTGRID__credential"] == "managedidentity"
    assert "TRIAGE_EVENTGRID__clientId" in settings
    topic = templates.template(MODULES / "eventgrid-topic.bicep")
    senders = [config for name, config in (topic.get("resources") or {}).items()
               if name == "appPublisher"]
    assert len(senders) == 1
    role = templates.body(senders[0]["config"])["properties"]
    assert role["roleDefinitionId"]["function"]["parameters"]["resource_name_1"] \
        == "eventGridDataSenderRoleId"
    assert "'d5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender" in (
        MODULES / "eventgrid-topic.bicep").read_text()
    assert role["principalId"] == "appPrincipalId"
