"""The Service Bus administration API over HTTP: `/health` and the ATOM management API that
`ServiceBusAdministrationClient` speaks (queues, topics, subscriptions, rules and their
runtime counts), on the port Microsoft's emulator uses for it (5300 by default).

Written by hand with the standard library's ElementTree: no maintained library serves this
Atom dialect (the SDK's serializers are private). Entities created here live in memory
only; `--data` keeps messages of configured entities.
"""

from __future__ import annotations

import datetime
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import isodate
from aiohttp import web

from devstack.servicebus.broker import Broker, MessageEntity, Topic
from devstack.servicebus.entities import EntitySettings, RuleSpec
from devstack.servicebus.filters import FilterError, Rule, parse_sql_action, parse_sql_filter

ATOM = "http://www.w3.org/2005/Atom"
SB = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
COUNTS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
_NAME = re.compile(r"^[A-Za-z0-9]$|^[A-Za-z0-9][\w\-.]*[A-Za-z0-9]$")
_XML_TYPES: dict[str, Callable[[str], Any]] = {
    "string": str, "int": int, "long": int, "short": int, "double": float, "float": float,
    "boolean": lambda text: text.strip().lower() == "true",
}


class AdminError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# ---------------------------------------------------------------- XML helpers


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    return str(isodate.duration_isoformat(datetime.timedelta(seconds=seconds)))


def _add(parent: ET.Element, name: str, value: Any, ns: str = SB) -> ET.Element:
    child = ET.SubElement(parent, f"{{{ns}}}{name}")
    if isinstance(value, bool):
        child.text = "true" if value else "false"
    elif value is not None:
        child.text = str(value)
    return child


def _fields(element: ET.Element | None) -> dict[str, ET.Element]:
    """Direct children by local name."""
    if element is None:
        return {}
    return {child.tag.rsplit("}", 1)[-1]: child for child in element}


def _text(fields: dict[str, ET.Element], name: str) -> str | None:
    element = fields.get(name)
    return None if element is None or element.text is None else element.text.strip()


def _flag(fields: dict[str, ET.Element], name: str, default: bool) -> bool:
    text = _text(fields, name)
    return default if text is None else text.lower() == "true"


def _seconds(fields: dict[str, ET.Element], name: str, default: float) -> float:
    text = _text(fields, name)
    if text is None:
        return default
    try:
        return float(isodate.parse_duration(text).total_seconds())
    except (isodate.ISO8601Error, ValueError):
        raise AdminError(400, f"{name}: {text!r} is not an ISO 8601 duration") from None


def _entity_name(reference: str | None) -> str:
    """ForwardTo arrives as a URL (https://host/queue) or a bare name."""
    if not reference:
        return ""
    return reference.rstrip("/").rsplit("/", 1)[-1] if "://" in reference else reference


def _entry(base: str, path: str, title: str, content: ET.Element) -> ET.Element:
    entry = ET.Element(f"{{{ATOM}}}entry")
    _add(entry, "id", f"{base}/{path}", ATOM)
    _add(entry, "title", title, ATOM).set("type", "text")
    now = _when(_now_ms())
    _add(entry, "published", now, ATOM)
    _add(entry, "updated", now, ATOM)
    ET.SubElement(entry, f"{{{ATOM}}}link", {"rel": "self", "href": f"{base}/{path}"})
    holder = ET.SubElement(entry, f"{{{ATOM}}}content", {"type": "application/xml"})
    holder.append(content)
    return entry


def _feed(base: str, path: str, entries: list[ET.Element], next_href: str | None) -> ET.Element:
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "title", path or "Publicly Listed Services", ATOM).set(
        "type", "text")
    _add(feed, "id", f"uuid:{uuid.uuid4()}", ATOM)
    _add(feed, "updated", _when(_now_ms()), ATOM)
    ET.SubElement(feed, f"{{{ATOM}}}link", {"rel": "self", "href": f"{base}/{path}"})
    if next_href is not None:
        ET.SubElement(feed, f"{{{ATOM}}}link", {"rel": "next", "href": next_href})
    feed.extend(entries)
    return feed


