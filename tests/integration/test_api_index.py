"""Where a person or a program starts: `GET /api/v1/` lists the endpoints and points to the docs,
and the docs pages (Swagger UI, ReDoc) load nothing from outside this server."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

pytestmark = pytest.mark.integration

# What a docs page loads: scripts, style sheets, icons.
_ASSET = re.compile(r'(?:src|href)="([^"]*)"')


def operations_in_the_schema() -> set[tuple[str, str]]:
    paths = APIClient().get("/api/schema/?format=json").json()["paths"]
    return {
        (path, method.upper())
        for path, operations in paths.items()
        for method in operations
        if method != "parameters"
    }


def test_the_api_root_lists_every_operation_of_the_schema_and_nothing_else(db):
    answer = APIClient().get("/api/v1/")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/json"
    endpoints = answer.json()["endpoints"]
    listed = {(e["url"], method) for e in endpoints for method in e["methods"]}
    assert listed == operations_in_the_schema()
    assert {
        "name": "message-collection",
        "methods": ["GET", "POST"],
        "url": "/api/v1/messages",
    } in endpoints


def test_the_api_root_itself_is_left_out_of_the_schema(db):
    assert not {path for path, _ in operations_in_the_schema()} & {"/api/v1/", "/api/v1"}


def test_the_api_roots_links_to_the_docs_answer_without_a_key(db):
    docs = APIClient().get("/api/v1/").json()["docs"]
    assert docs == {
        "swagger_ui": "/api/docs/",
        "redoc": "/api/redoc/",
        "openapi_schema": "/api/schema/",
    }
    for url in docs.values():
        assert APIClient().get(url).status_code == 200, url


def test_the_api_roots_endpoints_answer_a_key(acme):
    endpoints = APIClient().get("/api/v1/").json()["endpoints"]
    lists = [e["url"] for e in endpoints if "GET" in e["methods"] and "{" not in e["url"]]
    assert "/api/v1/messages" in lists
    for url in lists:
        assert acme.api.get(url).status_code == 200, url


def test_the_api_root_is_the_same_for_every_client_and_for_none(acme, globex):
    anonymous = APIClient().get("/api/v1/")
    bad_key = APIClient().get("/api/v1/", HTTP_AUTHORIZATION="Bearer mh_not-a-key")
    answers = [anonymous, bad_key, acme.api.get("/api/v1/"), globex.api.get("/api/v1/")]
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    assert b"acme" not in anonymous.content


@pytest.mark.parametrize(
    ("page", "bundle"),
    [
        ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_a_docs_page_loads_only_this_servers_files(db, page, bundle):
    answer = APIClient().get(page)
    assert answer.status_code == 200
    html = answer.content.decode()
    assert "/api/schema/" in html
    assets = _ASSET.findall(html)
    assert bundle in assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), asset
    assert "https://" not in html and "http://" not in html  # no fonts or scripts from a CDN


def test_the_redoc_page_renders_the_schema(db):
    html = APIClient().get("/api/redoc/").content.decode()
    assert '<redoc spec-url="/api/schema/"></redoc>' in html
    assert "<title>Mailhub API</title>" in html
