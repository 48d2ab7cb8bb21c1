"""OpenAPI 3.1 and AsyncAPI 3.0 documents generated from the spec: the broker's side (KIS REST and
WebSocket, every version) and, from 1.2, the backend's own internal API (REST and the live stream).

Standard tools (Schemathesis, Prism, AsyncAPI tooling) can then work from the same single source of
truth. Both are generated files, committed and kept current by ``stockmon spec check``; the schemas
are inlined (``bundle_from``) because those tools cannot use our offline registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from stockmon.errors import SpecError
from stockmon.schemas import build_registry, bundle_from
from stockmon.spec.facts import mock_profile_value
from stockmon.spec.model import Spec, thaw

_STRIP = ("$schema", "$id", "examples", "x-invalid-examples")


class _Schemas:
    """Inlined component schemas, each once, referenced by name."""

    def __init__(self, docs: Mapping[str, dict[str, Any]]) -> None:
        self._docs = dict(docs)
        self._registry = build_registry(self._docs)
        self.components: dict[str, Any] = {}

    def ref(self, name: str, prefix: str) -> dict[str, str]:
        if name not in self.components:
            doc = bundle_from(self._docs, self._registry, name)
            self.components[name] = {k: v for k, v in doc.items() if k not in _STRIP}
        return {"$ref": f"{prefix}{name}"}


def _json_body(schemas: _Schemas, name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schemas.ref(name, "#/components/schemas/")}}}


def openapi(spec: Spec, docs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI 3.1 for the KIS REST endpoints the spec names (token, revoke, approval, quotes)."""
    s = _Schemas(docs)
    kis = spec.rest["kis"]
    headers = kis["headers"]
    err = {"description": "gateway error (ERR-REST-BODY)", **_json_body(s, "kis-rest-error")}
    # the OAuth endpoints refuse in their own shape, with this status (protocol/kis.md §1.6)
    status = str(mock_profile_value(spec, "token_endpoint_error_status"))
    refused = {
        "description": "credentials refused or a malformed request",
        **_json_body(s, "kis-oauth-error"),
    }
    paths: dict[str, Any] = {
        kis["token"]["path"]: {
            kis["token"]["method"].lower(): {
                "operationId": "issueToken",
                "summary": "Issue an access token (TOKEN-KIS-BEARER)",
                "requestBody": {"required": True, **_json_body(s, "kis-token-request")},
                "responses": {
                    "200": {"description": "token issued", **_json_body(s, "kis-token-response")},
                    status: {
                        "description": "issuance throttled (TOKEN-KIS-THROTTLE), credentials "
                        "refused or a malformed request",
                        **_json_body(s, "kis-oauth-error"),
                    },
                },
            }
        },
        kis["revoke"]["path"]: {
            kis["revoke"]["method"].lower(): {
                "operationId": "revokeToken",
                "summary": "Revoke an access token",
                "requestBody": {"required": True, **_json_body(s, "kis-revoke-request")},
                "responses": {
                    "200": {"description": "revoked", **_json_body(s, "kis-revoke-response")},
                    status: refused,
                    str(kis["gateway_error_status"]): err,
                },
            }
        },
        kis["approval"]["path"]: {
            kis["approval"]["method"].lower(): {
                "operationId": "issueApprovalKey",
                "summary": "Issue a WebSocket approval key (WS-APPROVAL-KEY)",
                "requestBody": {"required": True, **_json_body(s, "kis-approval-request")},
                "responses": {
                    "200": {
                        "description": "approval key",
                        **_json_body(s, "kis-approval-response"),
                    },
                    status: refused,
                },
            }
        },
    }
    auth_headers = [
        {
            "name": headers["authorization"],
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer "},
        },
        {"name": headers["appkey"], "in": "header", "required": True, "schema": {"type": "string"}},
        {
            "name": headers["appsecret"],
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
        },
        {
            "name": headers["custtype"],
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
        },
    ]
    for market, q in kis["quotes"].items():
        params = [
            *auth_headers,
            {
                "name": headers["tr_id"],
                "in": "header",
                "required": True,
                "schema": {"const": q["tr_id"]},
            },
        ]
        for key in ("market_param", "exchange_param", "key_param"):
            if key in q:
                params.append(
                    {"name": q[key], "in": "query", "required": True, "schema": {"type": "string"}}
                )
        paths[q["path"]] = {
            q["method"].lower(): {
                "operationId": f"quote{market}",
                "summary": f"Current price, {market} market (tr_id {q['tr_id']})",
                "parameters": params,
                "responses": {
                    "200": {
                        "description": f"price in output.{q['price_field']}, or a refusal "
                        "with rt_cd other than the success code (HTTP 200 all the same)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {
                                            "type": "object",
                                            "required": ["rt_cd", "output"],
                                            "properties": {
                                                "rt_cd": {"type": "string"},
                                                "msg_cd": {"type": "string"},
                                                "msg1": {"type": "string"},
                                                "output": {
                                                    "type": "object",
                                                    "required": [q["price_field"]],
                                                },
                                            },
                                        },
                                        s.ref("kis-rest-error", "#/components/schemas/"),
                                    ]
                                }
                            }
                        },
                    },
                    str(kis["gateway_error_status"]): err,
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"KIS REST as seen by stockmon (spec {spec.version})",
            "version": spec.version,
            "description": "Generated by 'stockmon spec render'; do not edit.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [
            {"url": url, "description": name} for name, url in spec.endpoints["kis"]["rest"].items()
        ],
        "paths": paths,
        "components": {"schemas": s.components},
    }


