"""Subscription rules: correlation filters, the SQL filter subset and SQL `SET`/`REMOVE`
actions, evaluated against a message's system and user properties.

Written by hand: no library parses Service Bus's SQL-92 dialect (`sys.`/`user.` prefixes,
three-valued logic over missing properties).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from devstack.servicebus.entities import RuleSpec
from devstack.servicebus.store import StoredMessage, replace_sections

# system property name (lower case) -> index in the AMQP properties list
_SYSTEM_FIELDS = {
    "messageid": 0,
    "to": 2,
    "label": 3,
    "subject": 3,
    "replyto": 4,
    "correlationid": 5,
    "contenttype": 6,
    "sessionid": 10,
    "replytosessionid": 12,
}


class FilterError(ValueError):
    """A SQL filter or action that this emulator cannot parse."""


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class MessageFacts:
    """A message's properties, decoded once and shared by every rule of a publish."""

    def __init__(self, message: StoredMessage) -> None:
        self.message = message
        self._system: list[Any] | None = None
        self._user: dict[Any, Any] | None = None

    @property
    def system(self) -> list[Any]:
        if self._system is None:
            self._system = self.message.system_properties()
        return self._system

    @property
    def user(self) -> dict[Any, Any]:
        if self._user is None:
            self._user = self.message.user_properties()
        return self._user

    def system_value(self, name: str) -> Any:
        key = name.lower()
        if key in _SYSTEM_FIELDS:
            return _text(self.system[_SYSTEM_FIELDS[key]])
        if key == "sequencenumber":
            return self.message.sequence_number or None
        if key == "deliverycount":
            return self.message.attempts
        if key == "timetolive":
            return self.message.ttl_ms
        if key == "scheduledenqueuetimeutc":
            return self.message.scheduled_ms or None
        return None

    def user_has(self, name: str) -> bool:
        return self._user_key(name) is not None

    def user_value(self, name: str) -> Any:
        key = self._user_key(name)
        return _text(self.user[key]) if key is not None else None

    def _user_key(self, name: str) -> Any:
        user = self.user
        if name in user:
            return name
        lowered = name.lower()
        for key in user:
            if isinstance(key, str) and key.lower() == lowered:
                return key
        return None


Predicate = Callable[[MessageFacts], Any]


class Rule:
    def __init__(self, spec: RuleSpec, predicate: Predicate,
                 actions: list[Callable[[StoredMessage], None]]) -> None:
        self.spec = spec
        """As declared, for the administration API to show."""
        self.name = spec.name
        self._predicate = predicate
        self._actions = actions

    @classmethod
    def true_rule(cls) -> Rule:
        return cls.from_spec(RuleSpec("$Default", "True"))

    @classmethod
    def from_spec(cls, spec: RuleSpec) -> Rule:
        predicate: Predicate
        if spec.filter_type.lower() == "true":
            predicate = _always
        elif spec.filter_type.lower() == "correlation":
            predicate = correlation_predicate(spec.correlation)
        else:
            predicate = parse_sql_filter(spec.sql)
        actions = parse_sql_action(spec.action) if spec.action else []
        return cls(spec, predicate, actions)

    def matches(self, facts: MessageFacts) -> bool:
        return self._predicate(facts) is True

    def apply(self, message: StoredMessage) -> None:
        for action in self._actions:
            action(message)


def _always(facts: MessageFacts) -> bool:
    return True


def correlation_predicate(spec: dict[str, Any]) -> Predicate:
    """Every named system property and user property must be equal."""
    system = {k: v for k, v in spec.items() if k != "Properties"}
    user = dict(spec.get("Properties") or {})

    def predicate(facts: MessageFacts) -> bool:
        for name, expected in system.items():
            if facts.system_value(name) != expected:
                return False
        for name, expected in user.items():
            if not facts.user_has(name) or facts.user_value(name) != expected:
                return False
        return True

    return predicate