def _xml_response(element: ET.Element, status: int = 200) -> web.Response:
    body = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return web.Response(body=body, status=status,
                        content_type="application/atom+xml", charset="utf-8")


def _now_ms() -> int:
    return int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)


def _description(body: bytes, kind: str) -> dict[str, ET.Element]:
    """The fields of the `<kind>` inside an Atom entry's content."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AdminError(400, f"the request body is not XML: {exc}") from None
    content = _fields(root).get("content")
    description = _fields(content).get(kind)
    if description is None:
        raise AdminError(400, f"the request body holds no {kind}")
    return _fields(description)


# ---------------------------------------------------------------- descriptions


def _counts(parent: ET.Element, active: int, dead: int, scheduled: int) -> None:
    details = _add(parent, "CountDetails", None)
    _add(details, "ActiveMessageCount", active, COUNTS)
    _add(details, "DeadLetterMessageCount", dead, COUNTS)
    _add(details, "ScheduledMessageCount", scheduled, COUNTS)
    _add(details, "TransferMessageCount", 0, COUNTS)
    _add(details, "TransferDeadLetterMessageCount", 0, COUNTS)


def _entity_figures(broker: Broker, entity: MessageEntity) -> tuple[int, int, int, int, int]:
    """(active, dead-lettered, scheduled, total, size in bytes) of a queue or subscription."""
    active = sum(1 for m in entity.messages.values() if not m.deferred)
    dead_entity = entity.dead_letter
    dead = len(dead_entity) if dead_entity is not None else 0
    scheduled = len(broker.scheduled_messages(entity.path))
    size = sum(len(m.bare) for m in entity.messages.values())
    return active, dead, scheduled, len(entity) + dead + scheduled, size


def _settings_fields(parent: ET.Element, settings: EntitySettings) -> None:
    _add(parent, "LockDuration", _duration(settings.lock_duration))
    _add(parent, "RequiresSession", settings.requires_session)
    _add(parent, "DefaultMessageTimeToLive", _duration(settings.default_ttl))
    _add(parent, "DeadLetteringOnMessageExpiration", settings.dead_lettering_on_expiration)


def _queue_description(broker: Broker, entity: MessageEntity) -> ET.Element:
    settings = entity.settings
    active, dead, scheduled, total, size = _entity_figures(broker, entity)
    out = ET.Element(f"{{{SB}}}QueueDescription")
    _add(out, "LockDuration", _duration(settings.lock_duration))
    _add(out, "MaxSizeInMegabytes", 1024)
    _add(out, "RequiresDuplicateDetection", settings.requires_duplicate_detection)
    _add(out, "RequiresSession", settings.requires_session)
    _add(out, "DefaultMessageTimeToLive", _duration(settings.default_ttl))
    _add(out, "DeadLetteringOnMessageExpiration", settings.dead_lettering_on_expiration)
    _add(out, "DuplicateDetectionHistoryTimeWindow", _duration(settings.duplicate_window))
    _add(out, "MaxDeliveryCount", settings.max_delivery_count)
    _add(out, "EnableBatchedOperations", True)
    _add(out, "SizeInBytes", size)
    _add(out, "MessageCount", total)
    _add(out, "Status", "Active")
    _add(out, "ForwardTo", settings.forward_to or None)
    _add(out, "CreatedAt", _when(entity.created_ms))
    _add(out, "UpdatedAt", _when(entity.updated_ms))
    _add(out, "AccessedAt", _when(entity.updated_ms))
    _add(out, "SupportOrdering", True)
    _counts(out, active, dead, scheduled)
    _add(out, "AutoDeleteOnIdle", _duration(10675199 * 86400))
    _add(out, "EnablePartitioning", False)
    _add(out, "EntityAvailabilityStatus", "Available")
    _add(out, "EnableExpress", False)
    _add(out, "ForwardDeadLetteredMessagesTo", settings.forward_dead_lettered_to or None)
    return out


def _topic_description(broker: Broker, topic: Topic) -> ET.Element:
    out = ET.Element(f"{{{SB}}}TopicDescription")
    scheduled = len(broker.scheduled_messages(topic.path))
    _add(out, "DefaultMessageTimeToLive", _duration(topic.default_ttl))
    _add(out, "MaxSizeInMegabytes", 1024)
    _add(out, "RequiresDuplicateDetection", topic.requires_duplicate_detection)
    _add(out, "DuplicateDetectionHistoryTimeWindow", _duration(topic.duplicate_window))
    _add(out, "EnableBatchedOperations", True)
    _add(out, "SizeInBytes", 0)
    _add(out, "Status", "Active")
    _add(out, "CreatedAt", _when(topic.created_ms))
    _add(out, "UpdatedAt", _when(topic.updated_ms))
    _add(out, "AccessedAt", _when(topic.updated_ms))
    _add(out, "SupportOrdering", True)
    _counts(out, 0, 0, scheduled)
    _add(out, "SubscriptionCount", len(topic.subscriptions))
    _add(out, "AutoDeleteOnIdle", _duration(10675199 * 86400))
    _add(out, "EnablePartitioning", False)
    _add(out, "EntityAvailabilityStatus", "Available")
    _add(out, "EnableExpress", False)
    return out


def _subscription_description(broker: Broker, entity: MessageEntity) -> ET.Element:
    settings = entity.settings
    active, dead, scheduled, total, _ = _entity_figures(broker, entity)
    out = ET.Element(f"{{{SB}}}SubscriptionDescription")
    _settings_fields(out, settings)
    _add(out, "DeadLetteringOnFilterEvaluationExceptions", False)
    _add(out, "MessageCount", total)
    _add(out, "MaxDeliveryCount", settings.max_delivery_count)
    _add(out, "EnableBatchedOperations", True)
    _add(out, "Status", "Active")
    _add(out, "ForwardTo", settings.forward_to or None)
    _add(out, "CreatedAt", _when(entity.created_ms))
    _add(out, "UpdatedAt", _when(entity.updated_ms))
    _add(out, "AccessedAt", _when(entity.updated_ms))
    _counts(out, active, dead, scheduled)
    _add(out, "ForwardDeadLetteredMessagesTo", settings.forward_dead_lettered_to or None)
    _add(out, "AutoDeleteOnIdle", _duration(10675199 * 86400))
    _add(out, "EntityAvailabilityStatus", "Available")
    return out


def _xml_value(parent: ET.Element, value: Any) -> None:
    kind = ("boolean" if isinstance(value, bool)
            else ("int" if -2**31 <= value < 2**31 else "long") if isinstance(value, int)
            else "double" if isinstance(value, float) else "string")
    element = _add(parent, "Value", value)
    element.set(f"{{{XSI}}}type", f"d6p1:{kind}")
    element.set("xmlns:d6p1", XSD)


def _rule_description(rule: Rule, created_ms: int) -> ET.Element:
    spec = rule.spec
    out = ET.Element(f"{{{SB}}}RuleDescription")
    kind = spec.filter_type.lower()
    if kind == "correlation":
        found = _add(out, "Filter", None)
        found.set(f"{{{XSI}}}type", "CorrelationFilter")
        correlation = dict(spec.correlation)
        user = correlation.pop("Properties", None)
        for name in ("CorrelationId", "MessageId", "To", "ReplyTo", "Label", "SessionId",
                     "ReplyToSessionId", "ContentType"):
            if name in correlation:
                _add(found, name, correlation[name])
        properties = _add(found, "Properties", None)
        for key, value in (user if isinstance(user, dict) else {}).items():
            pair = _add(properties, "KeyValueOfstringanyType", None)
            _add(pair, "Key", key)
            _xml_value(pair, value)
    else:
        found = _add(out, "Filter", None)
        found.set(f"{{{XSI}}}type", "TrueFilter" if kind == "true" else "SqlFilter")
        _add(found, "SqlExpression", "1=1" if kind == "true" else spec.sql)
        _add(found, "CompatibilityLevel", 20)
    action = _add(out, "Action", None)
    if spec.action:
        action.set(f"{{{XSI}}}type", "SqlRuleAction")
        _add(action, "SqlExpression", spec.action)
        _add(action, "CompatibilityLevel", 20)
    else:
        action.set(f"{{{XSI}}}type", "EmptyRuleAction")
    _add(out, "CreatedAt", _when(created_ms))
    _add(out, "Name", spec.name)
    return out


# ---------------------------------------------------------------- requests -> settings


def _settings_from(fields: dict[str, ET.Element], *, queue: bool,
                   current: EntitySettings | None) -> EntitySettings:
    base = current or EntitySettings()
    count_text = _text(fields, "MaxDeliveryCount")
    max_delivery = base.max_delivery_count if count_text is None else int(count_text)
    if max_delivery < 1:
        raise AdminError(400, f"MaxDeliveryCount: {max_delivery} is less than the minimum 1")
    settings = EntitySettings(
        lock_duration=_seconds(fields, "LockDuration", base.lock_duration),
        max_delivery_count=max_delivery,
        default_ttl=_seconds(fields, "DefaultMessageTimeToLive", base.default_ttl),
        dead_lettering_on_expiration=_flag(fields, "DeadLetteringOnMessageExpiration",
                                           base.dead_lettering_on_expiration),
        requires_session=_flag(fields, "RequiresSession", base.requires_session),
        forward_to=_entity_name(_text(fields, "ForwardTo")),
        forward_dead_lettered_to=_entity_name(_text(fields, "ForwardDeadLetteredMessagesTo")),
        requires_duplicate_detection=queue and _flag(
            fields, "RequiresDuplicateDetection", base.requires_duplicate_detection),
        duplicate_window=_seconds(fields, "DuplicateDetectionHistoryTimeWindow",
                                  base.duplicate_window),
    )
    if current is not None:
        for name, before, after in (
            ("RequiresSession", current.requires_session, settings.requires_session),
            ("RequiresDuplicateDetection", current.requires_duplicate_detection,
             settings.requires_duplicate_detection),
        ):
            if before != after:
                raise AdminError(400, f"{name} cannot be changed on an existing entity")
    return settings


def _parsed_value(element: ET.Element) -> Any:
    kind = element.get(f"{{{XSI}}}type", "string").rsplit(":", 1)[-1]
    convert = _XML_TYPES.get(kind, str)
    return convert(element.text or "")


def _rule_from(name: str, body: bytes) -> RuleSpec:
    fields = _description(body, "RuleDescription")
    found = fields.get("Filter")
    kind = (found.get(f"{{{XSI}}}type", "") if found is not None else "TrueFilter")
    kind = kind.rsplit(":", 1)[-1]
    filter_fields = _fields(found)
    action_fields = _fields(fields.get("Action"))
    action = _text(action_fields, "SqlExpression") or ""
    try:
        if action:
            parse_sql_action(action)
        if kind == "CorrelationFilter":
            correlation: dict[str, object] = {
                key: element.text for key, element in filter_fields.items()
                if key not in ("Properties",) and element.text is not None
            }
            user = {}
            for pair in filter_fields.get("Properties", ET.Element("x")):
                pair_fields = _fields(pair)
                key = _text(pair_fields, "Key")
                value = pair_fields.get("Value")
                if key is not None and value is not None:
                    user[key] = _parsed_value(value)
            if user:
                correlation["Properties"] = user
            return RuleSpec(name, "Correlation", correlation=correlation, action=action)
        if kind in ("TrueFilter", ""):
            return RuleSpec(name, "True", action=action)
        if kind == "FalseFilter":
            return RuleSpec(name, "Sql", sql="1=0", action=action)
        sql = _text(filter_fields, "SqlExpression") or ""
        parse_sql_filter(sql)
        return RuleSpec(name, "Sql", sql=sql, action=action)
    except FilterError as exc:
        raise AdminError(400, f"rule {name!r}: {exc}") from None


# ---------------------------------------------------------------- the app


class AdminApi:
    """The HTTP app over one broker; every handler runs on the broker's event loop."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._rule_created: dict[tuple[str, str], int] = {}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/health", self._health)
        app.router.add_get("/$namespaceinfo", self._namespace)
        app.router.add_get("/$Resources/{kind}", self._list_entities)
        app.router.add_route("*", "/{topic}/subscriptions", self._list_subscriptions)
        app.router.add_route("*", "/{topic}/subscriptions/{name}/rules", self._list_rules)
        app.router.add_route("*", "/{topic}/subscriptions/{name}/rules/{rule}", self._rule)
        app.router.add_route("*", "/{topic}/subscriptions/{name}", self._subscription)
        app.router.add_route("*", "/{name}", self._entity)
        return app

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except AdminError as exc:
            error = ET.Element("Error")
            ET.SubElement(error, "Code").text = str(exc.status)
            ET.SubElement(error, "Detail").text = exc.detail
            return web.Response(body=ET.tostring(error, encoding="utf-8"), status=exc.status,
                                content_type="application/xml", charset="utf-8")
        return response

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def _namespace(self, request: web.Request) -> web.Response:
        info = ET.Element(f"{{{SB}}}NamespaceInfo")
        _add(info, "CreatedTime", _when(0))
        _add(info, "MessagingSKU", "Standard")
        _add(info, "ModifiedTime", _when(0))
        _add(info, "Name", self.broker.namespace.name)
        _add(info, "NamespaceType", "Messaging")
        return _xml_response(_entry(self._base(request), "$namespaceinfo",
                                    self.broker.namespace.name, info))

    # ---- paging

    @staticmethod
    def _page(request: web.Request, entries: list[ET.Element], path: str) -> web.Response:
        skip = int(request.query.get("$skip", "0"))
        top = int(request.query.get("$top", "100"))
        page = entries[skip : skip + top]
        base = AdminApi._base(request)
        next_href = None
        if skip + top < len(entries):
            next_href = f"{base}/{path}?$skip={skip + top}&$top={top}&api-version=2021-05"
        return _xml_response(_feed(base, path, page, next_href))

    def _not_found_feed(self, request: web.Request) -> web.Response:
        """What the service answers a GET for an entity that does not exist."""
        return _xml_response(_feed(self._base(request), "", [], None))

    # ---- queues and topics

    def _queue_entry(self, request: web.Request, entity: MessageEntity) -> ET.Element:
        return _entry(self._base(request), entity.path, entity.path,
                      _queue_description(self.broker, entity))

    def _topic_entry(self, request: web.Request, topic: Topic) -> ET.Element:
        return _entry(self._base(request), topic.path, topic.path,
                      _topic_description(self.broker, topic))

    async def _list_entities(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"].lower()
        broker = self.broker
        if kind == "queues":
            entries = [self._queue_entry(request, e) for e in broker.entities.values()
                       if "/" not in e.path]
        elif kind == "topics":
            entries = [self._topic_entry(request, t) for t in broker.topics.values()]
        else:
            raise AdminError(400, f"unknown entity type {kind!r}")
        return self._page(request, entries, f"$Resources/{kind}")

    async def _entity(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        path = name.lower()
        broker = self.broker
        queue = broker.entities.get(path) if "/" not in path else None
        topic = broker.topics.get(path)
        if request.method == "GET":
            if queue is not None:
                return _xml_response(self._queue_entry(request, queue))
            if topic is not None:
                return _xml_response(self._topic_entry(request, topic))
            return self._not_found_feed(request)
        if request.method == "DELETE":
            if queue is None and topic is None:
                raise AdminError(404, f"The messaging entity '{name}' was not found.")
            broker.remove_entity(path)
            return web.Response(status=200)
        if request.method != "PUT":
            raise AdminError(405, f"{request.method} is not supported")
        body = await request.read()
        updating = "If-Match" in request.headers
        if not _NAME.match(name):
            raise AdminError(400, f"{name!r} is not a valid entity name")
        if b"TopicDescription" in body:
            return self._put_topic(request, name, body, topic, updating, queue is not None)
        return self._put_queue(request, name, body, queue, updating, topic is not None)

    def _put_queue(self, request: web.Request, name: str, body: bytes,
                   queue: MessageEntity | None, updating: bool, taken: bool) -> web.Response:
        fields = _description(body, "QueueDescription")
        if updating:
            if queue is None:
                raise AdminError(404, f"The messaging entity '{name}' was not found.")
            settings = _settings_from(fields, queue=True, current=queue.settings)
            self.broker.update_settings(queue.path, settings)
            return _xml_response(self._queue_entry(request, queue))
        if queue is not None or taken:
            raise AdminError(409, f"The messaging entity '{name}' already exists.")
        created = self.broker.add_queue(name, _settings_from(fields, queue=True, current=None))
        return _xml_response(self._queue_entry(request, created), status=201)

    def _put_topic(self, request: web.Request, name: str, body: bytes, topic: Topic | None,
                   updating: bool, taken: bool) -> web.Response:
        fields = _description(body, "TopicDescription")
        if updating:
            if topic is None:
                raise AdminError(404, f"The messaging entity '{name}' was not found.")
            topic.default_ttl = _seconds(fields, "DefaultMessageTimeToLive", topic.default_ttl)
            topic.duplicate_window = _seconds(fields, "DuplicateDetectionHistoryTimeWindow",
                                              topic.duplicate_window)
            topic.updated_ms = _now_ms()
            return _xml_response(self._topic_entry(request, topic))
        if topic is not None or taken:
            raise AdminError(409, f"The messaging entity '{name}' already exists.")
        created = self.broker.add_topic(
            name, _seconds(fields, "DefaultMessageTimeToLive", 3600.0),
            _flag(fields, "RequiresDuplicateDetection", False),
            _seconds(fields, "DuplicateDetectionHistoryTimeWindow", 20.0))
        return _xml_response(self._topic_entry(request, created), status=201)

    # ---- subscriptions

    def _topic(self, name: str) -> Topic:
        topic = self.broker.topics.get(name.lower())
        if topic is None:
            raise AdminError(404, f"The messaging entity '{name}' was not found.")
        return topic

    def _subscription_entry(self, request: web.Request, topic: Topic, name: str,
                            entity: MessageEntity) -> ET.Element:
        path = f"{topic.path}/subscriptions/{name}"
        return _entry(self._base(request), path, name,
                      _subscription_description(self.broker, entity))

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        topic = self._topic(request.match_info["topic"])
        entries = [self._subscription_entry(request, topic, name, entity)
                   for name, (entity, _) in topic.subscriptions.items()]
        return self._page(request, entries, f"{topic.path}/subscriptions")

    async def _subscription(self, request: web.Request) -> web.Response:
        topic_name, name = request.match_info["topic"], request.match_info["name"]
        topic = self.broker.topics.get(topic_name.lower())
        found = topic.subscriptions.get(name.lower()) if topic is not None else None
        if request.method == "GET":
            if topic is None or found is None:
                return self._not_found_feed(request)
            return _xml_response(self._subscription_entry(request, topic, name.lower(),
                                                          found[0]))
        topic = self._topic(topic_name)
        if request.method == "DELETE":
            if found is None:
                raise AdminError(404, f"The subscription '{name}' was not found.")
            self.broker.remove_entity(found[0].path)
            return web.Response(status=200)
        if request.method != "PUT":
            raise AdminError(405, f"{request.method} is not supported")
        fields = _description(await request.read(), "SubscriptionDescription")
        if "If-Match" in request.headers:
            if found is None:
                raise AdminError(404, f"The subscription '{name}' was not found.")
            entity = found[0]
            self.broker.update_settings(
                entity.path, _settings_from(fields, queue=False, current=entity.settings))
            return _xml_response(self._subscription_entry(request, topic, name.lower(), entity))
        if found is not None:
            raise AdminError(409, f"The subscription '{name}' already exists.")
        if not _NAME.match(name):
            raise AdminError(400, f"{name!r} is not a valid subscription name")
        default_rule = fields.get("DefaultRuleDescription")
        rules = []
        if default_rule is not None:
            wrapped = ET.Element(f"{{{ATOM}}}entry")
            content = ET.SubElement(wrapped, f"{{{ATOM}}}content")
            described = ET.SubElement(content, "RuleDescription")
            described.extend(list(default_rule))
            rules.append(_rule_from("$Default", ET.tostring(wrapped)))
        entity = self.broker.add_subscription(
            topic.path, name, _settings_from(fields, queue=False, current=None), rules)
        return _xml_response(self._subscription_entry(request, topic, name.lower(), entity),
                             status=201)

    # ---- rules

    def _rules(self, request: web.Request) -> tuple[Topic, str, list[Rule]]:
        topic = self._topic(request.match_info["topic"])
        name = request.match_info["name"].lower()
        found = topic.subscriptions.get(name)
        if found is None:
            raise AdminError(404, f"The subscription '{name}' was not found.")
        return topic, name, found[1]

    def _rule_entry(self, request: web.Request, topic: Topic, subscription: str,
                    rule: Rule) -> ET.Element:
        path = f"{topic.path}/subscriptions/{subscription}/rules/{rule.name}"
        created = self._rule_created.get((f"{topic.path}/{subscription}", rule.name.lower()),
                                         topic.created_ms)
        return _entry(self._base(request), path, rule.name, _rule_description(rule, created))

    async def _list_rules(self, request: web.Request) -> web.Response:
        topic, subscription, rules = self._rules(request)
        entries = [self._rule_entry(request, topic, subscription, rule) for rule in rules]
        return self._page(request, entries, f"{topic.path}/subscriptions/{subscription}/rules")

    async def _rule(self, request: web.Request) -> web.Response:
        name = request.match_info["rule"]
        if request.method == "GET" and (
                request.match_info["topic"].lower() not in self.broker.topics):
            return self._not_found_feed(request)
        topic, subscription, rules = self._rules(request)
        index = next((i for i, r in enumerate(rules) if r.name.lower() == name.lower()), None)
        if request.method == "GET":
            if index is None:
                return self._not_found_feed(request)
            return _xml_response(self._rule_entry(request, topic, subscription, rules[index]))
        if request.method == "DELETE":
            if index is None:
                raise AdminError(404, f"The rule '{name}' was not found.")
            del rules[index]
            return web.Response(status=200)
        if request.method != "PUT":
            raise AdminError(405, f"{request.method} is not supported")
        rule = Rule.from_spec(_rule_from(name, await request.read()))
        if "If-Match" in request.headers:
            if index is None:
                raise AdminError(404, f"The rule '{name}' was not found.")
            rules[index] = rule
            return _xml_response(self._rule_entry(request, topic, subscription, rule))
        if index is not None:
            raise AdminError(409, f"The rule '{name}' already exists.")
        rules.append(rule)
        self._rule_created[(f"{topic.path}/{subscription}", name.lower())] = _now_ms()
        return _xml_response(self._rule_entry(request, topic, subscription, rule), status=201)
