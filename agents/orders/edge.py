"""Rules of the HTTP edge: the Idempotency-Key contract and request validation.

The order id is derived from the Idempotency-Key, so the key's record IS the order's
partition: creating it is one insert that either wins or finds the earlier order, with no
window between "check the key" and "write the order".
"""

from __future__ import annotations

import hashlib
import json
import uuid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.orders.model import LineItem, Order, PointOfSale

if TYPE_CHECKING:  # jsonschema loads with the first request's schema (cold start)
    from jsonschema import Draft202012Validator

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
# A fixed namespace so the same key names the same order on every instance.
ORDER_NAMESPACE = uuid.UUID("6f1c0a52-5a3e-4c2b-9a59-3c1f6b7e0d42")
PLACE_ORDER_SCHEMA = Path(__file__).with_name("schemas") / "place-order.json"


class BadRequest(ValueError):
    """The request cannot be accepted as sent (HTTP 400); the message says why."""


@cache
def http_schema(path: Path) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(path.read_text()))


def order_id_for(idempotency_key: str) -> str:
    return str(uuid.uuid5(ORDER_NAMESPACE, idempotency_key))


def request_hash(body: dict[str, Any]) -> str:
    """Same JSON document, same hash, whatever the key order or whitespace."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def validated(schema: Path, raw: bytes) -> dict[str, Any]:
    """Parse a JSON body and check it against the JSON Schema file `schema`; BadRequest if
    not."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as undecodable:
        raise BadRequest(f"body is not UTF-8 JSON: {undecodable}") from None
    from jsonschema.exceptions import best_match

    violation = best_match(http_schema(schema).iter_errors(body))
    if violation is not None:
        path = "/".join(str(part) for part in violation.absolute_path) or "(root)"
        raise BadRequest(f"invalid at {path}: {violation.message}")
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def place_order_request(idempotency_key: str | None, raw: bytes) -> Order:
    key = (idempotency_key or "").strip()
    if not key:
        raise BadRequest(f"the {IDEMPOTENCY_HEADER} header is required")
    if len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"the {IDEMPOTENCY_HEADER} header is longer than {MAX_KEY_LENGTH}")
    body = validated(PLACE_ORDER_SCHEMA, raw)
    items = tuple(LineItem(item["sku"], item["quantity"], item["unitPriceCents"])
                  for item in body["items"])
    where = body.get("location")
    location = None if where is None else PointOfSale(where["country"], where["lat"], where["lon"])
    return Order(order_id_for(key), body["customerId"], items, body["card"], request_hash(body),
                 location)
