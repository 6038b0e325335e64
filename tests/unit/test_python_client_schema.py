"""The Python client (clients/python) held to the server's own OpenAPI schema, generated here in
process: each TypedDict has the keys of the schema component it types, with the same enums,
nullability and nesting; every component an operation answers is typed; and the list calls
send every query parameter the API reads, with its enum. An API change that the client misses
fails here rather than in its users' code."""

from __future__ import annotations

import asyncio
import inspect
import json
import types as pytypes
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import httpx
import pytest
from drf_spectacular.generators import SchemaGenerator
from mailhub_client import AsyncMailhub, Mailhub, types
from mailhub_client.attachments import Attachment

from webhooks.services import webhook_body

BASE = "http://mailhub.test"

#: The components of the schema that the client types, and their TypedDicts.
TYPED: dict[str, Any] = {
    "MessageAccepted": types.MessageAccepted,
    "BatchResult": types.BatchResult,
    "BatchItemResult": types.BatchItemResult,
    "CancelResult": types.CancelResult,
    "MessageDetail": types.MessageDetail,
    "Delivery": types.Delivery,
    "Attempt": types.Attempt,
    "AttachmentInfo": types.AttachmentInfo,
    "MessageSummary": types.MessageSummary,
    "RecipientSummary": types.RecipientSummary,
    "Event": types.MessageEvent,
    "EventDocument": types.EventDocument,
    "Template": types.Template,
    "Suppression": types.Suppression,
    "Webhook": types.Webhook,
    "WebhookCreated": types.WebhookCreated,
    "WebhookAttempt": types.WebhookAttempt,
    "Domain": types.Domain,
    "DkimKey": types.DkimKey,
    "DomainRecord": types.DomainRecord,
    "DomainCheck": types.DomainCheck,
    "Problem": types.Problem,
    "FieldError": types.FieldError,
    # What the client sends, in the API's own field names.
    "MessageCreateRequest": types.MessageRequest,
    "AttachmentRequest": types.AttachmentRequest,
}

#: Keys a TypedDict has beyond its component (why, above each).
#: Keys a client type has that the schema does not describe (none today: keep it so).
BEYOND_THE_SCHEMA: set[tuple[str, str]] = set()

#: Each Literal of the client, and a field of the schema that has its enum.
ENUMS = {
    "EventType": (types.EventType, "EventDocument", "type"),
    "MessageStatus": (types.MessageStatus, "MessageDetail", "status"),
    "DeliveryStatus": (types.DeliveryStatus, "Delivery", "status"),
    "Priority": (types.Priority, "MessageDetail", "priority"),
    "SuppressionReason": (types.SuppressionReason, "Suppression", "reason"),
    "AttemptOutcome": (types.AttemptOutcome, "Attempt", "outcome"),
    "DomainState": (types.DomainState, "Domain", "state"),
    "DkimAlgorithm": (types.DkimAlgorithm, "DkimKey", "algorithm"),
    "DkimKeyState": (types.DkimKeyState, "DkimKey", "state"),
}

#: The list calls, and the operation each one reads. An iterator follows the pages' `next`
#: links, so the `cursor` they carry is never one of its keyword arguments.
LIST_CALLS = [
    ("messages", "/api/v1/messages", {"cursor"}),
    ("events", "/api/v1/events", {"cursor"}),
    ("events_page", "/api/v1/events", set()),
]

PRIMITIVES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    # The client reads some integers as floats: `retry_after` is fractional seconds in fact.
    "integer": (int, float),
    "number": (float,),
    "boolean": (bool,),
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    # The document /api/schema/ serves, through JSON as a client gets it.
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(json.dumps(document))


# -- reading the schema and the client's annotations ----------------------------------------------


