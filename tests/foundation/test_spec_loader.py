"""The spec as data: every clause of DESIGN §2, typed immutable objects, field layouts."""

from __future__ import annotations

import pytest

from stockmon.errors import SpecError
from stockmon.spec import available_versions, latest_version, load_spec, version_key

SHEET_CLAUSES = [
    "CRED-ENV", "TOKEN-KIS-BEARER", "TOKEN-KIS-REFRESH", "TOKEN-KIS-LOCK", "TOKEN-KIWOOM-SESSION",
    "WS-SINGLE-SOCKET", "WS-PRIMARY-CHANNEL", "KA-PING", "KA-HEARTBEAT", "PKT-SUBSCRIBE", "PKT-DATA",
    "ERR-WS-BODY", "ERR-REST-BODY", "POL-ALREADY-SUBSCRIBED", "POL-AUTH-FAILED", "POL-IDLE-RECONNECT",
    "TEST-MOCKED", "DEV-SPEC-FIRST",
]  # fmt: skip
ERRATA = [
    "KA-SERVER-PINGPONG", "PKT-UNSUBSCRIBE", "WS-SESSION-LIMITS", "TOKEN-KIS-THROTTLE",
    "TOKEN-KIS-EXPIRY", "WS-APPROVAL-KEY", "PKT-DATA-FRAME", "CRED-KIWOOM-SECRET", "KIWOOM-PROTOCOL",
]  # fmt: skip


@pytest.mark.parametrize("clause_id", SHEET_CLAUSES)
def test_every_sheet_clause_is_in_both_versions(clause_id: str) -> None:
    """Each clause ID of the v1.0 table of DESIGN §2 exists in 1.0 and in 1.1."""
    assert load_spec("1.0").has(clause_id)
    assert load_spec("1.1").has(clause_id)


@pytest.mark.parametrize("clause_id", ERRATA)
def test_every_erratum_is_only_in_1_1(clause_id: str) -> None:
    """Each v1.1 erratum exists in 1.1 and not in 1.0 (1.0 says exactly what the sheet says)."""
    assert load_spec("1.1").has(clause_id)
    assert not load_spec("1.0").has(clause_id)


def test_two_timer_interpretation_is_a_clause() -> None:
    """KA-TIMERS states that sending never resets last-inbound."""
    clause = load_spec("1.0").clause("KA-TIMERS")
    assert clause.flag("send_resets_last_inbound") is False
    assert clause.mapping("last_inbound")["drives"] == "POL-IDLE-RECONNECT"


def test_auth_failure_codes_amended_in_1_1() -> None:
    """1.1 keeps IGW00221 and adds EGW00121/EGW00123 and the WS code OPSP0011."""
    old = load_spec("1.0").clause("POL-AUTH-FAILED")
    new = load_spec("1.1").clause("POL-AUTH-FAILED")
    assert old.strings("rest_codes") == ("IGW00221",)
    assert set(new.strings("rest_codes")) >= {"IGW00221", "EGW00121", "EGW00123"}
    assert new.strings("ws_codes") == ("OPSP0011",)


@pytest.mark.parametrize(
    ("tr_id", "count"), [("H0STCNT0", 46), ("H0STASP0", 59), ("HDFSCNT0", 26), ("HDFSASP0", 71)]
)
@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_field_layouts_have_documented_counts(version: str, tr_id: str, count: int) -> None:
    """The layouts carry the field counts documented in protocol/kis.md §2.7."""
    assert len(load_spec(version).layout(tr_id).fields) == count


def test_layout_roles_and_index() -> None:
    """Roles name real fields; index() gives the wire position."""
    lay = load_spec().layout("H0STCNT0")
    assert lay.index(lay.role("price")) == 2
    assert lay.role("key") == lay.names[0]
    book = load_spec().layout("H0STASP0")
    assert len(book.role_list("ask_prices")) == 10
    with pytest.raises(SpecError, match="no field"):
        lay.index("NOPE")


def test_kiwoom_layouts_are_fid_keyed() -> None:
    """Kiwoom 0B/0D layouts map roles to FIDs that exist."""
    tick = load_spec().kiwoom_layouts["0B"]
    fids = {f.fid for f in tick.fields}
    assert tick.roles["price"] in fids
    book = load_spec().kiwoom_layouts["0D"]
    assert len(book.roles["ask_prices"]) == 10


