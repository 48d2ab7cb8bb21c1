"""The JSON Schemas of schemas/: labelled examples, the gate's rules, and agreement with the spec.

Generated-instance (hypothesis) and offline ``$ref`` tests live in test_schemas_generated.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import jsonschema
import pytest

from stockmon import schemas
from stockmon.errors import SpecError
from stockmon.spec import Spec, available_versions, load_spec
from stockmon.spec.model import thaw

# The fixed schema names every part cites (briefs/common.md). trace-record and scenario belong to
# the mock server's helper; the rest are judged here.
OWN = (
    "kis-ws-subscribe",
    "kis-ws-unsubscribe",
    "kis-ws-client-pingpong",
    "kis-ws-server-pingpong",
    "kis-ws-control",
    "kis-ws-error",
    "kis-data-frame",
    "kis-rest-error",
    "kis-token-request",
    "kis-token-response",
    "kis-token-throttle-error",
    "kis-oauth-error",
    "kis-approval-request",
    "kis-approval-response",
    "kis-revoke-request",
    "kis-revoke-response",
    "kiwoom-token-request",
    "kiwoom-token-response",
    "kiwoom-login",
    "kiwoom-login-ack",
    "kiwoom-reg",
    "kiwoom-remove",
    "kiwoom-reg-ack",
    "kiwoom-real",
    "kiwoom-ping",
    "kiwoom-system",
    "event",
    # The internal API of spec 1.2 (API-* clauses): its REST bodies and stream messages.
    "api-error",
    "api-ticket",
    "api-quote",
    "api-book",
    "api-status",
    "api-subscription",
    "api-subscriptions",
    "api-health",
    "api-stream-request",
    "api-stream-welcome",
    "api-stream-ack",
    "api-stream-snapshot",
    "api-stream-event",
    "api-stream-error",
)
FIXED_NAMES = frozenset((*OWN, "trace-record", "scenario"))
DOCS = schemas.load_documents()
VERSIONS = available_versions()
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def _labelled() -> list[Any]:
    cases = []
    for name, doc in sorted(DOCS.items()):
        for i, example in enumerate(doc.get("examples", [])):
            cases.append(pytest.param(name, example, id=f"{name}:examples[{i}]"))
    return cases


def _labelled_invalid() -> list[Any]:
    cases = []
    for name, doc in sorted(DOCS.items()):
        for i, item in enumerate(doc.get("x-invalid-examples", [])):
            # A malformed entry is the gate's finding (test_spec_check); here it must not break
            # collection of every other case.
            if isinstance(item, dict) and "instance" in item:
                why = str(item.get("why", "(no why given)"))
                cases.append(pytest.param(name, why, item["instance"], id=f"{name}:invalid[{i}]"))
    return cases


def _specs_with(clause_id: str) -> list[Any]:
    return [
        pytest.param(load_spec(v), id=f"spec-{v}") for v in VERSIONS if load_spec(v).has(clause_id)
    ]


def _param_specs() -> list[Any]:
    return [pytest.param(load_spec(v), id=f"spec-{v}") for v in VERSIONS]


# --------------------------------------------------------------------------- labelled examples


@pytest.mark.parametrize(("name", "instance"), _labelled())
def test_labelled_valid_example_validates(name: str, instance: Any) -> None:
    """Every entry of a schema's ``examples`` validates against it."""
    assert schemas.errors(name, instance) == []


@pytest.mark.parametrize(("name", "why", "instance"), _labelled_invalid())
def test_labelled_invalid_example_fails(name: str, why: str, instance: Any) -> None:
    """Every entry of a schema's ``x-invalid-examples`` is rejected (for the reason it states)."""
    assert not schemas.is_valid(name, instance), f"accepted although {why}"


# --------------------------------------------------------------------------- the gate's rules


def test_schema_files_are_exactly_the_fixed_names() -> None:
    """Every owned schema exists and no file outside the fixed list of names lies in schemas/."""
    assert set(OWN) <= set(schemas.names())
    assert set(schemas.names()) <= FIXED_NAMES


@pytest.mark.parametrize("name", OWN)
def test_schema_document_meets_the_gate(name: str) -> None:
    """2020-12 dialect, canonical $id, title, description, and both kinds of labelled example."""
    doc = DOCS[name]
    assert doc["$schema"] == DRAFT_2020_12
    assert doc["$id"] == schemas.schema_uri(name)
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["title"].strip()
    assert len(doc["examples"]) >= 1
    assert len(doc["x-invalid-examples"]) >= 1
    assert all(item["why"].strip() for item in doc["x-invalid-examples"])


