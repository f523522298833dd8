"""Subscription filters: event types, subject prefix/suffix, advanced filters on data."""

from __future__ import annotations

from devstack.eventgrid.config import AdvancedFilter, EventFilter
from devstack.eventgrid.filters import matches

TICKET = {"id": "1", "type": "com.helpdesk.ticket.created", "subject": "/tickets/EU/7.json",
          "data": {"priority": 3, "team": "Printers", "vip": True}}


def test_included_event_types_match_case_insensitively():
    assert matches(EventFilter(included_event_types=("COM.HELPDESK.TICKET.CREATED",)), TICKET)
    assert not matches(EventFilter(included_event_types=("com.helpdesk.ticket.closed",)),
                       TICKET)


def test_subject_prefix_and_suffix_respect_case_sensitivity():
    assert matches(EventFilter(subject_begins_with="/tickets/eu", subject_ends_with=".JSON"),
                   TICKET)
    assert not matches(EventFilter(subject_begins_with="/tickets/eu",
                                   subject_case_sensitive=True), TICKET)


def test_advanced_filters_read_nested_data_keys():
    rules = (AdvancedFilter("NumberGreaterThanOrEquals", "data.priority", (3,)),
             AdvancedFilter("StringIn", "data.team", ("printers", "network")),
             AdvancedFilter("BoolEquals", "data.vip", (True,)))
    assert matches(EventFilter(advanced=rules), TICKET)


def test_advanced_filter_on_a_missing_key_does_not_match():
    rule = AdvancedFilter("StringIn", "data.region", ("eu",))
    assert not matches(EventFilter(advanced=(rule,)), TICKET)
    assert matches(EventFilter(advanced=(AdvancedFilter("IsNullOrUndefined", "data.region",
                                                        ()),)), TICKET)
