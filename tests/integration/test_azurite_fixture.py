from azure.data.tables import TableServiceClient

from devstack.azurite import Azurite


def test_azurite_serves_tables_on_its_own_ports(azurite: Azurite) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.create_table_if_not_exists("fixturecheck")
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "value": 7})
    assert table.get_entity("p", "r")["value"] == 7