@pytest.mark.parametrize("name", OWN)
def test_schema_description_names_the_clause_it_serves(name: str) -> None:
    """The description cites at least one clause ID of the newest spec."""
    newest = load_spec()
    cited = [cid for cid in newest.clause_ids if cid in DOCS[name]["description"]]
    assert cited, f"{name}: description cites no clause of spec {newest.version}"


@pytest.mark.parametrize("spec", _param_specs())
def test_every_schema_a_clause_cites_exists(spec: Spec) -> None:
    """Each name in a clause's ``schemas`` list (every version) has a schema file."""
    missing = {
        (c.id, name) for c in spec.clauses for name in c.schemas if name not in schemas.names()
    }
    assert missing == set()


@pytest.mark.parametrize("spec", _param_specs())
def test_clause_example_packets_validate(spec: Spec) -> None:
    """A clause's ``packet`` value (e.g. KA-PING's) validates against the first schema it cites."""
    packets = [c for c in spec.clauses if "packet" in c.values]
    assert packets, "expected at least KA-PING to carry an example packet"
    for clause in packets:
        assert schemas.errors(clause.schemas[0], thaw(clause.values["packet"])) == [], clause.id


def test_unknown_schema_name_is_a_spec_error() -> None:
    """Asking for a schema that does not exist names the known ones."""
    with pytest.raises(SpecError, match=r"unknown schema 'no-such'.*kis-ws-subscribe"):
        schemas.validator("no-such")


def test_errors_point_at_the_offending_field() -> None:
    """errors() gives one line per violation with the JSON path of the field."""
    bad = {
        "header": {"approval_key": "k", "custtype": "P", "tr_type": 1, "content-type": "utf-8"},
        "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}},
    }
    problems = schemas.errors("kis-ws-subscribe", bad)
    assert problems and all(p.startswith("header/tr_type: ") for p in problems)


# --------------------------------------------------------------------------- agreement with the spec
# The schemas are spec data too: the values the clauses state must satisfy them, in every version.


def _subscribe_packet(header: dict[str, Any], tr_id: str, tr_key: str) -> dict[str, Any]:
    return {
        "header": {"approval_key": "approval-key", **header},
        "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
    }


@pytest.mark.parametrize("spec", _specs_with("PKT-SUBSCRIBE"))
def test_pkt_subscribe_values_build_a_valid_subscribe(spec: Spec) -> None:
    """PKT-SUBSCRIBE: a packet from the clause's header values validates as subscribe only."""
    clause = spec.clause("PKT-SUBSCRIBE")
    assert clause.strings("body_fields") == ("tr_id", "tr_key")
    for tr_id in spec.layouts:
        packet = _subscribe_packet(dict(clause.mapping("header")), tr_id, "005930")
        assert schemas.errors("kis-ws-subscribe", packet) == []
        assert not schemas.is_valid("kis-ws-unsubscribe", packet)


@pytest.mark.parametrize("spec", _specs_with("PKT-UNSUBSCRIBE"))
def test_pkt_unsubscribe_values_build_a_valid_unsubscribe(spec: Spec) -> None:
    """PKT-UNSUBSCRIBE: a packet from the clause's header values validates as unsubscribe only."""
    packet = _subscribe_packet(
        dict(spec.clause("PKT-UNSUBSCRIBE").mapping("header")), "H0STCNT0", "005930"
    )
    assert schemas.errors("kis-ws-unsubscribe", packet) == []
    assert not schemas.is_valid("kis-ws-subscribe", packet)


@pytest.mark.parametrize("spec", _specs_with("KA-PING"))
def test_ka_ping_tr_id_is_the_schema_constant(spec: Spec) -> None:
    """KA-PING: the clause's tr_id is the one the client-ping schema accepts; others are rejected."""
    tr_id = spec.clause("KA-PING").string("tr_id")
    assert schemas.is_valid("kis-ws-client-pingpong", {"header": {"tr_id": tr_id}})
    assert not schemas.is_valid("kis-ws-client-pingpong", {"header": {"tr_id": tr_id.lower()}})


@pytest.mark.parametrize("spec", _specs_with("KA-SERVER-PINGPONG"))
def test_ka_server_pingpong_and_its_echo_validate(spec: Spec) -> None:
    """KA-SERVER-PINGPONG: a server ping stamped in the clause's format validates, so does its echo."""
    clause = spec.clause("KA-SERVER-PINGPONG")
    stamp = dt.datetime(2026, 8, 26, 9, 30, 15).strftime(clause.string("datetime_format"))
    header = dict.fromkeys(clause.strings("server_packet_fields"), stamp)
    header["tr_id"] = spec.clause("KA-PING").string("tr_id")
    ping = {"header": header}
    assert schemas.errors("kis-ws-server-pingpong", ping) == []
    assert schemas.errors("kis-ws-client-pingpong", ping) == []
    assert not schemas.is_valid("kis-ws-server-pingpong", {"header": {"tr_id": header["tr_id"]}})


