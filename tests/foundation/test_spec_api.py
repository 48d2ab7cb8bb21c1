"""Spec 1.2: the internal API as clauses, its schemas agreeing with the clauses, and the UI event fields."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stockmon import schemas
from stockmon.spec import load_spec
from stockmon.spec.model import Spec, thaw

API_CLAUSES = [
    "API-SERVICE", "API-AUTH", "API-CORS", "API-EVENT", "API-STREAM", "API-SNAPSHOT", "API-STATUS",
    "API-SUBSCRIPTIONS", "API-BACKPRESSURE", "API-HEALTH", "API-METRICS", "API-DOCS",
]  # fmt: skip
DOCS = schemas.load_documents()


@pytest.fixture(scope="module")
def spec() -> Spec:
    """Spec 1.2, the first version with the internal API."""
    return load_spec("1.2")


def test_1_2_is_a_draft_based_on_1_1(spec: Spec) -> None:
    """1.2 loads, is a draft, and names 1.1 as its base."""
    assert spec.status == "draft"
    assert spec.based_on == "1.1"


def test_every_clause_of_1_1_is_in_1_2_unchanged(spec: Spec) -> None:
    """1.2 is a complete copy of 1.1 plus additions: every broker clause is identical."""
    old = load_spec("1.1")
    for clause in old.clauses:
        assert spec.clause(clause.id) == clause, clause.id
    assert spec.clause_ids[: len(old.clause_ids)] == old.clause_ids


def test_1_2_keeps_1_1s_broker_data(spec: Spec) -> None:
    """Endpoints, REST data, codes and markets are 1.1's; the mock profile only adds (the
    simulator's instruments and sessions); layout fields are 1.1's too."""
    old = load_spec("1.1")
    for section in ("endpoints", "rest", "markets", "codes"):
        assert thaw(spec.raw[section]) == thaw(old.raw[section]), section
    new_profile, old_profile = thaw(spec.raw["mock_profile"]), thaw(old.raw["mock_profile"])
    assert {k: new_profile[k] for k in old_profile} == old_profile
    for tr_id, lay in old.layouts.items():
        assert spec.layout(tr_id).fields == lay.fields
        assert dict(spec.layout(tr_id).roles).items() >= dict(lay.roles).items()
    for code, klay in old.kiwoom_layouts.items():
        assert spec.kiwoom_layouts[code].fields == klay.fields
        assert dict(spec.kiwoom_layouts[code].roles).items() >= dict(klay.roles).items()


@pytest.mark.parametrize("clause_id", API_CLAUSES)
def test_api_clause_is_new_in_1_2(spec: Spec, clause_id: str) -> None:
    """Each internal API clause exists in 1.2 (with ko and en text) and not in 1.1."""
    clause = spec.clause(clause_id)
    assert clause.text.ko and clause.text.en
    assert not load_spec("1.1").has(clause_id)


def test_only_the_documents_clause_is_not_breakable(spec: Spec) -> None:
    """Every API clause but API-DOCS can be broken on the wire; API-DOCS says why not."""
    unbreakable = [c for c in API_CLAUSES if not spec.clause(c).testability.breakable]
    assert unbreakable == ["API-DOCS"]
    assert "spec check" in (spec.clause("API-DOCS").testability.reason or "")


def test_api_defaults_the_gateway_reads(spec: Spec) -> None:
    """Loopback 127.0.0.1:8000, 401 / close 4401, a 30 s ticket, the Vite dev origin."""
    service, auth = spec.clause("API-SERVICE"), spec.clause("API-AUTH")
    assert (service.string("host"), service.integer("port")) == ("127.0.0.1", 8000)
    assert (auth.integer("rest_status"), auth.integer("ws_close_code")) == (401, 4401)
    assert auth.integer("ticket_ttl_s") == 30 and auth.flag("ticket_single_use")
    assert auth.flag("key_in_url") is False and auth.flag("key_in_logs") is False
    assert auth.strings("key_required_in") == ("prod",)
    assert "http://localhost:5173" in spec.clause("API-CORS").strings("default_origins")
    assert spec.clause("API-BACKPRESSURE").integer("close_code") == 4408


def test_cors_preflight_needs_no_key_and_websocket_origin_is_checked(spec: Spec) -> None:
    """Browsers send no authorization on a preflight; a foreign Origin on the WebSocket is refused."""
    cors = spec.clause("API-CORS")
    assert cors.flag("preflight_needs_key") is False
    assert cors.flag("wildcard") is False and cors.flag("allow_credentials") is False
    assert cors.flag("ws_origin_checked") and cors.integer("ws_origin_close_code") == 4403
    assert "authorization" in cors.strings("allow_headers")


def test_subscription_limit_is_ws_session_limits(spec: Spec) -> None:
    """API-SUBSCRIPTIONS is bounded by WS-SESSION-LIMITS max_registrations (41): the 42nd is 409."""
    subs = spec.clause("API-SUBSCRIPTIONS")
    limit = spec.clause(subs.string("limit_clause")).integer(subs.string("limit_value"))
    assert (subs.string("limit_clause"), limit) == ("WS-SESSION-LIMITS", 41)
    assert subs.integer("over_limit_status") == 409
    assert DOCS["api-subscriptions"]["properties"]["clause"]["const"] == subs.string("limit_clause")


def test_every_variable_an_api_clause_names_is_declared(spec: Spec) -> None:
    """Host, port, CORS origins and the key are in the environment section (so in .env.example)."""
    names = {
        spec.clause("API-SERVICE").string("host_variable"),
        spec.clause("API-SERVICE").string("port_variable"),
        spec.clause("API-CORS").string("origins_variable"),
        spec.clause("API-AUTH").string("key_variable"),
    }
    for name in names:
        spec.env(name)
    assert spec.env("VITE_API_KEY").secret
    assert not spec.env("STOCKMON_API_HOST").secret


def test_public_routes_are_the_health_routes(spec: Spec) -> None:
    """API-AUTH exempts exactly the routes of the clause it names (API-HEALTH)."""
    health = spec.clause(spec.clause("API-AUTH").string("public_routes_of"))
    assert health.id == "API-HEALTH"
    assert health.flag("key_required") is False


# --------------------------------------------------------------------------- schemas vs clauses


def test_stream_schemas_agree_with_api_stream(spec: Spec) -> None:
    """Message names, seq start, the keys-per-message bound and the error codes match the clause."""
    stream = spec.clause("API-STREAM")
    for name in stream.strings("server_messages"):
        assert DOCS[f"api-stream-{name}"]["properties"]["type"]["const"] == name
    request = DOCS["api-stream-request"]["properties"]
    assert set(request["type"]["enum"]) == set(stream.strings("client_messages"))
    assert request["keys"]["maxItems"] == stream.integer("max_keys_per_message")
    assert DOCS["api-stream-welcome"]["properties"]["seq"]["const"] == stream.integer("seq_start")
    codes = set(thaw(stream.mapping("error_codes")).values())
    assert set(DOCS["api-stream-error"]["properties"]["code"]["enum"]) == codes
    for name in stream.strings("server_messages"):
        assert "seq" in DOCS[f"api-stream-{name}"]["required"], name


def test_status_schema_agrees_with_api_status(spec: Spec) -> None:
    """api-status requires exactly the clause's fields and enumerates its states."""
    status = spec.clause("API-STATUS")
    doc = DOCS["api-status"]
    assert set(doc["required"]) == set(status.strings("fields"))
    assert set(doc["properties"]["socket"]["enum"]) == set(status.strings("socket_states"))
    assert set(doc["properties"]["failover"]["enum"]) == set(status.strings("failover_states"))