def asyncapi(spec: Spec, docs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """AsyncAPI 3.0 for the KIS market-data WebSocket: what the client sends and receives."""
    s = _Schemas(docs)
    sent = {"subscribe": "kis-ws-subscribe", "clientPingpong": "kis-ws-client-pingpong"}
    received = {
        "control": "kis-ws-control",
        "serverPingpong": "kis-ws-server-pingpong",
        "error": "kis-ws-error",
    }
    if spec.has("PKT-UNSUBSCRIBE"):
        sent["unsubscribe"] = "kis-ws-unsubscribe"
    messages: dict[str, Any] = {}
    for key, name in {**sent, **received}.items():
        messages[key] = {
            "name": key,
            "contentType": "application/json",
            "payload": s.ref(name, "#/components/schemas/"),
        }
    messages["dataFrame"] = {
        "name": "dataFrame",
        "contentType": "text/plain",
        "summary": "enc|tr_id|NNN|records (PKT-DATA); parsed form: schema kis-data-frame",
        "payload": {"type": "string", "pattern": "^[01]\\|[A-Z0-9]{8}\\|[0-9]{3}\\|"},
    }
    s.ref("kis-data-frame", "#/components/schemas/")
    url = spec.clause("WS-PRIMARY-CHANNEL").string("url")
    host = url.split("://", 1)[1]
    channel_messages = {k: {"$ref": f"#/components/messages/{k}"} for k in messages}
    ops: dict[str, Any] = {}
    for key in sent:
        ops[f"send_{key}"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/marketData"},
            "messages": [{"$ref": f"#/channels/marketData/messages/{key}"}],
        }
    for key in (*received, "dataFrame"):
        ops[f"receive_{key}"] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/marketData"},
            "messages": [{"$ref": f"#/channels/marketData/messages/{key}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"KIS market-data WebSocket as seen by stockmon (spec {spec.version})",
            "version": spec.version,
            "description": "Generated by 'stockmon spec render'; do not edit. Keep-alive, idle and "
            "error policies are clauses of the spec: " + ", ".join(spec.clause_ids),
        },
        "servers": {
            "primary": {
                "host": host,
                "protocol": "ws",
                "description": "WS-PRIMARY-CHANNEL (a single socket: WS-SINGLE-SOCKET)",
            }
        },
        "channels": {"marketData": {"address": "/", "messages": channel_messages}},
        "operations": ops,
        "components": {"messages": messages, "schemas": s.components},
    }


def dump(doc: Mapping[str, Any]) -> str:
    """Stable JSON text for a generated document."""
    return json.dumps(thaw(doc), ensure_ascii=False, indent=2, sort_keys=False) + "\n"


# ------------------------------------------------------------------ the internal API (spec 1.2+)


def has_internal_api(spec: Spec) -> bool:
    """Whether a version defines the internal API (the front end's door, API-* clauses)."""
    return spec.has("API-SERVICE") and spec.has("API-STREAM") and spec.has("API-DOCS")


def api_document_paths(spec: Spec) -> tuple[Path, Path]:
    """Where the internal API's OpenAPI and AsyncAPI documents go, relative to the spec folder.

    The names are values of clause API-DOCS (project-relative, under ``spec/``), so the files the
    render writes and the check compares are the ones the spec announces.
    """
    docs = spec.clause("API-DOCS")
    out = []
    for key in ("openapi_file", "asyncapi_file"):
        rel = PurePosixPath(docs.string(key).format(version=spec.version))
        if rel.parts[:1] != ("spec",):
            raise SpecError(f"clause API-DOCS: {key} must lie under spec/, got {rel}")
        out.append(Path(*rel.parts[1:]))
    return out[0], out[1]


def _answer(s: _Schemas, description: str, schema: str) -> dict[str, Any]:
    return {"description": description, **_json_body(s, schema)}


def _api_error(s: _Schemas, description: str) -> dict[str, Any]:
    return _answer(s, description, "api-error")


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One OpenAPI operation; ``extra`` (description, parameters, security) before its answers."""
    return {"operationId": op_id, "summary": summary, **extra, "responses": responses}


def openapi_api(spec: Spec, docs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI 3.1 for the internal REST API, every path, status and body read from the API clauses.

    The document is what Schemathesis runs against the live service, so each answer a clause
    promises (401 without the key, 404 for an unknown key, 409 past the registration limit ...) is
    declared here with its status taken from the clause, never typed twice.
    """
    s = _Schemas(docs)
    service, auth = spec.clause("API-SERVICE"), spec.clause("API-AUTH")
    snap, status = spec.clause("API-SNAPSHOT"), spec.clause("API-STATUS")
    subs, health = spec.clause("API-SUBSCRIPTIONS"), spec.clause("API-HEALTH")
    metrics = spec.clause("API-METRICS")
    limit_clause = spec.clause(subs.string("limit_clause"))
    limit = limit_clause.integer(subs.string("limit_value"))
    unauthorized = {
        str(auth.integer("rest_status")): _api_error(
            s, f"missing or wrong {auth.string('key_variable')} (API-AUTH)"
        )
    }
    key_param = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "a tr_key, e.g. 005930 or DNASAAPL",
        "schema": {"type": "string", "minLength": 1},
    }
    unknown_key = {
        str(snap.integer("unknown_key_status")): _api_error(
            s, "no data for this key; the body lists every market's key pattern (API-SNAPSHOT)"
        )
    }
    paths: dict[str, Any] = {
        auth.string("ticket_path"): {
            auth.string("ticket_method").lower(): _op(
                "issueStreamTicket",
                "A single-use WebSocket ticket (API-AUTH)",
                {
                    str(auth.integer("ticket_status")): _answer(s, "ticket issued", "api-ticket"),
                    **unauthorized,
                },
                description=(
                    f"Valid {auth.integer('ticket_ttl_s')} s; offer it as the WebSocket subprotocol "
                    f"'{auth.string('ws_ticket_subprotocol_prefix')}<ticket>' next to "
                    f"'{auth.string('ws_subprotocol')}'."
                ),
            )
        },
        **{
            snap.string(f"{what}_path"): {
                "get": _op(
                    op_id,
                    f"Latest {noun} of a key (API-SNAPSHOT)",
                    {
                        str(snap.integer("ok_status")): _answer(s, f"latest {noun}", f"api-{what}"),
                        **unauthorized,
                        **unknown_key,
                    },
                    parameters=[key_param],
                )
            }
            for what, op_id, noun in (
                ("quote", "getQuote", "tick"),
                ("book", "getBook", "order book"),
            )
        },
        status.string("path"): {
            "get": _op(
                "getStatus",
                "Broker, socket, heartbeat, failover and subscriptions (API-STATUS)",
                {"200": _answer(s, "status", "api-status"), **unauthorized},
            )
        },
    }
    listing = {"description": "every broker subscription", **_json_body(s, "api-subscriptions")}
    invalid = {
        str(subs.integer("invalid_status")): _api_error(
            s, "not a TR of the spec's layouts, or a key off its market's pattern"
        )
    }
    ops: dict[str, Any] = {
        "get": {
            "operationId": "listSubscriptions",
            "summary": "Broker subscriptions (API-SUBSCRIPTIONS)",
            "responses": {"200": listing, **unauthorized},
        },
        "post": {
            "operationId": "addSubscription",
            "summary": f"Add a broker subscription, at most {limit} ({limit_clause.id})",
            "requestBody": {"required": True, **_json_body(s, "api-subscription")},
            "responses": {
                str(subs.integer("created_status")): {"description": "added", **listing},
                str(subs.integer("existing_status")): {"description": "already there", **listing},
                **unauthorized,
                str(subs.integer("over_limit_status")): _api_error(
                    s, f"limit reached: the body names {limit_clause.id}"
                ),
                **invalid,
            },
        },
        "delete": {
            "operationId": "removeSubscription",
            "summary": "Remove a broker subscription (API-SUBSCRIPTIONS)",
            "parameters": [
                {"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
                for name in subs.strings("delete_params")
            ],
            "responses": {
                str(subs.integer("deleted_status")): {"description": "removed", **listing},
                **unauthorized,
                str(subs.integer("not_found_status")): _api_error(s, "no such subscription"),
                **invalid,
            },
        },
    }
    paths[subs.string("path")] = {m.lower(): ops[m.lower()] for m in subs.strings("methods")}
    public: list[dict[str, Any]] = []
    ok, not_ready = str(health.integer("ok_status")), str(health.integer("not_ready_status"))
    paths[health.string("liveness_path")] = {
        "get": _op(
            "liveness",
            "Alive (API-HEALTH); no key",
            {ok: _answer(s, "alive", "api-health")},
            security=public,
        )
    }
    paths[health.string("readiness_path")] = {
        "get": _op(
            "readiness",
            "Ready (API-HEALTH); no key",
            {
                ok: _answer(s, "ready", "api-health"),
                not_ready: _answer(s, "not ready", "api-health"),
            },
            security=public,
        )
    }
    names = ", ".join(str(m["name"]) for m in metrics.mapping("metrics").values())
    paths[metrics.string("path")] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus text (API-METRICS)",
            "description": f"Metrics: {names}.",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {metrics.string("content_type"): {"schema": {"type": "string"}}},
                },
                **unauthorized,
            },
        }
    }
    scheme = auth.string("rest_scheme")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"stockmon internal API (spec {spec.version})",
            "version": spec.version,
            "description": "The monitoring front end's REST door, guarded by "
            f"{auth.string('key_variable')} (API-AUTH). The live stream is in the AsyncAPI "
            "document. Generated by 'stockmon spec render'; do not edit.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [
            {
                "url": f"http://{service.string('host')}:{service.integer('port')}",
                "description": "default listen address (API-SERVICE)",
            }
        ],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": s.components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": scheme.lower(),
                    "description": f"{auth.string('rest_header')}: {scheme} "
                    f"<{auth.string('key_variable')}> (API-AUTH)",
                }
            },
        },
    }


