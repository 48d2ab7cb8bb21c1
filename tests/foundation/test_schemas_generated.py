"""Schemas under generated input (hypothesis-jsonschema) and offline $ref resolution.

Request schemas are the ones the mock validates every inbound packet with: anything they accept must
also survive the wire (JSON text) unchanged. References across files resolve from the packaged
files alone; the registry has no retrieve function, so an unknown reference is an error, not a fetch.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema
from referencing.exceptions import Unresolvable

from stockmon import schemas
from stockmon.errors import SpecError

# Client -> server packets and request bodies (what an implementation sends and the mock judges).
REQUESTS = (
    "kis-ws-subscribe",
    "kis-ws-unsubscribe",
    "kis-ws-client-pingpong",
    "kis-token-request",
    "kis-approval-request",
    "kis-revoke-request",
    "kiwoom-token-request",
    "kiwoom-login",
    "kiwoom-reg",
    "kiwoom-remove",
)
# Modest: 10 schemas x 50 examples keeps this file near half a minute on 2 cores. too_slow is
# suppressed because drawing open-ended objects (any extra keys, nested) takes ~0.15 s an example
# for kiwoom-reg, which trips the health check when other helpers' suites load the machine.
GENERATED = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to resolve a host or open a socket fails the test loudly."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


def _fresh_validator(name: str, docs: dict[str, dict[str, Any]]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(docs[name], registry=schemas.build_registry(docs))


# --------------------------------------------------------------------------- generated requests


@pytest.mark.parametrize("name", REQUESTS)
def test_generated_requests_validate_and_round_trip(name: str) -> None:
    """Instances generated from a request schema validate via the registry and survive JSON text."""

    @GENERATED
    @given(from_schema(schemas.bundled(name)))
    def check(instance: Any) -> None:
        assert schemas.errors(name, instance) == []
        again = json.loads(json.dumps(instance))
        assert again == instance
        assert schemas.is_valid(name, again)

    check()


@GENERATED
@given(from_schema(schemas.bundled("kis-ws-subscribe")))
def test_generated_subscribe_with_tr_type_2_is_an_unsubscribe(packet: dict[str, Any]) -> None:
    """PKT-UNSUBSCRIBE: any valid subscribe becomes a valid unsubscribe (only) by tr_type "2"."""
    release = {**packet, "header": {**packet["header"], "tr_type": "2"}}
    assert schemas.is_valid("kis-ws-unsubscribe", release)
    assert not schemas.is_valid("kis-ws-subscribe", release)
    assert not schemas.is_valid("kis-ws-unsubscribe", packet)


@GENERATED
@given(from_schema(schemas.bundled("kiwoom-reg")))
def test_generated_reg_renamed_is_a_remove(frame: dict[str, Any]) -> None:
    """KIWOOM-PROTOCOL: a valid REG renamed REMOVE is a valid REMOVE (same grp_no/data rules)."""
    assert schemas.is_valid("kiwoom-remove", {**frame, "trnm": "REMOVE"})
    assert not schemas.is_valid("kiwoom-remove", frame)


# --------------------------------------------------------------------------- offline $ref


@pytest.mark.usefixtures("no_network")
def test_cross_file_ref_resolves_offline() -> None:
    """kis-ws-unsubscribe's $ref into kis-ws-subscribe.json is followed with the network blocked."""
    docs = schemas.load_documents()
    assert any("kis-ws-subscribe.json#" in ref for ref in _refs(docs["kis-ws-unsubscribe"]))
    validator = _fresh_validator("kis-ws-unsubscribe", docs)
    packet = docs["kis-ws-unsubscribe"]["examples"][0]
    assert list(validator.iter_errors(packet)) == []
    # A bad tr_id is only caught through the referenced definition: proof the ref was followed.
    bad = json.loads(json.dumps(packet))
    bad["body"]["input"]["tr_id"] = "bad"
    paths = ["/".join(map(str, e.absolute_path)) for e in validator.iter_errors(bad)]
    assert paths == ["body/input/tr_id"]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "ref",
    [
        "https://json-schema.example/remote.json",
        "no-such-schema.json",
        "kiwoom-reg.json#/$defs/nope",
    ],
)
def test_unknown_ref_raises_unresolvable(ref: str) -> None:
    """A $ref to anything outside schemas/ raises Unresolvable (never a network fetch)."""
    docs = schemas.load_documents()
    probe = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schemas.schema_uri("probe"),
        "properties": {"x": {"$ref": ref}},
    }
    docs["probe"] = probe
    with pytest.raises(Unresolvable):
        _fresh_validator("probe", docs).validate({"x": 1})


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


# --------------------------------------------------------------------------- bundled()


# The mock's own schemas (trace-record, scenario) may legitimately be recursive; not judged here.
@pytest.mark.parametrize("name", sorted(set(schemas.names()) - {"trace-record", "scenario"}))
def test_bundled_schema_is_self_contained_and_equivalent(name: str) -> None:
    """bundled() leaves no $ref and judges every labelled example as the registry validator does."""
    flat = schemas.bundled(name)
    assert list(_refs(flat)) == []
    jsonschema.Draft202012Validator.check_schema(flat)
    alone = jsonschema.Draft202012Validator(flat)  # no registry at all
    doc = schemas.load_documents()[name]
    for example in doc.get("examples", []):
        assert alone.is_valid(example)
    for item in doc.get("x-invalid-examples", []):
        assert not alone.is_valid(item["instance"]), item["why"]


def test_bundled_rejects_a_reference_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A recursive schema cannot be inlined: SpecError names the reference instead of looping."""
    docs = {
        "loop": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": schemas.schema_uri("loop"),
            "$defs": {"node": {"properties": {"next": {"$ref": "#/$defs/node"}}}},
            "$ref": "#/$defs/node",
        }
    }
    monkeypatch.setattr(schemas, "_registry", lambda: (docs, schemas.build_registry(docs)))
    with pytest.raises(SpecError, match="cycle"):
        schemas.bundled("loop")


def test_bundled_unknown_name_is_a_spec_error() -> None:
    """bundled() of a name with no file names the known schemas."""
    with pytest.raises(SpecError, match="unknown schema"):
        schemas.bundled("no-such")