def test_subscription_schema_has_the_clause_fields(spec: Spec) -> None:
    """api-subscription is {tr_id, key}, the fields API-SUBSCRIPTIONS names."""
    fields = spec.clause("API-SUBSCRIPTIONS").strings("item_fields")
    assert set(DOCS["api-subscription"]["required"]) == set(fields)


def test_ticket_schema_holds_the_entropy_of_api_auth(spec: Spec) -> None:
    """A ticket of ticket_min_bytes random bytes in base64url is what api-ticket's pattern admits."""
    import base64
    import secrets

    n = spec.clause("API-AUTH").integer("ticket_min_bytes")
    ticket = base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()
    assert schemas.is_valid("api-ticket", {"ticket": ticket, "expires_in_s": 30})
    assert not schemas.is_valid("api-ticket", {"ticket": ticket[:-1], "expires_in_s": 30})


def test_stream_event_requires_the_api_event_fields(spec: Spec) -> None:
    """api-stream-event requires on ticks and books exactly the fields API-EVENT lists."""
    event = spec.clause("API-EVENT")
    conds = DOCS["api-stream-event"]["$defs"]["event"]["allOf"][1:]
    by_type = {c["if"]["properties"]["type"]["const"]: c["then"]["required"] for c in conds}
    assert set(by_type["tick"]) == set(event.strings("tick_fields"))
    assert set(by_type["orderbook"]) == set(event.strings("orderbook_fields"))


