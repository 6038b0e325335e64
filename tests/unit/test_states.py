"""The delivery state machine, the vocabulary tables beside it, and the message status rolled up
from it."""

import pytest

from deliveries.states import (
    ATTEMPT_OUTCOME_OF_STATUS,
    EVENT_OF_CREATION,
    EVENT_OF_REPORT,
    EVENT_OF_STATUS,
    FINAL,
    INITIAL,
    TRANSITIONS,
    AttemptOutcome,
    DeliveryStatus,
    EventType,
    IllegalTransition,
    MessageStatus,
    check_transition,
    message_status_for,
    sources_of,
)

S = DeliveryStatus
LEGAL = [(source, target) for source, targets in TRANSITIONS.items() for target in targets]


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_move_in_the_table_is_allowed(source, target):
    check_transition(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.DELIVERED, S.SENDING),
        (S.BOUNCED, S.QUEUED),
        (S.QUEUED, S.DELIVERED),
        (S.CANCELLED, S.QUEUED),
        (S.FAILED, S.SENDING),
        (S.FAILED, S.DELIVERED),
        (S.DEFERRED, S.SENDING),
        (S.SCHEDULED, S.SENDING),
        (S.SENDING, S.SENDING),
        (S.SENDING, S.CANCELLED),
    ],
)
def test_an_illegal_move_is_refused(source, target):
    with pytest.raises(IllegalTransition):
        check_transition(source, target)


@pytest.mark.parametrize("target", list(S))
def test_a_suppressed_delivery_never_moves(target):
    with pytest.raises(IllegalTransition):
        check_transition(S.SUPPRESSED, target)


# A failed delivery is final too, but an operator's "retry now" may be allowed to requeue it;
# a delivered one may still bounce (below).
@pytest.mark.parametrize("source", [S.BOUNCED, S.CANCELLED, S.SUPPRESSED])
def test_a_final_status_has_no_way_out(source):
    assert source not in TRANSITIONS
    for target in S:
        with pytest.raises(IllegalTransition):
            check_transition(source, target)


def test_a_delivered_delivery_may_only_bounce_later():
    assert TRANSITIONS[S.DELIVERED] == {S.BOUNCED}
    check_transition(S.DELIVERED, S.BOUNCED)
    for target in set(S) - {S.BOUNCED}:
        with pytest.raises(IllegalTransition):
            check_transition(S.DELIVERED, target)


def test_the_final_statuses_are_the_ones_no_worker_or_dispatcher_moves_on():
    assert {S.DELIVERED, S.BOUNCED, S.FAILED, S.CANCELLED, S.SUPPRESSED} == FINAL


def test_every_status_is_either_reachable_or_a_starting_one():
    reachable = {target for targets in TRANSITIONS.values() for target in targets}
    assert reachable | INITIAL == set(S)


def test_only_a_queued_delivery_can_start_sending():
    assert sources_of(S.SENDING) == [S.QUEUED]


def test_a_delivery_can_be_cancelled_until_a_worker_takes_it():
    assert set(sources_of(S.CANCELLED)) == {S.SCHEDULED, S.QUEUED, S.DEFERRED}


@pytest.mark.parametrize("target", [S.SUPPRESSED, S.SCHEDULED])
def test_asking_how_to_reach_a_status_nothing_reaches_is_an_error(target):
    with pytest.raises(IllegalTransition):
        sources_of(target)


# -- status -> event, status -> attempt outcome ------------------------------------------------


def test_every_status_has_its_event_or_says_it_has_none():
    assert set(EVENT_OF_STATUS) == set(S)
    assert {status for status, event in EVENT_OF_STATUS.items() if event is None} == {
        S.QUEUED,
        S.SENDING,
    }


@pytest.mark.parametrize("status", sorted(INITIAL))
def test_a_delivery_created_in_any_initial_status_emits_an_event(status):
    assert EVENT_OF_CREATION[status] == (EVENT_OF_STATUS[status] or EventType.ACCEPTED)


