"""``/api/v1/domains``: add a domain, read the records to publish, verify it against a real DNS
server, rotate its key, delete it; each client sees only its own, hostile names are a 400, and no
answer ever holds a private key."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.models import DkimKey, SendingDomain

pytestmark = pytest.mark.integration

LINE_BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def create(actor, domain: str = "shop.test", **fields):
    # json.dumps escapes what UTF-8 cannot carry (a lone surrogate) as \uXXXX, as a client would.
    body = json.dumps({"domain": domain, **fields})
    return actor.api.post("/api/v1/domains", body, content_type="application/json")


def assert_no_private_key(answer) -> None:
    text = answer.content.decode()
    assert "PRIVATE KEY" not in text and "private" not in text.lower()
    for key in DkimKey.objects.all():
        assert bytes(key.private_key_encrypted).decode() not in text


def test_adding_a_domain_answers_the_records_to_publish(acme):
    answer = create(acme, "Shop.Test.")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert answer["Location"] == f"/api/v1/domains/{body['id']}"
    assert (body["domain"], body["state"], body["usable"]) == ("shop.test", "pending", False)
    [key] = body["dkim_keys"]
    assert key["state"] == "active" and key["algorithm"] == "rsa-sha256"
    dkim = [r for r in body["records"] if r["purpose"] == "dkim"]
    assert dkim == [
        {
            "purpose": "dkim",
            "type": "TXT",
            "name": f"{key['selector']}._domainkey.shop.test",
            "value": key["record_value"],
            "required": True,
            "publisher": "client",
            "selector": key["selector"],
            "note": "signs the domain's mail",
        }
    ]
    assert key["record_value"].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert body["checks"] == {}
    assert_no_private_key(answer)


def test_an_ed25519_key_is_made_on_request(acme):
    body = create(acme, algorithm="ed25519-sha256").json()
    assert body["dkim_keys"][0]["record_value"].startswith("v=DKIM1; k=ed25519; p=")


def test_verify_now_checks_dns_and_answers_the_domain_as_the_check_left_it(acme, dns):
    body = create(acme).json()
    verify = f"/api/v1/domains/{body['id']}/verify"
    pending = acme.api.post(verify).json()
    selector = body["dkim_keys"][0]["selector"]
    assert pending["state"] == "pending" and pending["checks"][f"dkim:{selector}"]["ok"] is False
    for record in body["records"]:
        if record["publisher"] == "client":
            dns.txt(record["name"], record["value"])
    answer = acme.api.post(verify)
    assert answer.status_code == 200
    verified = answer.json()
    assert (verified["state"], verified["usable"]) == ("verified", True)
    assert verified["verified_at"] and verified["last_checked_at"]
    assert verified["checks"][f"dkim:{selector}"]["ok"] is True


def test_rotating_and_activating_a_key_through_the_api(acme, dns):
    body = create(acme).json()
    rotated = acme.api.post(f"/api/v1/domains/{body['id']}/rotate-key", {}, format="json")
    assert rotated.status_code == 200
    new = next(k for k in rotated.json()["dkim_keys"] if k["state"] == "pending")
    again = acme.api.post(f"/api/v1/domains/{body['id']}/rotate-key", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "rotation_in_progress"
    activate = f"/api/v1/domains/{body['id']}/activate-key"
    early = acme.api.post(activate, {"selector": new["selector"]}, format="json")
    assert early.status_code == 409 and early.json()["code"] == "dkim_record_not_found"
    dns.txt(new["record_name"], new["record_value"])
    done = acme.api.post(activate, {"selector": new["selector"]}, format="json")
    assert done.status_code == 200
    assert {k["selector"]: k["state"] for k in done.json()["dkim_keys"]} == {
        body["dkim_keys"][0]["selector"]: "retired",
        new["selector"]: "active",
    }
    unknown = acme.api.post(activate, {"selector": "nope"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "dkim_key_not_found"


def test_a_domain_twice_is_a_409_and_unknown_fields_a_400(acme):
    assert create(acme).status_code == 201
    twice = create(acme, "SHOP.test")
    assert twice.status_code == 409 and twice.json()["code"] == "domain_exists"
    typo = create(acme, "other.test", allow_subdomain=True)
    assert typo.status_code == 400 and typo.json()["errors"][0]["field"] == "allow_subdomain"


def test_each_client_sees_and_changes_only_its_own_domains(acme, globex):
    ours = create(acme).json()
    theirs = create(globex, "globex.test").json()
    assert [d["domain"] for d in acme.api.get("/api/v1/domains").json()["results"]] == ["shop.test"]
    for path in ("", "/verify", "/rotate-key"):
        method = globex.api.get if not path else globex.api.post
        answer = method(f"/api/v1/domains/{ours['id']}{path}")
        assert answer.status_code == 404 and answer.json()["code"] == "domain_not_found", path
    assert globex.api.delete(f"/api/v1/domains/{ours['id']}").status_code == 404
    assert SendingDomain.objects.filter(id=ours["id"]).exists()
    # The same name may be added by another client: its own keys, its own verification.
    assert create(globex, "shop.test").status_code == 201
    assert acme.api.delete(f"/api/v1/domains/{ours['id']}").status_code == 204
    assert acme.api.get(f"/api/v1/domains/{ours['id']}").status_code == 404
    assert globex.api.get(f"/api/v1/domains/{theirs['id']}").status_code == 200
    assert acme.api.get(f"/api/v1/domains/{2**70}").status_code == 404  # no 500 on a huge id


def test_the_list_never_shows_a_private_key(acme):
    create(acme)
    create(acme, "other.test", algorithm="ed25519-sha256")
    answer = acme.api.get("/api/v1/domains")
    assert len(answer.json()["results"]) == 2
    assert_no_private_key(answer)


@pytest.mark.parametrize(
    "hostile",
    [
        *(f"shop{brk}.test" for brk in LINE_BREAKS),
        "shop\x00.test",
        "shop\x07.test",
        "shop\ud800.test",
        "*.shop.test",
        "192.0.2.1",
        "[::1]",
        "a" * 64 + ".test",
        ("a" * 63 + ".") * 4 + "test",
        "x" * 100_000,
        "",
    ],
)
def test_a_hostile_domain_name_is_a_400_problem_on_the_domain_field(acme, hostile):
    answer = create(acme, hostile)
    assert answer.status_code == 400, answer.content
    problem = answer.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["field"] == "domain"
    assert not SendingDomain.objects.exists()


@pytest.mark.parametrize("body", [[], "shop.test", {"domain": ["shop.test"]}, {"domain": {"a": 1}}])
def test_a_body_of_the_wrong_shape_is_a_400(acme, body):
    answer = acme.api.post("/api/v1/domains", body, format="json")
    assert answer.status_code == 400 and answer["Content-Type"] == "application/problem+json"


@given(st.text(max_size=80))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_name_is_added_or_refused_never_a_500(acme, text):
    answer = create(acme, text)
    assert answer.status_code in (201, 400, 409), answer.content
    if answer.status_code == 201:
        assert answer.json()["domain"].isascii()