def ref_name(node: Mapping[str, Any]) -> str | None:
    """The component a property refers to (directly, or as DRF's ``allOf: [$ref]``)."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = node["allOf"][0]
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def resolved(node: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[str | None, Any]:
    name = ref_name(node)
    return name, schema["components"]["schemas"][name] if name else node


def hints(typed_dict: Any) -> dict[str, Any]:
    # MessageRequest names Attachment, which types.py imports for the checker only.
    return get_type_hints(typed_dict, localns={"Attachment": Attachment})


def members(annotation: Any) -> list[Any]:
    """The types of a union (``X | None``, ``Union[...]``), or the one type."""
    if get_origin(annotation) in (Union, pytypes.UnionType):
        return list(get_args(annotation))
    return [annotation]


def literal_values(annotation: Any) -> set[Any] | None:
    """The values of a Literal, wherever it sits (``Iterable[EventType] | None``)."""
    if get_origin(annotation) is Literal:
        return set(get_args(annotation))
    found = [literal_values(arg) for arg in get_args(annotation)]
    values = [v for v in found if v is not None]
    return set().union(*values) if values else None


def enum_of(node: Mapping[str, Any], schema: Mapping[str, Any]) -> set[Any] | None:
    """The enum of a parameter's or a property's schema, or of its array's items."""
    _, target = resolved(node, schema)
    if "items" in target:
        _, target = resolved(target["items"], schema)
    return set(target["enum"]) - {None} if "enum" in target else None


def mismatches(node: Mapping[str, Any], annotation: Any, where: str, schema: Any) -> list[str]:
    """How the client's annotation of one value differs from the schema's description of it."""
    if annotation is Any:
        return []
    name, target = resolved(node, schema)
    types_ = [t for t in members(annotation) if t is not type(None)]
    nullable = bool(node.get("nullable") or target.get("nullable"))
    problems = []
    if nullable != (len(types_) < len(members(annotation))):
        problems.append(f"{where}: nullable is {nullable} in the schema, not in {annotation}")
    return problems + shape_mismatches(name, target, types_, where, schema)


def shape_mismatches(
    name: str | None, target: Mapping[str, Any], types_: list[Any], where: str, schema: Any
) -> list[str]:
    """``mismatches`` but for null: an enum, a component, an array, an object or a primitive."""
    kind = target.get("type")
    if "enum" in target:
        literals = [literal_values(t) for t in types_]
        found = [v for v in literals if v is not None]
        if len(found) == len(literals) and set().union(*found) == set(target["enum"]) - {None}:
            return []
        return [f"{where}: the schema's {name} is {sorted(target['enum'])}"]
    if "properties" in target:
        if name is not None and any(TYPED.get(name) is t for t in types_):
            return []
        return [f"{where}: the schema's {name}, the client's {types_}"]
    if kind == "array":
        sequences = [t for t in types_ if get_origin(t) in (list, Sequence, Iterable)]
        if len(sequences) != 1:
            return [f"{where}: an array in the schema, {types_} in the client"]
        [item] = get_args(sequences[0])
        return mismatches(target.get("items", {}), item, f"{where}[]", schema)
    if kind == "object":
        mappings = [t for t in types_ if get_origin(t) in (dict, Mapping) or is_typeddict(t)]
        if not mappings:
            return [f"{where}: an object in the schema, {types_} in the client"]
        values = target.get("additionalProperties")
        if isinstance(values, dict) and values and get_origin(mappings[0]) in (dict, Mapping):
            return mismatches(values, get_args(mappings[0])[1], f"{where}{{}}", schema)
        return []
    if kind in PRIMITIVES and not all(t in PRIMITIVES[kind] for t in types_):
        return [f"{where}: {kind} in the schema, {types_} in the client"]
    return []  # a JSON field the schema leaves untyped ({}): anything


def components_in(node: Any, schema: Mapping[str, Any]) -> Iterator[str]:
    """The object components a schema node refers to, at any depth; a page's wrapper
    (``next``, ``previous``, ``results``: the client's iterators unwrap it) only through its
    results."""
    name, target = resolved(node, schema)
    properties = target.get("properties", {})
    if name and properties and not set(properties) <= {"next", "previous", "results"}:
        yield name
    elif name and properties:
        properties = {"results": properties["results"]}
    for child in properties.values():
        yield from components_in(child, schema)
    if "items" in target:
        yield from components_in(target["items"], schema)


# -- the answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("component", sorted(TYPED))
def test_each_typeddict_has_the_keys_and_the_shapes_of_its_component(component, schema):
    properties = schema["components"]["schemas"][component]["properties"]
    annotations = hints(TYPED[component])
    beyond = {key for of, key in BEYOND_THE_SCHEMA if of == component}

    assert set(properties) - set(annotations) == set(), "keys the client does not know"
    assert set(annotations) - set(properties) == beyond, "keys the API does not send"
    problems = [
        problem
        for key in properties
        for problem in mismatches(properties[key], annotations[key], f"{component}.{key}", schema)
    ]
    assert problems == []