def test_a_delivery_created_queued_is_accepted():
    assert set(EVENT_OF_CREATION) == INITIAL
    assert EVENT_OF_CREATION[S.QUEUED] == EventType.ACCEPTED


@pytest.mark.parametrize("target", sorted(TRANSITIONS[S.SENDING]))
def test_every_end_of_an_attempt_emits_an_event(target):
    # deliveries_settle writes one event per row it moves out of `sending`.
    assert EVENT_OF_STATUS[target] is not None


def test_every_event_type_is_some_status_s_or_a_report_s_never_both():
    emitted = {*EVENT_OF_STATUS.values(), *EVENT_OF_CREATION.values()} - {None}
    assert emitted | set(EVENT_OF_REPORT) == set(EventType)
    assert not emitted & set(EVENT_OF_REPORT)


@pytest.mark.parametrize("event_type", sorted(EVENT_OF_REPORT))
def test_a_report_is_recorded_only_about_a_delivery_whose_fate_is_decided(event_type):
    assert EVENT_OF_REPORT[event_type]
    assert EVENT_OF_REPORT[event_type] <= FINAL


def test_a_complaint_is_about_delivered_mail_only():
    assert EVENT_OF_REPORT[EventType.COMPLAINED] == {S.DELIVERED}


#: The statuses no attempt ends in, and why; every other status has an attempt outcome.
NO_ATTEMPT_ENDS_IN = {
    S.SCHEDULED: "it waits for its time, before any attempt",
    S.QUEUED: "a retry reaches it from deferred or failed, after the attempt ended",
    S.SENDING: "the attempt is still under way",
    S.CANCELLED: "a cancel asked for during an attempt goes through deferred",
    S.SUPPRESSED: "only accept writes it",
}


@pytest.mark.parametrize("status", list(S))
def test_every_status_has_an_attempt_outcome_or_is_one_no_attempt_ends_in(status):
    assert (status in ATTEMPT_OUTCOME_OF_STATUS) != (status in NO_ATTEMPT_ENDS_IN)


def test_the_attempt_outcomes_cover_exactly_the_moves_out_of_sending():
    assert set(ATTEMPT_OUTCOME_OF_STATUS) == TRANSITIONS[S.SENDING]
    assert set(AttemptOutcome) - set(ATTEMPT_OUTCOME_OF_STATUS.values()) == {
        AttemptOutcome.PENDING,
        AttemptOutcome.LOST,
    }


# -- message_status_for ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["sending"], MessageStatus.SENDING),
        (["delivered", "sending", "bounced"], MessageStatus.SENDING),
        (["queued", "sending", "deferred"], MessageStatus.SENDING),
        (["queued", "deferred", "delivered"], MessageStatus.QUEUED),
        (["deferred", "scheduled"], MessageStatus.DEFERRED),
        (["delivered"], MessageStatus.DELIVERED),
        (["delivered", "delivered", "delivered"], MessageStatus.DELIVERED),
        (["delivered", "bounced"], MessageStatus.PARTIALLY_DELIVERED),
        (["delivered", "failed", "suppressed"], MessageStatus.PARTIALLY_DELIVERED),
        (["bounced", "failed"], MessageStatus.BOUNCED),
        (["failed", "suppressed"], MessageStatus.FAILED),
        (["suppressed", "cancelled"], MessageStatus.SUPPRESSED),
        (["cancelled"], MessageStatus.CANCELLED),
        (["cancelled", "cancelled"], MessageStatus.CANCELLED),
    ],
)
def test_a_message_status_is_rolled_up_from_its_deliveries(statuses, expected):
    assert message_status_for(statuses) == expected


def test_the_rollup_accepts_any_iterable_and_the_enum_itself():
    assert message_status_for(s for s in (S.DELIVERED, S.DELIVERED)) == MessageStatus.DELIVERED


def test_a_message_without_deliveries_has_no_status():
    with pytest.raises(ValueError):
        message_status_for([])


def test_an_unknown_delivery_status_is_an_error():
    with pytest.raises(ValueError):
        message_status_for(["lost"])