# ---------------------------------------------------------------- SQL lexer

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+|\d+(?:[eE][-+]?\d+)?)
    |(?P<string>'(?:[^']|'')*')
    |(?P<bracket>\[[^\]]+\])
    |(?P<name>[A-Za-z_$@][\w$@]*(?:\.[A-Za-z_$@\[][\w$@\]]*)?)
    |(?P<op><>|!=|>=|<=|=|<|>|\(|\)|,|\+|-|\*|/|%|;)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "like", "escape", "is", "null", "exists", "true",
             "false", "set", "remove"}


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"cannot parse SQL at {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind or "")
        if kind == "number":
            tokens.append(("lit", float(value) if any(c in value for c in ".eE") else int(value)))
        elif kind == "string":
            tokens.append(("lit", value[1:-1].replace("''", "'")))
        elif kind == "bracket":
            tokens.append(("name", value[1:-1]))
        elif kind == "name":
            if value.lower() in _KEYWORDS:
                tokens.append(("kw", value.lower()))
            else:
                tokens.append(("name", value))
        else:
            tokens.append(("op", value))
    tokens.append(("end", None))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, Any]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, kind: str, value: Any = None) -> bool:
        token = self.peek()
        if token[0] == kind and (value is None or token[1] == value):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None) -> tuple[str, Any]:
        token = self.take()
        if token[0] != kind or (value is not None and token[1] != value):
            raise FilterError(f"expected {value or kind}, found {token[1]!r}")
        return token

    # expression grammar: or -> and -> not -> predicate -> additive -> multiplicative -> unary

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self.accept("kw", "or"):
            right = self.parse_and()
            left = _or(left, right)
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_not()
        while self.accept("kw", "and"):
            right = self.parse_not()
            left = _and(left, right)
        return left

    def parse_not(self) -> Predicate:
        if self.accept("kw", "not"):
            inner = self.parse_not()
            return lambda facts: _not(inner(facts))
        return self.parse_predicate()

    def parse_predicate(self) -> Predicate:
        if self.accept("kw", "exists"):
            self.expect("op", "(")
            name = self.expect("name")[1]
            self.expect("op", ")")
            return _exists(name)
        left = self.parse_additive()
        negate = self.accept("kw", "not")
        if self.accept("kw", "in"):
            self.expect("op", "(")
            options = [self.parse_additive()]
            while self.accept("op", ","):
                options.append(self.parse_additive())
            self.expect("op", ")")
            return _negated(_in(left, options), negate)
        if self.accept("kw", "like"):
            pattern = self.expect("lit")[1]
            escape = self.expect("lit")[1] if self.accept("kw", "escape") else None
            return _negated(_like(left, str(pattern), escape), negate)
        if negate:
            raise FilterError("NOT must be followed by IN or LIKE here")
        if self.accept("kw", "is"):
            is_not = self.accept("kw", "not")
            self.expect("kw", "null")
            return _negated(lambda facts: left(facts) is None, is_not)
        token = self.peek()
        if token[0] == "op" and token[1] in ("=", "<>", "!=", ">", ">=", "<", "<="):
            self.take()
            right = self.parse_additive()
            return _compare(token[1], left, right)
        return left

    def parse_additive(self) -> Predicate:
        left = self.parse_multiplicative()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            right = self.parse_multiplicative()
            left = _arith(op, left, right)
        return left

    def parse_multiplicative(self) -> Predicate:
        left = self.parse_unary()
        while self.peek() in (("op", "*"), ("op", "/"), ("op", "%")):
            op = self.take()[1]
            right = self.parse_unary()
            left = _arith(op, left, right)
        return left

    def parse_unary(self) -> Predicate:
        if self.accept("op", "-"):
            inner = self.parse_unary()
            return lambda facts: None if inner(facts) is None else -inner(facts)
        if self.accept("op", "("):
            inner = self.parse_or()
            self.expect("op", ")")
            return inner
        kind, value = self.take()
        if kind == "lit":
            return lambda facts: value
        if kind == "kw" and value in ("true", "false"):
            constant = value == "true"
            return lambda facts: constant
        if kind == "kw" and value == "null":
            return lambda facts: None
        if kind == "name":
            return _property(value)
        raise FilterError(f"unexpected {value!r}")


def _split_name(name: str) -> tuple[str, str]:
    """('sys'|'user', property name) for `sys.X`, `user.X` or a bare `X`."""
    scope, dot, rest = name.partition(".")
    if dot and scope.lower() in ("sys", "user"):
        return scope.lower(), rest.strip("[]")
    return "user", name


def _property(name: str) -> Predicate:
    scope, prop = _split_name(name)
    if scope == "sys":
        return lambda facts: facts.system_value(prop)
    return lambda facts: facts.user_value(prop)


def _exists(name: str) -> Predicate:
    scope, prop = _split_name(name)
    if scope == "sys":
        return lambda facts: facts.system_value(prop) is not None
    return lambda facts: facts.user_has(prop)


