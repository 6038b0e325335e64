"""The rate-limit arithmetic: a sliding minute approximated from two fixed windows."""

from __future__ import annotations

import pytest

from accounts.rate_limit import rate_check

WINDOW = 60.0


def run(times: list[float], *, limit: int, state=None):
    decisions = []
    for now in times:
        decision = rate_check(state=state, now=now, limit=limit, window=WINDOW)
        if decision.allowed:
            state = decision.state
        decisions.append(decision)
    return decisions, state


def test_requests_up_to_the_limit_pass_and_the_next_one_is_refused():
    decisions, _ = run([600.0 + i for i in range(4)], limit=3)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[3].wait_seconds > 0


def test_a_refused_request_is_not_counted():
    decisions, state = run([600.0, 600.1, 600.2, 600.3], limit=1)
    assert [d.allowed for d in decisions] == [True, False, False, False]
    assert state == (10, 1, 0)


def test_a_full_window_still_weighs_on_the_start_of_the_next_one():
    # 3 requests at the end of one minute: just after the boundary the estimate is still ~3.
    decisions, _ = run([659.0, 659.5, 659.9, 660.5], limit=3)
    assert [d.allowed for d in decisions] == [True, True, True, False]


def test_the_previous_windows_share_fades_as_the_window_advances():
    _, state = run([630.0, 631.0, 632.0, 633.0], limit=4)  # window 10 holds 4
    # At 690 (halfway through window 11) the estimate is 4 * 0.5 = 2: two more fit.
    decisions, _ = run([690.0, 690.1, 690.2], limit=4, state=state)
    assert [d.allowed for d in decisions] == [True, True, False]


def test_nothing_is_remembered_after_a_full_idle_window():
    _, state = run([600.0, 601.0], limit=2)
    decisions, _ = run([720.5, 720.6], limit=2, state=state)
    assert [d.allowed for d in decisions] == [True, True]


@pytest.mark.parametrize("limit", [1, 2, 5, 60])
def test_waiting_the_announced_time_is_enough_and_not_much_more(limit):
    times = [600.0 + i * 0.01 for i in range(limit + 1)]
    decisions, state = run(times, limit=limit)
    refused = decisions[-1]
    assert not refused.allowed
    at = times[-1] + refused.wait_seconds
    assert rate_check(state=state, now=at + 0.01, limit=limit, window=WINDOW).allowed
    assert not rate_check(state=state, now=at - 1.0, limit=limit, window=WINDOW).allowed


def test_a_steady_rate_just_under_the_limit_is_never_refused():
    # 57 requests a minute against a limit of 60, for three minutes. (The approximation weighs
    # the previous window fully at a boundary, so a client at exactly the limit may meet one.)
    decisions, _ = run([600.0 + i * 1.05 for i in range(171)], limit=60)
    assert all(d.allowed for d in decisions)


def test_a_burst_of_twice_the_limit_across_a_boundary_is_refused():
    decisions, _ = run(
        [659.0 + i * 0.01 for i in range(10)] + [660.0 + i * 0.01 for i in range(10)], limit=10
    )
    assert sum(d.allowed for d in decisions) == 10
