"""Any client name, once it is a ``client`` label of /metrics, reads back as itself: the text
format's escaping (quotes, backslashes, line breaks of every kind) holds, and no sample is
written twice, whatever the names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deliveries.metrics import OTHER_CLIENTS, MailhubCollector, _Window

# What Client.name can hold: up to 100 characters, no NUL (Postgres text refuses it).
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=100)


class _Counters:
    def __init__(self, totals: _Window, labels: dict[int, str]) -> None:
        self.totals, self.labels = totals, labels

    def collect(self) -> Iterable[Any]:
        return MailhubCollector._counters(self.totals, 0.0, self.labels)


@given(st.lists(names, min_size=1, max_size=5, unique=True))
def test_every_client_name_reads_back_as_its_label(client_names):
    labels = dict(enumerate(client_names, start=1))
    totals = _Window()
    for client_id in [*labels, 99]:  # 99: a client not named, counted as "other"
        totals.accepted[("high", client_id)] += client_id
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Counters(totals, labels))

    text = generate_latest(registry).decode()

    accepted: dict[str, float] = {}
    seen = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            seen.append((sample.name, tuple(sorted(sample.labels.items()))))
            if sample.name == "mailhub_messages_accepted_total":
                client = sample.labels["client"]
                accepted[client] = accepted.get(client, 0) + sample.value
    assert len(seen) == len(set(seen))
    expected = {name: float(client_id) for client_id, name in labels.items()}
    expected[OTHER_CLIENTS] = expected.get(OTHER_CLIENTS, 0.0) + 99
    assert accepted == expected