def _not(value: Any) -> Any:
    return None if value is None else not value


def _negated(predicate: Predicate, negate: bool) -> Predicate:
    return (lambda facts: _not(predicate(facts))) if negate else predicate


def _and(left: Predicate, right: Predicate) -> Predicate:
    def both(facts: MessageFacts) -> Any:
        a = left(facts)
        if a is False:
            return False
        b = right(facts)
        if b is False:
            return False
        return None if a is None or b is None else True

    return both


def _or(left: Predicate, right: Predicate) -> Predicate:
    def either(facts: MessageFacts) -> Any:
        a = left(facts)
        if a is True:
            return True
        b = right(facts)
        if b is True:
            return True
        return None if a is None or b is None else False

    return either


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b) or (isinstance(a, str) and isinstance(b, str))


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _compare(op: str, left: Predicate, right: Predicate) -> Predicate:
    compare = _COMPARE[op]

    def evaluate(facts: MessageFacts) -> Any:
        a, b = left(facts), right(facts)
        if a is None or b is None:
            return None
        if not _comparable(a, b):
            return False if op in ("=",) else (True if op in ("<>", "!=") else None)
        return compare(a, b)

    return evaluate


def _arith(op: str, left: Predicate, right: Predicate) -> Predicate:
    def evaluate(facts: MessageFacts) -> Any:
        a, b = left(facts), right(facts)
        if a is None or b is None:
            return None
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            return None
        if op == "/":
            return a / b if isinstance(a, float) or isinstance(b, float) else a // b
        return a % b

    return evaluate


def _in(left: Predicate, options: list[Predicate]) -> Predicate:
    def evaluate(facts: MessageFacts) -> Any:
        value = left(facts)
        if value is None:
            return None
        return any(value == option(facts) for option in options)

    return evaluate


def _like(left: Predicate, pattern: str, escape: str | None) -> Predicate:
    regex = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if escape is not None and char == escape and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    compiled = re.compile("".join(regex), re.DOTALL)

    def evaluate(facts: MessageFacts) -> Any:
        value = left(facts)
        if value is None:
            return None
        return isinstance(value, str) and compiled.fullmatch(value) is not None

    return evaluate


def parse_sql_filter(text: str) -> Predicate:
    parser = _Parser(text)
    predicate = parser.parse_or()
    if parser.peek()[0] != "end":
        raise FilterError(f"unexpected {parser.peek()[1]!r} in SQL filter {text!r}")
    return predicate


# ---------------------------------------------------------------- SQL actions

_SYSTEM_SETTABLE = {k: v for k, v in _SYSTEM_FIELDS.items() if k != "sessionid"}


def parse_sql_action(text: str) -> list[Callable[[StoredMessage], None]]:
    """`SET name = expression` and `REMOVE name` statements, separated by `;`."""
    parser = _Parser(text)
    actions: list[Callable[[StoredMessage], None]] = []
    while parser.peek()[0] != "end":
        if parser.accept("op", ";"):
            continue
        if parser.accept("kw", "set"):
            name = parser.expect("name")[1]
            parser.expect("op", "=")
            actions.append(_set_action(name, parser.parse_or()))
        elif parser.accept("kw", "remove"):
            actions.append(_remove_action(parser.expect("name")[1]))
        else:
            raise FilterError(f"expected SET or REMOVE in SQL action {text!r}")
    return actions


def _set_action(name: str, expression: Predicate) -> Callable[[StoredMessage], None]:
    scope, prop = _split_name(name)

    def apply(message: StoredMessage) -> None:
        value = expression(MessageFacts(message))
        if scope == "sys":
            index = _SYSTEM_SETTABLE.get(prop.lower())
            if index is None:
                raise FilterError(f"sys.{prop} cannot be set by a rule action")
            fields = list(message.system_properties())
            fields[index] = value
            message.bare = replace_sections(message.bare, properties=fields)
        else:
            props = dict(message.user_properties())
            props[prop] = value
            message.bare = replace_sections(message.bare, application_properties=props)

    return apply


def _remove_action(name: str) -> Callable[[StoredMessage], None]:
    _, prop = _split_name(name)

    def apply(message: StoredMessage) -> None:
        props = dict(message.user_properties())
        if props.pop(prop, None) is not None:
            message.bare = replace_sections(message.bare, application_properties=props)

    return apply