# --------------------------------------------------------------------------- the UI event fields


def test_api_event_roles_name_layout_fields(spec: Spec) -> None:
    """Every tick layout has the change, change_rate, change_sign and cumulative_volume roles,
    and every layout a time role; a date role exists where the layout has a date field."""
    roles = thaw(spec.clause("API-EVENT").mapping("change_roles"))
    layouts: list[Any] = [*spec.layouts.values(), *spec.kiwoom_layouts.values()]
    for lay in layouts:
        assert "time" in lay.roles
        if lay.kind == "tick":
            for role in roles.values():
                assert role in lay.roles, (lay, role)
    dated = {
        name
        for name, lay in spec.layouts.items()
        if any(r in lay.roles for r in spec.clause("API-EVENT").strings("date_roles"))
    }
    assert dated == {"H0STCNT0", "HDFSCNT0", "HDFSASP0"}  # H0STASP0, 0B, 0D: receipt date
    assert spec.layout("HDFSCNT0").role("local_time") == "XHMS"  # US Eastern, not KHMS (KST)


def test_markets_give_the_timestamp_zone(spec: Spec) -> None:
    """The UTC offset of a timestamp is the market's zone: KST for KR, US Eastern for US."""
    assert spec.markets["KR"]["timezone"] == "Asia/Seoul"
    assert spec.markets["US"]["timezone"] == "America/New_York"


OLD_TICK = {"type": "tick", "source": "kis", "tr_id": "H0STCNT0", "key": "005930",
            "time": "093015", "price": 71000, "volume": 5}  # fmt: skip
OLD_BOOK = {"type": "orderbook", "source": "kiwoom", "tr_id": "0D", "key": "005930",
            "time": "093015", "asks": [[71100, 120]], "bids": [[71000, 80]]}  # fmt: skip
UI = {"timestamp": "2026-12-01T09:30:15+09:00", "change": -500, "change_rate": -0.7,
      "cumulative_volume": 1523400}  # fmt: skip


def test_events_of_1_0_and_1_1_stay_valid() -> None:
    """A tick and a book without the new fields (as spec 1.0/1.1 targets print them) still validate."""
    assert schemas.errors("event", OLD_TICK) == []
    assert schemas.errors("event", OLD_BOOK) == []
    assert schemas.errors("event", {**OLD_TICK, "vendor_field": "kept"}) == []


def test_a_1_2_event_with_the_new_fields_validates() -> None:
    """A tick with timestamp, change, change_rate, cumulative_volume is valid, in event and on the stream."""
    tick = {**OLD_TICK, **UI}
    assert schemas.errors("event", tick) == []
    book = {**OLD_BOOK, "timestamp": UI["timestamp"], "cumulative_volume": 10}
    assert schemas.errors("event", book) == []
    assert schemas.is_valid("api-stream-event", {"type": "event", "seq": 1, "event": tick})
    assert schemas.is_valid("api-stream-event", {"type": "event", "seq": 2, "event": book})


def test_the_stream_rejects_an_old_style_tick() -> None:
    """A tick without the UI fields is valid stdout but not a valid stream event (API-STREAM)."""
    assert not schemas.is_valid("api-stream-event", {"type": "event", "seq": 1, "event": OLD_TICK})


@pytest.mark.parametrize(
    "timestamp",
    ["2026-12-01T09:30:15+09:00", "2026-07-01T09:30:15-04:00", "2026-12-01T09:30:15.250-05:00"],
)
def test_timestamp_with_offset_is_accepted(timestamp: str) -> None:
    """KST, US Eastern daylight and standard time, with or without fractions, validate."""
    assert schemas.is_valid("event", {**OLD_TICK, "timestamp": timestamp})
    pattern = DOCS["event"]["$defs"]["tick"]["properties"]["timestamp"]["pattern"]
    assert re.match(pattern, timestamp)


@pytest.mark.parametrize("timestamp", ["2026-12-01T09:30:15", "2026-12-01T00:30:15Z", "093015"])
def test_timestamp_without_the_exchange_offset_is_rejected(timestamp: str) -> None:
    """No offset, UTC 'Z' (not the exchange's local time) and a bare HHMMSS are rejected."""
    assert not schemas.is_valid("event", {**OLD_TICK, "timestamp": timestamp})
