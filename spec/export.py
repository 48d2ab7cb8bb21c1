"""OpenAPI 3.1 (KIS REST) and AsyncAPI 3.0 (KIS WebSocket) documents generated from the spec.

Standard tools (Schemathesis, Prism, AsyncAPI tooling) can then work from the same single source of
truth. Both are generated files, committed and kept current by ``stockmon spec check``; the schemas
are inlined (``bundle_from``) because those tools cannot use our offline registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stockmon.schemas import build_registry, bundle_from
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
    paths: dict[str, Any] = {
        kis["token"]["path"]: {
            kis["token"]["method"].lower(): {
                "operationId": "issueToken",
                "summary": "Issue an access token (TOKEN-KIS-BEARER)",
                "requestBody": {"required": True, **_json_body(s, "kis-token-request")},
                "responses": {
                    "200": {"description": "token issued", **_json_body(s, "kis-token-response")},
                    "403": {
                        "description": "issuance throttled (TOKEN-KIS-THROTTLE)",
                        **_json_body(s, "kis-token-throttle-error"),
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
                    "200": {"description": "revoked", **_json_body(s, "kis-revoke-response")}
                },
            }
        },
        kis["approval"]["path"]: {
            kis["approval"]["method"].lower(): {
                "operationId": "issueApprovalKey",
                "summary": "Issue a WebSocket approval key (WS-APPROVAL-KEY)",
                "requestBody": {"required": True, **_json_body(s, "kis-approval-request")},
                "responses": {
                    "200": {"description": "approval key", **_json_body(s, "kis-approval-response")}
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
                        "description": f"price in output.{q['price_field']}",
                        "content": {
                            "application/json": {
                                "schema": {
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
