"""RabbitMQ's definitions: they declare Mailhub's queues exactly as Celery declares them in a
deployment (any difference would make Celery's own declaration fail), and the policies do what
they claim."""

from __future__ import annotations

import json
import re
import runpy
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from django.conf import settings

from tests.deploy.conftest import DEPLOY, ENV_EXAMPLE, read_env_file, without_prefix

RABBITMQ = DEPLOY / "rabbitmq"


@pytest.fixture(scope="module")
def definitions() -> dict:
    return json.loads((RABBITMQ / "definitions.json").read_text())


def policies_for(definitions: dict, queue: str) -> list[dict]:
    """The policies whose pattern matches the queue, highest priority first (RabbitMQ applies
    only the first: policies do not merge)."""
    matching = [
        policy
        for policy in definitions["policies"]
        if policy["apply-to"] in ("queues", "all") and re.search(policy["pattern"], queue)
    ]
    return sorted(matching, key=lambda policy: -policy["priority"])


def tick_queues() -> set[str]:
    return {
        without_prefix(settings.MAILHUB_DISPATCH_QUEUE),
        without_prefix(settings.MAILHUB_WEBHOOK_TICK_QUEUE),
    }


def test_every_celery_queue_is_declared_as_celery_declares_it(definitions, queues):
    declared = {queue["name"]: queue for queue in definitions["queues"]}
    bindings = {(b["source"], b["destination"]): b for b in definitions["bindings"]}
    exchanges = {exchange["name"]: exchange for exchange in definitions["exchanges"]}
    for name, queue in queues.items():
        assert name in declared, name
        assert declared[name]["durable"] is queue.durable is True
        assert declared[name]["auto_delete"] is queue.auto_delete is False
        assert declared[name]["arguments"] == (queue.queue_arguments or {})
        exchange = exchanges[without_prefix(queue.exchange.name)]
        assert (exchange["type"], exchange["durable"]) == (queue.exchange.type, True)
        binding = bindings[(exchange["name"], name)]
        assert binding["routing_key"] == without_prefix(queue.routing_key)


def test_deployments_declare_replicated_queues_and_so_do_the_definitions(definitions, queues):
    environments = {
        ".env.example": read_env_file(ENV_EXAMPLE)["MAILHUB_QUEUE_TYPE"],
        "k8s ConfigMap": yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"][
            "MAILHUB_QUEUE_TYPE"
        ],
    }
    assert set(environments.values()) == {"quorum"}, environments
    for queue in definitions["queues"]:  # the dead letters too: they are kept for inspection
        assert queue["arguments"] == {"x-queue-type": "quorum"}, queue["name"]


def test_each_queue_gets_exactly_one_policy_and_mail_is_never_dropped(definitions, queues):
    for name in queues:
        matching = policies_for(definitions, name)
        assert len(matching) == 1, (name, [p["name"] for p in matching])
    for name in set(queues) - tick_queues():
        [policy] = policies_for(definitions, name)
        # A delivery or webhook task is never dropped by a length limit or a TTL ...
        assert not {"max-length", "max-length-bytes", "message-ttl"} & set(policy["definition"])
        # ... and one rejected outright (an unknown task in a rolling deploy), or handed back
        # `delivery-limit` times (its worker died each time), is kept aside. The same limit on
        # RabbitMQ 3.13, which has none by default, as on 4.x, whose default is 20.
        assert policy["definition"]["dead-letter-exchange"] == "mailhub.dead"
        assert policy["definition"]["delivery-limit"] == 20
    for name in tick_queues():
        [ticks] = policies_for(definitions, name)
        # Stale ticks are worthless: a few are kept, the oldest dropped.
        assert ticks["definition"]["max-length"] <= 100
        assert ticks["definition"]["overflow"] == "drop-head"


def test_dead_letters_land_in_a_bounded_queue(definitions):
    [dead] = [e for e in definitions["exchanges"] if e["name"] == "mailhub.dead"]
    assert dead["type"] == "fanout"
    [binding] = [b for b in definitions["bindings"] if b["source"] == "mailhub.dead"]
    [policy] = policies_for(definitions, binding["destination"])
    assert policy["definition"]["message-ttl"] > 0
    assert policy["definition"]["max-length"] > 0


def test_the_example_broker_password_matches_the_users_hash(definitions):
    hasher = runpy.run_path(str(RABBITMQ / "hash_password.py"))
    broker = urlsplit(read_env_file(ENV_EXAMPLE)["CELERY_BROKER_URL"])
    [user] = [u for u in definitions["users"] if u["name"] == broker.username]
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert hasher["rabbitmq_password_matches"](unquote(broker.password), user["password_hash"])
    assert not hasher["rabbitmq_password_matches"]("guest", user["password_hash"])
    vhost = unquote(broker.path.removeprefix("/"))
    assert {"name": vhost} in definitions["vhosts"]
    [permission] = [p for p in definitions["permissions"] if p["user"] == user["name"]]
    assert permission["vhost"] == vhost
    assert {
        item["vhost"]
        for key in ("queues", "exchanges", "bindings", "policies")
        for item in definitions[key]
    } == {vhost}


def test_rabbitmq_conf_loads_the_definitions_file_compose_mounts():
    conf = (RABBITMQ / "rabbitmq.conf").read_text()
    [path] = re.findall(r"^load_definitions\s*=\s*(\S+)", conf, re.MULTILINE)
    assert f":{path}:ro" in (DEPLOY / "compose.yaml").read_text()