def test_typed_getters_reject_wrong_types() -> None:
    """A value of the wrong type is a SpecError naming the clause, never a silent coercion."""
    ping = load_spec().clause("KA-PING")
    assert ping.integer("interval_s") > 0
    with pytest.raises(SpecError, match="KA-PING"):
        ping.string("interval_s")
    with pytest.raises(SpecError, match="must be an integer"):
        ping.integer("tr_id")
    with pytest.raises(SpecError, match="no value"):
        ping.value("missing")


def test_spec_objects_are_immutable() -> None:
    """Loaded values cannot be changed by a consumer (the spec is shared by everyone)."""
    clause = load_spec().clause("KA-PING")
    with pytest.raises(TypeError):
        clause.values["interval_s"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        clause.id = "X"  # type: ignore[misc]


def test_unknown_version_and_clause_are_clear_errors() -> None:
    """Unknown versions and clauses raise SpecError listing what exists."""
    with pytest.raises(SpecError, match="available"):
        load_spec("9.9")
    with pytest.raises(SpecError, match="not a spec version"):
        load_spec("latest")
    with pytest.raises(SpecError, match="no clause"):
        load_spec("1.0").clause("KA-SERVER-PINGPONG")


def test_versions_sort_numerically() -> None:
    """1.10 sorts after 1.9; the newest version is the default."""
    assert version_key("1.10") > version_key("1.9")
    assert available_versions()[:3] == ["1.0", "1.1", "1.2"]
    assert load_spec().version == latest_version()


def test_environment_declares_every_design_variable() -> None:
    """The spec declares every variable of DESIGN §4 and marks the credentials secret."""
    spec = load_spec()
    names = {e.name for e in spec.environment}
    assert names == {
        "KIS_APP_KEY", "KIS_APP_SECRET", "KIS_REST_URL", "KIS_WS_URL", "KIWOOM_APP_KEY",
        "KIWOOM_APP_SECRET", "KIWOOM_REST_URL", "KIWOOM_WS_URL", "VITE_API_KEY", "REDIS_URL",
        "STOCKMON_SUBSCRIPTIONS", "STOCKMON_TIME_SCALE", "STOCKMON_SPEC_VERSION", "STOCKMON_ENV",
        "STOCKMON_BROKER", "STOCKMON_API_HOST", "STOCKMON_API_PORT", "STOCKMON_API_CORS_ORIGINS",
        "STOCKMON_CACHE_DIR",
    }  # fmt: skip
    cred = set(load_spec("1.0").clause("CRED-ENV").strings("secret_variables"))
    assert cred <= set(spec.secret_variables)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_released_version_matches_its_lock(version: str) -> None:
    """The installed 1.0 and 1.1 are released and their digests are the locked ones."""
    import json

    from stockmon.spec import spec_dir

    lock = json.loads((spec_dir() / "versions.lock").read_text())["released"]
    spec = load_spec(version)
    assert spec.status == "released"
    assert lock[version] == spec.digest


@pytest.mark.parametrize("version", available_versions())
def test_key_patterns_are_the_markets_patterns_compiled(version: str) -> None:
    """Spec.key_patterns holds markets.<m>.key_pattern of every market, in the spec's order."""
    spec = load_spec(version)
    assert list(spec.key_patterns) == list(spec.markets)
    assert {m: p.pattern for m, p in spec.key_patterns.items()} == {
        m: v["key_pattern"] for m, v in spec.markets.items()
    }


@pytest.mark.parametrize(
    ("key", "market"),
    [("005930", "KR"), ("DNASAAPL", "US"), ("RBAQTSLA", "US"), ("00593", None), ("AAPL", None)],
)
def test_a_keys_market_is_told_by_the_key_patterns(key: str, market: str | None) -> None:
    """market_of names the market whose pattern matches the key, None when no market's does."""
    spec = load_spec()
    assert spec.market_of(key) == market
    found = spec.key_match(key)
    assert (found[0] if found else None) == market
    assert found is None or found[1].group(0) == key


@pytest.mark.parametrize("key", ["005930\n", " 005930", "005930 ", "DNASAAPL\n", "005930\x00"])
def test_only_the_whole_key_matches(key: str) -> None:
    """A key with anything around it has no market: a pattern's `$` alone admits a trailing newline."""
    spec = load_spec()
    assert spec.market_of(key) is None


def test_key_match_of_one_market_checks_that_market_only() -> None:
    """key_match(key, market) matches against that market's pattern alone (unknown market: None)."""
    spec = load_spec()
    assert spec.key_match("005930", "KR") is not None
    assert spec.key_match("005930", "US") is None
    assert spec.key_match("005930", "JP") is None