@pytest.mark.parametrize("spec", _specs_with("PKT-DATA-FRAME"))
def test_pkt_data_frame_layouts_parse_into_valid_frames(spec: Spec) -> None:
    """PKT-DATA-FRAME: every layout, plain or encrypted, multi-record, parses to a valid frame."""
    clause = spec.clause("PKT-DATA-FRAME")
    for flag in (clause.string("plain_flag"), clause.string("encrypted_flag")):
        for tr_id, layout in spec.layouts.items():
            record = ["0"] * len(layout.fields)
            frame = {"enc": flag, "tr_id": tr_id, "count": 2, "records": [record, record]}
            assert schemas.errors("kis-data-frame", frame) == [], tr_id


@pytest.mark.parametrize("spec", _specs_with("PKT-DATA-FRAME"))
def test_pkt_data_frame_count_fits_the_digits(spec: Spec) -> None:
    """PKT-DATA-FRAME: the record count is bounded by its zero-padded digit count."""
    top = 10 ** spec.clause("PKT-DATA-FRAME").integer("count_digits") - 1
    frame = {"enc": "0", "tr_id": "H0STCNT0", "records": [["005930"]]}
    assert schemas.is_valid("kis-data-frame", {**frame, "count": top})
    assert not schemas.is_valid("kis-data-frame", {**frame, "count": top + 1})


