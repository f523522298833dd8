import json

import pytest

from agents.contracts.orders import LOCATION_SCHEMA
from agents.orders.edge import (
    PLACE_ORDER_SCHEMA,
    BadRequest,
    order_id_for,
    place_order_request,
    request_hash,
)

BODY = {"customerId": "c-1", "card": "tok-ok",
        "items": [{"sku": "sku-1", "quantity": 2, "unitPriceCents": 500}]}


def _raw(body: object) -> bytes:
    return json.dumps(body).encode()


def test_a_missing_idempotency_key_is_refused() -> None:
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        place_order_request(None, _raw(BODY))


def test_a_blank_idempotency_key_is_refused() -> None:
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        place_order_request("  ", _raw(BODY))


def test_the_same_key_always_names_the_same_order() -> None:
    assert place_order_request("k-1", _raw(BODY)).order_id == order_id_for("k-1")
    assert order_id_for("k-1") != order_id_for("k-2")


def test_the_request_hash_ignores_key_order_and_whitespace() -> None:
    reordered = json.loads(json.dumps(BODY, sort_keys=True))
    assert request_hash(reordered) == request_hash(BODY)
    assert request_hash({**BODY, "card": "tok-other"}) != request_hash(BODY)


def test_a_body_that_is_not_json_is_refused_with_the_reason() -> None:
    with pytest.raises(BadRequest, match="not UTF-8 JSON"):
        place_order_request("k", b"{nope")


def test_a_body_breaking_the_schema_is_refused_with_the_path() -> None:
    bad = {**BODY, "items": [{"sku": "sku-1", "quantity": 0, "unitPriceCents": 5}]}
    with pytest.raises(BadRequest, match="items/0/quantity"):
        place_order_request("k", _raw(bad))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(BadRequest, match="Additional properties"):
        place_order_request("k", _raw({**BODY, "discount": 100}))


def test_a_valid_body_becomes_line_items() -> None:
    request = place_order_request("k", _raw(BODY))
    assert [(i.sku, i.quantity, i.unit_price_cents) for i in request.items] == [("sku-1", 2, 500)]


PARIS = {"country": "FR", "lat": 48.86, "lon": 2.35}


def test_a_location_travels_with_the_order_into_the_saga_data() -> None:
    order = place_order_request("k", _raw({**BODY, "location": PARIS}))
    assert order.saga_data()["location"] == PARIS


def test_an_order_without_a_location_carries_none() -> None:
    assert "location" not in place_order_request("k", _raw(BODY)).saga_data()


def test_a_location_off_the_globe_is_refused_with_the_path() -> None:
    with pytest.raises(BadRequest, match="location/lat"):
        place_order_request("k", _raw({**BODY, "location": {**PARIS, "lat": 91}}))


def test_the_place_order_location_is_the_payment_streams_location() -> None:
    schema = json.loads(PLACE_ORDER_SCHEMA.read_text())["properties"]["location"]
    assert {k: v for k, v in schema.items() if k != "description"} == LOCATION_SCHEMA
