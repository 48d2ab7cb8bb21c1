"""Generated OpenAPI 3.1 and AsyncAPI 3.0 documents: valid, current, and built from the spec's values."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from stockmon.spec import available_versions, load_spec, spec_dir


@pytest.mark.parametrize("version", available_versions())
def test_openapi_document_is_valid_openapi_3_1(version: str) -> None:
    """The committed OpenAPI document passes the OpenAPI 3.1 validator."""
    doc = json.loads((spec_dir() / "docs" / f"openapi-{version}.json").read_text(encoding="utf-8"))
    validate(doc)
    assert doc["openapi"] == "3.1.0"


@pytest.mark.parametrize("version", available_versions())
def test_openapi_paths_come_from_the_spec(version: str) -> None:
    """Every REST path named in spec.rest.kis appears, with the quote tr_id pinned."""
    spec = load_spec(version)
    doc = json.loads((spec_dir() / "docs" / f"openapi-{version}.json").read_text(encoding="utf-8"))
    kis = spec.rest["kis"]
    for key in ("token", "revoke", "approval"):
        assert kis[key]["path"] in doc["paths"]
    for q in kis["quotes"].values():
        op = doc["paths"][q["path"]]["get"]
        tr = [p for p in op["parameters"] if p["name"] == kis["headers"]["tr_id"]]
        assert tr[0]["schema"]["const"] == q["tr_id"]


def test_asyncapi_follows_the_version() -> None:
    """Unsubscribe appears only in versions with PKT-UNSUBSCRIBE; the server is the primary channel."""
    for version in available_versions():
        doc = json.loads(
            (spec_dir() / "docs" / f"asyncapi-{version}.json").read_text(encoding="utf-8")
        )
        spec = load_spec(version)
        assert doc["asyncapi"] == "3.0.0"
        assert ("unsubscribe" in doc["components"]["messages"]) == spec.has("PKT-UNSUBSCRIBE")
        url = spec.clause("WS-PRIMARY-CHANNEL").string("url")
        assert url.endswith(doc["servers"]["primary"]["host"])


def test_asyncapi_payload_schemas_are_valid_and_self_contained() -> None:
    """Every component schema is valid 2020-12 with no $ref left to resolve."""
    doc = json.loads((spec_dir() / "docs" / "asyncapi-1.1.json").read_text(encoding="utf-8"))
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert "$ref" not in json.dumps(schema), name
    sub = jsonschema.Draft202012Validator(doc["components"]["schemas"]["kis-ws-subscribe"])
    good = {"header": {"approval_key": "a", "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
            "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}}}  # fmt: skip
    assert sub.is_valid(good)
    assert not sub.is_valid({**good, "header": {**good["header"], "custtype": "X"}})


# --------------------------------------------------------------------------- the internal API (1.2+)

API_VERSIONS = [v for v in available_versions() if load_spec(v).has("API-STREAM")]


def _api_doc(kind: str, version: str) -> dict[str, Any]:
    path = spec_dir() / "docs" / f"{kind}-api-{version}.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _local_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _local_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _local_refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_internal_api_exists_from_1_2_only() -> None:
    """Only versions with the API clauses have internal API documents; 1.0 and 1.1 have none."""
    assert "1.2" in API_VERSIONS and "1.1" not in API_VERSIONS
    for version in available_versions():
        present = (spec_dir() / "docs" / f"openapi-api-{version}.json").is_file()
        assert present == (version in API_VERSIONS)


@pytest.mark.parametrize("version", API_VERSIONS)
def test_internal_openapi_is_valid_openapi_3_1(version: str) -> None:
    """The internal API's OpenAPI document passes the OpenAPI 3.1 validator."""
    doc = _api_doc("openapi", version)
    validate(doc)
    assert doc["openapi"] == "3.1.0"


@pytest.mark.parametrize("version", API_VERSIONS)
def test_internal_openapi_follows_the_clauses(version: str) -> None:
    """Paths, statuses, the bearer scheme and the public health routes are the clauses' values."""
    spec = load_spec(version)
    doc = _api_doc("openapi", version)
    auth, snap = spec.clause("API-AUTH"), spec.clause("API-SNAPSHOT")
    subs, health = spec.clause("API-SUBSCRIPTIONS"), spec.clause("API-HEALTH")
    paths = doc["paths"]
    unauthorized = str(auth.integer("rest_status"))
    public = {health.string("liveness_path"), health.string("readiness_path")}
    for path, ops in paths.items():
        for op in ops.values():
            if path in public:
                assert op["security"] == [] and unauthorized not in op["responses"]
            else:
                assert "security" not in op and unauthorized in op["responses"], (path, op)
    assert doc["security"] == [{"apiKey": []}]
    scheme = doc["components"]["securitySchemes"]["apiKey"]
    assert scheme["scheme"] == auth.string("rest_scheme").lower()
    assert (
        str(snap.integer("unknown_key_status"))
        in paths[snap.string("quote_path")]["get"]["responses"]
    )
    post = paths[subs.string("path")]["post"]["responses"]
    assert str(subs.integer("over_limit_status")) in post
    assert spec.clause("API-SERVICE").string("host") in doc["servers"][0]["url"]
    assert auth.string("ticket_path") in paths


@pytest.mark.parametrize("version", API_VERSIONS)
def test_internal_asyncapi_is_structurally_valid(version: str) -> None:
    """AsyncAPI 3.0: every local $ref resolves, each operation names its channel's messages."""
    doc = _api_doc("asyncapi", version)
    spec = load_spec(version)
    assert doc["asyncapi"] == "3.0.0"
    for ref in _local_refs({k: v for k, v in doc.items() if k != "components"}):
        _resolve(doc, ref)
    for ref in _local_refs(doc["components"]["messages"]):
        _resolve(doc, ref)
    channel = doc["channels"]["stream"]
    assert channel["address"] == spec.clause("API-STREAM").string("path")
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive")
        assert _resolve(doc, op["channel"]["$ref"]) is channel
        for msg in op["messages"]:
            assert msg["$ref"].startswith("#/channels/stream/messages/"), name
    sent = {n.removeprefix("send_") for n in doc["operations"] if n.startswith("send_")}
    assert sent == set(spec.clause("API-STREAM").strings("server_messages"))
    server = doc["servers"]["internal"]
    assert server["protocol"] == "ws"
    _resolve(doc, server["security"][0]["$ref"])
    assert str(spec.clause("API-AUTH").integer("ws_close_code")) in channel["description"]


@pytest.mark.parametrize("version", API_VERSIONS)
def test_internal_api_component_schemas_are_valid_and_self_contained(version: str) -> None:
    """Every inlined component schema is valid 2020-12, has no $ref, and judges like the original."""
    from stockmon import schemas

    for kind in ("openapi", "asyncapi"):
        comps = _api_doc(kind, version)["components"]["schemas"]
        for name, schema in comps.items():
            jsonschema.Draft202012Validator.check_schema(schema)
            assert "$ref" not in json.dumps(schema), name
            alone = jsonschema.Draft202012Validator(schema)
            original = schemas.load_documents()[name]
            for example in original["examples"]:
                assert alone.is_valid(example), (kind, name)
            for item in original["x-invalid-examples"]:
                assert not alone.is_valid(item["instance"]), (kind, name, item["why"])
