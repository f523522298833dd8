"""Table keys: any CloudEvent id or subject becomes a valid, distinct PartitionKey/RowKey."""

from __future__ import annotations

from agents.backbone.tables import inbox_row, table_key


def test_safe_ids_pass_unchanged():
    assert table_key("order-42_b.c:d") == "order-42_b.c:d"


def test_forbidden_characters_are_percent_encoded():
    assert table_key("orders/o1#x?y\\z") == "orders%2Fo1%23x%3Fy%5Cz"
    assert table_key("tab\there") == "tab%09here"


def test_encoding_keeps_distinct_ids_distinct():
    assert table_key("a/b") != table_key("a%2Fb")


def test_an_id_over_the_key_limit_becomes_a_stable_hash():
    long_id = "x" * 2000
    assert table_key(long_id) == table_key(long_id)
    assert len(inbox_row(long_id)) < 100