def test_every_component_an_operation_answers_is_typed_by_the_client(schema):
    answered = {
        name
        for operations in schema["paths"].values()
        for operation in operations.values()
        for code, response in operation.get("responses", {}).items()
        if code.startswith("2")
        for content in response.get("content", {}).values()
        for name in components_in(content["schema"], schema)
    }
    assert "MessageDetail" in answered and "Attempt" in answered  # nested ones too
    assert answered - set(TYPED) == set()


@pytest.mark.parametrize("literal", sorted(ENUMS))
def test_each_literal_of_the_client_is_the_apis_enum(literal, schema):
    annotation, component, field = ENUMS[literal]
    node = schema["components"]["schemas"][component]["properties"][field]
    assert literal_values(annotation) == enum_of(node, schema)


def test_a_webhook_body_is_the_payload_of_event_documents():
    # webhook_body's documents are EventDocumentSerializer's: the schema's EventDocument.
    assert set(json.loads(webhook_body(event_ids=[]))) == set(hints(types.WebhookPayload))
    assert hints(types.WebhookPayload)["events"] == list[types.EventDocument]


def test_send_takes_every_field_of_a_message_as_a_keyword(schema):
    properties = schema["components"]["schemas"]["MessageCreateRequest"]["properties"]
    keywords = set(inspect.signature(Mailhub.send).parameters) - {"self", "idempotency_key"}
    assert {"from" if name == "sender" else name for name in keywords} == set(properties)
    assert set(inspect.signature(AsyncMailhub.send).parameters) == set(
        inspect.signature(Mailhub.send).parameters
    )


# -- the list calls' query parameters ------------------------------------------------------------


def sample(annotation: Any) -> Any:
    """A value of a keyword argument's type, for sending."""
    types_ = [t for t in members(annotation) if t is not type(None)]
    if datetime in types_:
        return datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    [kind] = types_
    if get_origin(kind) is Literal:
        return get_args(kind)[-1]
    if get_origin(kind) is Iterable:
        return [sample(get_args(kind)[0])]
    if get_origin(kind) is Mapping:
        return {"order": "A-1"}
    if kind in (str, int):
        return kind(7)
    raise AssertionError(f"give sample() a value of {annotation}")


def query_of(client: type, method: str, arguments: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The query string that the list call ``method`` sends for ``arguments``."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"next": None, "previous": None, "results": []})

    transport = httpx.MockTransport(answer)
    if client is Mailhub:
        with (
            httpx.Client(transport=transport) as http,
            Mailhub(BASE, "mh_x", http_client=http) as mailhub,
        ):
            result = getattr(mailhub, method)(**arguments)
            if not isinstance(result, types.EventPage):
                list(result)
    else:

        async def main() -> None:
            http = httpx.AsyncClient(transport=transport)
            async with AsyncMailhub(BASE, "mh_x", http_client=http) as mailhub:
                result = getattr(mailhub, method)(**arguments)
                if inspect.isawaitable(result):
                    await result
                else:
                    [_ async for _ in result]
            await http.aclose()

        asyncio.run(main())
    [request] = sent
    return list(request.url.params.multi_items())


@pytest.mark.parametrize("client", [Mailhub, AsyncMailhub], ids=["sync", "async"])
@pytest.mark.parametrize(("method", "path", "not_keywords"), LIST_CALLS)
def test_a_list_call_sends_each_query_parameter_of_its_operation(
    client, method, path, not_keywords, schema
):
    parameters = {
        parameter["name"]: parameter["schema"]
        for parameter in schema["paths"][path]["get"].get("parameters", [])
        if parameter["in"] == "query"
    }
    annotations = get_type_hints(getattr(client, method))
    keywords = [
        name
        for name, parameter in inspect.signature(getattr(client, method)).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    sent_as = {}
    for keyword in keywords:
        names = {
            name for name, _ in query_of(client, method, {keyword: sample(annotations[keyword])})
        }
        assert len(names) == 1, f"{method}({keyword}=...) sent {names}"
        sent_as[keyword] = names.pop()

    assert set(sent_as.values()) == set(parameters) - not_keywords
    for keyword, name in sent_as.items():
        assert literal_values(annotations[keyword]) == enum_of(parameters[name], schema), keyword
