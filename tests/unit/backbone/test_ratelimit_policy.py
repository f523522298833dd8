"""Rate policies from settings, and who a caller is at the Functions HTTP edge."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.backbone.errors import ConfigurationError
from agents.backbone.ratelimit import RatePolicy, caller_key


@pytest.mark.parametrize(("spec", "named"), [
    ("20/s brust=5", "'brust=5'"),
    ("20 per second", "'<count>/<s|min|h>'"),
    ("20/fortnight", "'<count>/<s|min|h>'"),
    ("20/s caller=cookie", "'cookie'"),
])
def test_a_bad_setting_is_an_error_naming_what_is_wrong(spec: str, named: str):
    with pytest.raises(ConfigurationError, match=named.replace("|", r"\|")):
        RatePolicy.parse("orders", spec)


def test_the_caller_is_the_function_key_from_header_or_query():
    policy = RatePolicy("orders", 1, timedelta(seconds=1), caller="function-key")
    assert caller_key(policy, {"X-Functions-Key": "k1"}, {}) == "k1"
    assert caller_key(policy, {}, {"code": "k2"}) == "k2"


def test_the_caller_is_the_first_forwarded_hop_without_its_port():
    policy = RatePolicy("orders", 1, timedelta(seconds=1))
    assert caller_key(policy, {"x-forwarded-for": "203.0.113.7:50123, 10.0.0.1"}, {}) \
        == "203.0.113.7"
    assert caller_key(policy, {"X-Forwarded-For": "2001:db8::1"}, {}) == "2001:db8::1"


def test_a_caller_the_edge_cannot_name_shares_the_anonymous_bucket():
    policy = RatePolicy("orders", 1, timedelta(seconds=1), caller="client-id")
    assert caller_key(policy, {}, {}) == "anonymous"
