"""Generated OpenAPI 3.1 and AsyncAPI 3.0 documents: valid, current, and built from the spec's values."""

from __future__ import annotations

import json

import jsonschema
import pytest
from openapi_spec_validator import validate

from stockmon.spec import load_spec, spec_dir


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_openapi_document_is_valid_openapi_3_1(version: str) -> None:
    """The committed OpenAPI document passes the OpenAPI 3.1 validator."""
    doc = json.loads((spec_dir() / "docs" / f"openapi-{version}.json").read_text(encoding="utf-8"))
    validate(doc)
    assert doc["openapi"] == "3.1.0"


@pytest.mark.parametrize("version", ["1.0", "1.1"])
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
    for version in ("1.0", "1.1"):
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