def asyncapi_api(spec: Spec, docs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """AsyncAPI 3.0 for the internal live stream (/v1/stream), from the gateway's point of view.

    The gateway receives subscribe/unsubscribe and sends welcome, ack, snapshot, event and error;
    the close codes a browser must handle (API-AUTH, API-STREAM, API-BACKPRESSURE) are stated in
    the channel description, read from the clauses.
    """
    s = _Schemas(docs)
    service, auth = spec.clause("API-SERVICE"), spec.clause("API-AUTH")
    stream, back = spec.clause("API-STREAM"), spec.clause("API-BACKPRESSURE")
    cors = spec.clause("API-CORS")
    received = {"request": "api-stream-request"}
    sent = {name: f"api-stream-{name}" for name in stream.strings("server_messages")}
    messages: dict[str, Any] = {}
    for key, name in {**received, **sent}.items():
        messages[key] = {
            "name": key,
            "contentType": "application/json",
            "payload": s.ref(name, "#/components/schemas/"),
        }
    ops: dict[str, Any] = {}
    for key in received:
        ops[f"receive_{key}"] = {
            "action": "receive",
            "channel": {"$ref": "#/channels/stream"},
            "messages": [{"$ref": f"#/channels/stream/messages/{key}"}],
        }
    for key in sent:
        ops[f"send_{key}"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/stream"},
            "messages": [{"$ref": f"#/channels/stream/messages/{key}"}],
        }
    closes = (
        f"{auth.integer('ws_close_code')} {auth.string('ws_close_reason')} (API-AUTH), "
        f"{cors.integer('ws_origin_close_code')} {cors.string('ws_origin_close_reason')} "
        "(API-CORS), "
        f"{back.integer('close_code')} {back.string('close_reason')} (API-BACKPRESSURE), "
        f"{stream.integer('oversize_close_code')} message over "
        f"{stream.integer('max_message_bytes')} bytes (API-STREAM), "
        f"{service.integer('shutdown_close_code')} shutting down (API-SERVICE)"
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"stockmon internal API live stream (spec {spec.version})",
            "version": spec.version,
            "description": "Generated by 'stockmon spec render'; do not edit. On connect: "
            + ", ".join(stream.strings("on_connect"))
            + "; after each subscribe: "
            + ", ".join(stream.strings("on_subscribe"))
            + f". Every server message carries seq (from {stream.integer('seq_start')}, per "
            "connection, no gaps).",
        },
        "servers": {
            "internal": {
                "host": f"{service.string('host')}:{service.integer('port')}",
                "protocol": "ws",
                "description": "default listen address (API-SERVICE)",
                "security": [{"$ref": "#/components/securitySchemes/ticket"}],
            }
        },
        "channels": {
            "stream": {
                "address": stream.string("path"),
                "description": f"Subprotocol {auth.string('ws_subprotocol')}. Close codes: {closes}.",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in messages},
            }
        },
        "operations": ops,
        "components": {
            "messages": messages,
            "schemas": s.components,
            "securitySchemes": {
                "ticket": {
                    "type": "httpApiKey",
                    "name": "Sec-WebSocket-Protocol",
                    "in": "header",
                    "description": f"'{auth.string('ws_ticket_subprotocol_prefix')}<ticket>' "
                    f"from {auth.string('ticket_method')} {auth.string('ticket_path')} "
                    f"(single use, {auth.integer('ticket_ttl_s')} s; API-AUTH)",
                }
            },
        },
    }