@pytest.mark.parametrize("spec", _param_specs())
def test_every_ws_code_of_the_spec_makes_a_valid_control_frame(spec: Spec) -> None:
    """POL-ALREADY-SUBSCRIBED, WS-SESSION-LIMITS, ERR-WS-BODY: every OPSP code of the spec fits."""
    for code, entry in spec.codes["ws"].items():
        frame = {
            "header": {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N"},
            "body": {"rt_cd": entry["rt_cd"], "msg_cd": code, "msg1": entry["msg1"]},
        }
        assert schemas.errors("kis-ws-control", frame) == [], code
        assert schemas.errors("kis-ws-error", frame) == [], code


@pytest.mark.parametrize("spec", _specs_with("WS-SESSION-LIMITS"))
def test_ws_session_limits_in_use_refusal_validates(spec: Spec) -> None:
    """WS-SESSION-LIMITS: the OPSP8996 refusal with header tr_id "(null)" and tr_key "" fits."""
    clause = spec.clause("WS-SESSION-LIMITS")
    code = clause.string("in_use_code")
    frame = {
        "header": {"tr_id": "(null)", "tr_key": "", "encrypt": "N"},
        "body": {
            "rt_cd": clause.string("in_use_rt_cd"),
            "msg_cd": code,
            "msg1": spec.ws_code(code)["msg1"],
        },
    }
    assert schemas.errors("kis-ws-control", frame) == []


@pytest.mark.parametrize("spec", _specs_with("ERR-REST-BODY"))
def test_err_rest_body_values(spec: Spec) -> None:
    """ERR-REST-BODY: the error rt_cd with every REST code validates; the success rt_cd does not."""
    clause = spec.clause("ERR-REST-BODY")
    for code, entry in spec.codes["rest"].items():
        body = {"rt_cd": clause.string("error_rt_cd"), "msg_cd": code, "msg1": entry["msg1"]}
        assert schemas.errors("kis-rest-error", body) == [], code
    success = {"rt_cd": clause.string("success_rt_cd"), "msg_cd": "MCA00000", "msg1": "ok"}
    assert not schemas.is_valid("kis-rest-error", success)


@pytest.mark.parametrize("spec", _specs_with("TOKEN-KIS-THROTTLE"))
def test_token_kis_throttle_body_validates(spec: Spec) -> None:
    """TOKEN-KIS-THROTTLE: the clause's error_code with its message fits the 403 body schema."""
    code = spec.clause("TOKEN-KIS-THROTTLE").string("error_code")
    body = {"error_code": code, "error_description": spec.rest_code(code)["msg1"]}
    assert schemas.errors("kis-token-throttle-error", body) == []


@pytest.mark.parametrize("spec", _specs_with("TOKEN-KIS-EXPIRY"))
def test_token_kis_expiry_format_matches_the_response_schema(spec: Spec) -> None:
    """TOKEN-KIS-EXPIRY: expiry in the clause's format validates; ISO 8601 or a missing field not."""
    clause = spec.clause("TOKEN-KIS-EXPIRY")
    when = dt.datetime(2026, 12, 31, 23, 59, 59)
    body = {"access_token": "t", "token_type": "Bearer", "expires_in": 86400}
    ok = {**body, "access_token_token_expired": when.strftime(clause.string("expired_format"))}
    assert schemas.errors("kis-token-response", ok) == []
    iso = {**body, "access_token_token_expired": when.isoformat()}
    assert not schemas.is_valid("kis-token-response", iso)
    for field in clause.strings("fields"):
        without = {k: v for k, v in ok.items() if k != field}
        assert not schemas.is_valid("kis-token-response", without), f"{field} must be required"


@pytest.mark.parametrize("spec", _specs_with("WS-APPROVAL-KEY"))
def test_ws_approval_key_field_names(spec: Spec) -> None:
    """WS-APPROVAL-KEY: the clause's secret field and response field are what the schemas require."""
    clause = spec.clause("WS-APPROVAL-KEY")
    request = {"grant_type": clause.string("grant_type"), "appkey": "k"}
    assert (
        schemas.errors("kis-approval-request", {**request, clause.string("secret_field"): "s"})
        == []
    )
    assert not schemas.is_valid("kis-approval-request", {**request, "appsecret": "s"})
    response = {clause.string("response_field"): "a1b2c3d4-0000-4000-8000-00000000abcd"}
    assert schemas.errors("kis-approval-response", response) == []


@pytest.mark.parametrize("spec", _specs_with("CRED-KIWOOM-SECRET"))
def test_cred_kiwoom_secret_request_field(spec: Spec) -> None:
    """CRED-KIWOOM-SECRET: the Kiwoom token request requires the clause's secret field."""
    field = spec.clause("CRED-KIWOOM-SECRET").string("request_field")
    request = {"grant_type": "client_credentials", "appkey": "k"}
    assert schemas.errors("kiwoom-token-request", {**request, field: "s"}) == []
    assert not schemas.is_valid("kiwoom-token-request", request)


@pytest.mark.parametrize("spec", _specs_with("KIWOOM-PROTOCOL"))
def test_kiwoom_token_expiry_format_matches_the_response_schema(spec: Spec) -> None:
    """KIWOOM-PROTOCOL / TOKEN-KIWOOM-SESSION: expires_dt written in the spec's format validates."""
    stamp = dt.datetime(2026, 8, 27, 8, 37, 13).strftime(spec.rest["kiwoom"]["expires_format"])
    body = {
        "expires_dt": stamp,
        "token_type": "Bearer",
        "token": "t",
        "return_code": 0,
        "return_msg": "",
    }
    assert schemas.errors("kiwoom-token-response", body) == []


@pytest.mark.parametrize("spec", _specs_with("KIWOOM-PROTOCOL"))
def test_kiwoom_protocol_frames_from_clause_values(spec: Spec) -> None:
    """KIWOOM-PROTOCOL: LOGIN/REG/REMOVE/PING/SYSTEM frames named by the clause's values validate."""
    clause = spec.clause("KIWOOM-PROTOCOL")
    data = [{"item": ["005930"], "type": list(spec.kiwoom_layouts)}]
    login = {"trnm": clause.string("first_message"), "token": "raw-token"}
    reg = {
        "trnm": clause.string("subscribe"),
        "grp_no": clause.string("grp_no"),
        "refresh": clause.string("refresh_keep"),
        "data": data,
    }
    remove = {"trnm": clause.string("unsubscribe"), "grp_no": clause.string("grp_no"), "data": data}
    assert schemas.errors("kiwoom-login", login) == []
    assert schemas.errors("kiwoom-reg", reg) == []
    assert schemas.errors("kiwoom-remove", remove) == []
    assert schemas.errors("kiwoom-ping", {"trnm": clause.string("ping")}) == []
    for code in clause.mapping("system_codes").values():
        notice = {"trnm": clause.string("system"), "code": code, "message": "m"}
        assert schemas.errors("kiwoom-system", notice) == [], code


@pytest.mark.parametrize("spec", _specs_with("KIWOOM-PROTOCOL"))
def test_kiwoom_real_frame_from_fid_layouts(spec: Spec) -> None:
    """KIWOOM-PROTOCOL: one REAL frame carrying every FID layout (several entries) validates."""
    entries = [
        {
            "type": code,
            "name": layout.kind,
            "item": "005930",
            "values": {f.fid: ("-" if f.signed else "") + "100" for f in layout.fields},
        }
        for code, layout in spec.kiwoom_layouts.items()
    ]
    frame = {"trnm": spec.clause("KIWOOM-PROTOCOL").string("data"), "data": entries}
    assert schemas.errors("kiwoom-real", frame) == []
