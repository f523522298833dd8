"""The chaos run's invariant checker, fed hand-made evidence: it reports each broken
invariant with the ids involved and what was seen, and passes evidence that is sound."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import typer

from agents.orders.edge import order_id_for
from agents.triage.model import Status, TicketState
from scripts.chaos import (
    ALL_FAULTS,
    DEAD_LETTER_REASONS,
    DEAD_LETTERS_EXACT,
    FRAUD_INVARIANTS,
    ORDERS_INVARIANTS,
    PLATFORM_INVARIANTS,
    TRIAGE_INVARIANTS,
    Letter,
    Movements,
    OrdersEvidence,
    PlatformEvidence,
    Promise,
    SagaSeen,
    Verdict,
    fault_kinds,
    judge,
    schedule,
)
from scripts.chaos.core import StreamEvent
from scripts.chaos.fraud import (
    AlertSeen,
    FraudEvidence,
    ParkedSeen,
    PlannedPayment,
    PoisonPayment,
)
from scripts.chaos.triage import Classified, InvalidEvent, TicketPlan, TriageEvidence

STEPS = ("reserve_stock", "charge_payment", "allocate_stock", "ship_order")
COMPLETED_KEY, COMPENSATED_KEY = "key-completed", "key-compensated"
COMPLETED, COMPENSATED = order_id_for(COMPLETED_KEY), order_id_for(COMPENSATED_KEY)


def saga(order_id: str, status: str, reason: str | None = None) -> SagaSeen:
    return SagaSeen(order_id, status, {"step": "ship_order", "reason": reason} if reason else None,
                    dict.fromkeys(STEPS, "succeeded"))


def sound_orders() -> OrdersEvidence:
    """One order completed and one compensated after its charge, as the services hold them."""
    return OrdersEvidence(
        sagas={COMPLETED: saga(COMPLETED, "completed"),
               COMPENSATED: saga(COMPENSATED, "compensated", "timeout")},
        movements={COMPLETED: Movements(charges=1, holds=1, allocated=True, shipments=1),
                   COMPENSATED: Movements(charges=1, refunds=1, holds=1, releases=1)},
        charge_events={COMPLETED: {"event-1"}, COMPENSATED: {"event-2"}},
        answers={COMPLETED_KEY: {COMPLETED}, COMPENSATED_KEY: {COMPENSATED}},
    )


def broken(verdicts: list[Verdict]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    return {verdict.invariant: [(v.ids, v.seen) for v in verdict.violations]
            for verdict in verdicts if not verdict.held}


def test_sound_orders_evidence_breaks_nothing() -> None:
    assert broken(judge(ORDERS_INVARIANTS, sound_orders())) == {}


def test_a_double_charge_is_reported_with_its_order() -> None:
    evidence = sound_orders()
    evidence.movements[COMPLETED].charges = 2
    assert broken(judge(ORDERS_INVARIANTS, evidence))["no double charge"] == [
        ((COMPLETED,), "2 charges recorded")]


def test_a_charge_announced_twice_on_the_stream_is_a_double_charge() -> None:
    evidence = sound_orders()
    evidence.charge_events[COMPLETED] = {"event-1", "event-9"}
    assert broken(judge(ORDERS_INVARIANTS, evidence))["no double charge"] == [
        ((COMPLETED,), "2 distinct charge events on the payment stream: event-1, event-9")]


def test_a_shipped_then_refunded_order_is_reported() -> None:
    evidence = sound_orders()
    evidence.movements[COMPENSATED].shipments = 1
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "nothing shipped for a compensated order": [
            ((COMPENSATED,), "compensated (timeout at ship_order) with 1 shipment(s), "
                             "1 refund(s)")]}


def test_a_compensated_order_that_kept_the_money_is_reported() -> None:
    evidence = sound_orders()
    evidence.movements[COMPENSATED].refunds = 0
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "every charge belongs to a completed order or has exactly one refund": [
            ((COMPENSATED,), "compensated with 1 charge(s), 0 refund(s)")]}


def test_a_hold_never_released_is_reported() -> None:
    evidence = sound_orders()
    evidence.movements[COMPENSATED].releases = 0
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "stock holds = releases + allocations": [
            ((COMPENSATED,), "compensated with 1 hold(s), 0 release(s), 0 allocation(s)")]}


def test_a_saga_still_running_is_reported_with_its_steps() -> None:
    evidence = sound_orders()
    evidence.sagas[COMPENSATED] = SagaSeen(COMPENSATED, "compensating", None,
                                           {"reserve_stock": "compensating"})
    assert broken(judge(ORDERS_INVARIANTS, evidence))["every saga terminal"] == [
        ((COMPENSATED,), "compensating; steps reserve_stock compensating")]


def test_two_orders_for_one_key_are_reported() -> None:
    evidence = sound_orders()
    evidence.answers[COMPLETED_KEY] = {COMPLETED, COMPENSATED}
    reported = broken(judge(ORDERS_INVARIANTS, evidence))["one order per Idempotency-Key"]
    assert reported[0][0] == (COMPLETED_KEY, *sorted({COMPLETED, COMPENSATED}))


def test_a_saga_no_key_names_is_reported() -> None:
    evidence = sound_orders()
    del evidence.answers[COMPENSATED_KEY]
    assert broken(judge(ORDERS_INVARIANTS, evidence))["one order per Idempotency-Key"] == [
        ((COMPENSATED,), "a saga no Idempotency-Key names")]


def test_a_charge_missing_from_the_payment_stream_is_reported() -> None:
    evidence = sound_orders()
    del evidence.charge_events[COMPENSATED]
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "every charge is on the payment stream": [
            ((COMPENSATED,), "charged, but no charge event on the payment stream")]}


POISON = Promise("orders-saga", "InvalidEncoding", "malformed JSON", message_id="poison-1")
EXHAUSTED = Promise("orders-saga", "CompensationExhausted", "saga s-1 gave up", saga_id="s-1")


def sound_platform() -> PlatformEvidence:
    return PlatformEvidence(
        letters=[Letter("orders-saga", "poison-1", "InvalidEncoding", "not JSON"),
                 Letter("orders-saga", "reply-7", "CompensationExhausted", "gave up", "s-1")],
        promised=[POISON, EXHAUSTED], pending_outbox=[], undrained={})


def test_sound_platform_evidence_breaks_nothing() -> None:
    assert broken(judge(PLATFORM_INVARIANTS, sound_platform())) == {}


def test_a_promised_dead_letter_that_never_arrived_is_reported() -> None:
    evidence = sound_platform()
    evidence.letters.pop()
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {DEAD_LETTERS_EXACT: [
        (("s-1",), "saga s-1 gave up: not in orders-saga's dead-letter queue")]}


def test_an_unexpected_dead_letter_is_reported() -> None:
    evidence = sound_platform()
    evidence.letters.append(Letter("orders-payments", "m-9", "MaxDeliveryCountExceeded", "x"))
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {DEAD_LETTERS_EXACT: [
        (("m-9",), "unexpected in orders-payments's dead-letter queue: "
                   "MaxDeliveryCountExceeded: x")]}


def test_a_dead_letter_with_the_brokers_reason_instead_of_ours_is_reported() -> None:
    evidence = sound_platform()
    evidence.letters[0] = Letter("orders-saga", "poison-1", "MaxDeliveryCountExceeded", "")
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {DEAD_LETTER_REASONS: [
        (("poison-1",), "malformed JSON: dead-lettered with reason 'MaxDeliveryCountExceeded', "
                        "expected 'InvalidEncoding'")]}


def test_pending_outbox_rows_and_undrained_queues_are_reported() -> None:
    evidence = sound_platform()
    evidence.pending_outbox = ["orders: o-1 -> orders-payments"]
    evidence.undrained = {"orders-shipping": {"active": 2}}
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {
        "no outbox row pending after the sweeper": [
            (("orders: o-1 -> orders-payments",), "pending after the sweeper ran")],
        "every queue drained": [(("orders-shipping",), "2 active")]}


def test_a_seed_names_one_fault_schedule_with_every_kind() -> None:
    first = schedule(random.Random(5), ALL_FAULTS, 30.0)
    assert first == schedule(random.Random(5), ALL_FAULTS, 30.0)
    assert {event.kind for event in first} == set(ALL_FAULTS)
    assert all(3.0 <= event.at <= 24.0 for event in first)


def test_fault_kinds_take_layers_and_refuse_unknown_names() -> None:
    assert fault_kinds("process,deliver-twice") == ["host-kill", "deliver-twice"]
    assert fault_kinds("none") == []
    with pytest.raises(typer.BadParameter, match="unknown fault kind 'meteor'"):
        fault_kinds("meteor")


# ---------------------------------------------------------------- fraud

FLAGGED, CLEAN = "o-flagged", "o-clean"


def payment(order_id: str, card: str, flagged: bool) -> PlannedPayment:
    return PlannedPayment(order_id, card, 1500, timedelta(0), flagged)


def alert(order_id: str, explained_by: str = "model",
          rationale: str = "six payments in a minute") -> AlertSeen:
    return AlertSeen(f"alert-{order_id}", order_id, "dispatched", {
        "orderId": order_id, "reason": "velocity (6 payments in 60s, limit 5)",
        "explainedBy": explained_by, "rationale": rationale, "riskLevel": "high",
        "recommendedAction": "block"})


CUT_OFF = PoisonPayment(b'{"specversion": ', "InvalidEncoding", "cut-off JSON")


def sound_fraud() -> FraudEvidence:
    """One payment flagged by construction with its one alert, one clean card, one poison
    event parked where the stream has it, and every mark at the end of its partition."""
    return FraudEvidence(
        expected={FLAGGED: payment(FLAGGED, "tok-burst", True),
                  CLEAN: payment(CLEAN, "tok-clean", False)},
        cards={FLAGGED: "tok-burst", CLEAN: "tok-clean", "o-order": "tok-order-1"},
        alerts={FLAGGED: [alert(FLAGGED)]},
        delivered=Counter({FLAGGED: 1}),
        poison={("0", 7): (StreamEvent("0", 7, "4096", CUT_OFF.body), CUT_OFF)},
        parked=[ParkedSeen("parked-1", "0", 7, "4096", "InvalidEncoding", "not JSON", "{")],
        marks={"0": 9, "1": 3}, last={"0": 9, "1": 3})


def test_sound_fraud_evidence_breaks_nothing() -> None:
    assert broken(judge(FRAUD_INVARIANTS, sound_fraud())) == {}


def test_an_alert_delivered_twice_is_reported() -> None:
    evidence = sound_fraud()
    evidence.delivered[FLAGGED] = 2
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "every flagged payment raised exactly one alert": [
            ((FLAGGED, "tok-burst"), "1 alert row(s), 2 alert message(s) delivered")]}


def test_a_flagged_payment_without_an_alert_is_reported() -> None:
    evidence = sound_fraud()
    evidence.alerts.clear()
    evidence.delivered.clear()
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "every flagged payment raised exactly one alert": [
            ((FLAGGED, "tok-burst"), "0 alert row(s), 0 alert message(s) delivered")]}


def test_an_alert_for_a_clean_card_is_reported_with_the_card() -> None:
    evidence = sound_fraud()
    evidence.alerts["o-order"] = [alert("o-order")]
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {"no alert for a clean card": [
        (("o-order", "tok-order-1"), "alert on a clean card: velocity (6 payments in 60s, "
                                     "limit 5)")]}


def test_a_poison_event_parked_twice_is_reported_with_its_position() -> None:
    evidence = sound_fraud()
    evidence.parked.append(evidence.parked[0])
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "every poison event parked once with its position and reason": [
            (("partition 0 seq 7",), "cut-off JSON: parked 2 time(s)")]}


def test_a_poison_event_parked_with_another_reason_is_reported() -> None:
    evidence = sound_fraud()
    evidence.parked[0] = ParkedSeen("parked-1", "0", 7, "4096", "TimeoutError", "timed out",
                                    "{")
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "every poison event parked once with its position and reason": [
            (("partition 0 seq 7",), "cut-off JSON: parked at offset 4096 (stream: 4096) with "
                                     "'TimeoutError': 'timed out', expected 'InvalidEncoding'")]}


def test_a_valid_payment_parked_is_reported() -> None:
    evidence = sound_fraud()
    evidence.parked.append(ParkedSeen("parked-2", "1", 2, "512", "ServiceUnavailable",
                                      "retries exhausted", '{"specversion": "1.0"}'))
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "nothing but the poison events parked": [
            (("parked-2",), 'partition 1 seq 2: ServiceUnavailable: {"specversion": "1.0"}')]}


def test_a_mark_behind_the_stream_or_missing_is_reported() -> None:
    evidence = sound_fraud()
    evidence.marks = {"0": 8}
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "every partition's mark reached the stream's last sequence number": [
            (("partition 0",), "mark 8, last sequence number 9"),
            (("partition 1",), "mark None, last sequence number 3")]}


def test_a_rules_only_alert_without_its_reason_is_reported() -> None:
    evidence = sound_fraud()
    evidence.alerts[FLAGGED] = [alert(FLAGGED, "rules", "")]
    assert broken(judge(FRAUD_INVARIANTS, evidence)) == {
        "every alert explained by the model, or by the rules with a reason": [
            ((FLAGGED, f"alert-{FLAGGED}"), "explainedBy 'rules', rationale '', riskLevel "
                                            "'high'")]}


# ---------------------------------------------------------------- triage

TICKET = "HD-1"


def ticket_state(version: int = 2, *, status: Status = Status.ROUTED, team: str = "billing",
                 priority: str = "normal", reason: str | None = None) -> TicketState:
    return TicketState(TICKET, version, {"title": TITLES[version]}, status, team, priority,
                       "billing", 0.9, "double charge", reason, "model")


TITLES = {1: "Charged twice", 2: "Charged twice (v2)"}


def classified(event_id: str, version: int, team: str = "billing", *, manual: bool = False,
               priority: str = "normal", reason: str | None = None, second: int = 0
               ) -> Classified:
    return Classified(event_id, "manual-triage" if manual else team, TICKET, version, team,
                      manual, priority, reason, datetime(2026, 12, 2, 8, 0, second, tzinfo=UTC))


def sound_triage() -> TriageEvidence:
    """A ticket sent at versions 1 and 2, routed to billing once (v2 routes the same way), an
    invalid event rejected with its reason and a forged webhook refused."""
    return TriageEvidence(
        plans={TICKET: TicketPlan(TICKET, 0.0, (), TITLES)}, accepted={TICKET: 2},
        attempted={TICKET: 2}, states={TICKET: ticket_state()},
        classified=[classified("c-1", 1)], pages=[],
        invalid={"bad-1": InvalidEvent("bad-1", {}, "version 0")},
        rejected={"bad-1": [{"Reason": "SchemaViolation", "Description": "version: 0 < 1"}]},
        refused={"HD-forged": (401, 401)}, given_up={})


def test_sound_triage_evidence_breaks_nothing() -> None:
    assert broken(judge(TRIAGE_INVARIANTS, sound_triage())) == {}


def test_the_same_routing_sent_twice_is_reported() -> None:
    evidence = sound_triage()
    evidence.classified.append(classified("c-2", 2))
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "each ticket classified once per routing (manual: with its reason)": [
            ((TICKET,), "the same routing sent again: [('billing', False, 'normal', None), "
                        "('billing', False, 'normal', None)]")]}


def test_a_manual_ticket_reclassified_at_the_same_version_breaks_nothing() -> None:
    evidence = sound_triage()
    evidence.classified = [classified("c-1", 1, "manual", manual=True,
                                      reason="model unavailable: ReasonerOpen"),
                           classified("c-2", 1, second=5)]
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {}


def test_a_routed_ticket_classified_again_at_the_same_version_is_reported() -> None:
    evidence = sound_triage()
    evidence.classified = [classified("c-1", 1, "account"), classified("c-2", 1, second=5)]
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "each ticket classified once per routing (manual: with its reason)": [
            ((TICKET,), "classified twice for one version: v1 billing after account")]}


def test_a_manual_ticket_without_a_reason_is_reported() -> None:
    evidence = sound_triage()
    evidence.states[TICKET] = ticket_state(status=Status.MANUAL, team="manual")
    evidence.classified.append(classified("c-2", 2, "manual", manual=True))
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "each ticket classified once per routing (manual: with its reason)": [
            ((TICKET,), "in manual triage without a reason; its manual-triage message carries "
                        "no reason")]}


def test_a_routing_the_state_does_not_hold_is_reported() -> None:
    evidence = sound_triage()
    evidence.states[TICKET] = ticket_state(team="account")
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "each ticket classified once per routing (manual: with its reason)": [
            ((TICKET,), "last classification ('billing', False, 'normal', None), state "
                        "('account', False, 'normal', None)")]}


def test_a_state_behind_the_last_accepted_version_is_reported() -> None:
    evidence = sound_triage()
    evidence.states[TICKET] = ticket_state(1)
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "each ticket's state is its last accepted version": [
            ((TICKET,), "state at version 1, last accepted version 2")]}


def test_a_stored_ticket_with_the_text_of_another_version_is_reported() -> None:
    evidence = sound_triage()
    evidence.states[TICKET] = TicketState(TICKET, 2, {"title": TITLES[1]}, Status.ROUTED,
                                          "billing", "normal", "billing", 0.9, "x", None,
                                          "model")
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "each ticket's state is its last accepted version": [
            ((TICKET,), "version 2 holds title 'Charged twice', sent 'Charged twice (v2)'")]}


def test_an_accepted_ticket_never_stored_and_an_event_given_up_are_reported() -> None:
    evidence = sound_triage()
    del evidence.states[TICKET]
    evidence.classified.clear()
    evidence.given_up = {"evt-7": "MaxDeliveryAttemptsExceeded"}
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "no accepted ticket lost (stored; nothing given up by Event Grid)": [
            ((TICKET,), "accepted (202) up to version 2, no ticket state"),
            (("evt-7",), "Event Grid gave it up: MaxDeliveryAttemptsExceeded")]}


def test_an_invalid_event_not_rejected_and_a_valid_one_rejected_are_reported() -> None:
    evidence = sound_triage()
    evidence.rejected = {"evt-ok": [{"Reason": "SchemaViolation", "Description": "?"}]}
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "every invalid event rejected once with its reason, nothing else rejected": [
            (("bad-1",), "version 0: 0 rejected row(s) []"),
            (("evt-ok",), "rejected but valid: SchemaViolation: ?")]}


def test_a_forged_webhook_accepted_is_reported() -> None:
    evidence = sound_triage()
    evidence.refused["HD-forged"] = (202, 401)
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "forged and malformed webhooks refused, leaving no ticket": [
            (("HD-forged",), "answered 202, expected 401")]}


def test_an_urgent_ticket_routed_without_a_page_is_reported() -> None:
    evidence = sound_triage()
    evidence.states[TICKET] = ticket_state(priority="urgent")
    evidence.classified = [classified("c-1", 1, priority="urgent")]
    assert broken(judge(TRIAGE_INVARIANTS, evidence)) == {
        "an urgent ticket routed to a team paged once": [
            ((TICKET,), "0 page(s); state routed urgent")]}
