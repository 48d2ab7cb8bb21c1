"""Every behaviour value of the KIS mock, resolved once from the spec and the config.

The spec is the single source of truth: this module is the only place the mock reads clause values,
so the rest of the package never holds a normative number or code.

Fallback rule for older versions (documented behaviour, written once in :mod:`stockmon.spec.facts`):
version 1.0 is silent about the errata clauses (WS-SESSION-LIMITS, PKT-UNSUBSCRIBE, PKT-DATA-FRAME,
TOKEN-KIS-THROTTLE, TOKEN-KIS-EXPIRY, WS-APPROVAL-KEY, KA-SERVER-PINGPONG) and about the mock's
WebSocket answer codes. The real KIS server behaves that way whatever version a client was written
against, so where the selected version has no clause (or no ``mock_profile`` key) the value is
taken from the newest version. Where the selected version *does* speak, it wins: 1.0's
``mock_profile`` switches off the token throttle, the server PINGPONG and the unanswered-ping
drop, and makes every REST auth failure IGW00221.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stockmon.errors import SpecError
from stockmon.mockserver.profile import BrokerProfile
from stockmon.spec import broker_clause as _clause
from stockmon.spec import endpoint_port, load_spec, need, newest_spec
from stockmon.spec import mock_profile_value as _value


@dataclass(frozen=True, slots=True)
class WsCode:
    """One WebSocket control code with its wire texts."""

    code: str
    msg1: str
    rt_cd: str


@dataclass(frozen=True)
class Profile(BrokerProfile):
    """Resolved values for one spec version (before per-run config overrides)."""

    # REST
    approval_path: str
    quotes: Mapping[str, Mapping[str, Any]]
    token_type: str
    grant_type: str
    token_reuse_window_s: float
    gateway_error_status: int
    error_rt_cd: str
    success_rt_cd: str
    auth_failure: Mapping[str, str]
    token_throttle: bool
    throttle_interval_s: float
    throttle_status: int
    throttle_code: str
    expiry_format: str
    kst_offset_s: int
    approval_secret_field: str
    approval_response_field: str
    rest_success: Mapping[str, str]
    revoke_success: Mapping[str, Any]
    default_rest_port: int
    # WebSocket
    ping_tr_id: str
    ping_datetime_format: str
    server_pingpong_period_s: float | None
    unanswered_pingpong_grace_s: float | None
    reflect_client_ping: bool
    subscribe_tr_type: str
    unsubscribe_tr_type: str
    custtypes: tuple[str, ...]
    max_registrations: int
    sessions_per_appkey: int
    in_use_header: Mapping[str, str]
    encrypt_plain: str
    iv_length: int
    key_length: int
    codes: Mapping[str, WsCode]
    # Data frames
    part_separator: str
    field_separator: str
    count_digits: int
    plain_flag: str

    def ws_code(self, name: str) -> WsCode:
        """The code the mock answers with for a named situation (``already_subscribed`` ...)."""
        return need(self.codes, name, "mock_profile.ws_codes")

    def rest_msg(self, code: str) -> str:
        """msg1 of a REST gateway code, from the selected version (or the newest)."""
        for s in (self.spec, newest_spec()):
            if code in s.codes["rest"]:
                return str(s.rest_code(code)["msg1"])
        raise SpecError(f"no REST code {code!r} in spec {self.spec.version}")


def load_profile(version: str | None = None) -> Profile:
    """Resolve every mock behaviour value for a spec version (default: the newest)."""
    spec = load_spec(version)
    kis = spec.rest["kis"]
    bearer = spec.clause("TOKEN-KIS-BEARER")
    rest_body = spec.clause("ERR-REST-BODY")
    throttle = _clause(spec, "TOKEN-KIS-THROTTLE")
    expiry = _clause(spec, "TOKEN-KIS-EXPIRY")
    approval = _clause(spec, "WS-APPROVAL-KEY")
    server_ping = _clause(spec, "KA-SERVER-PINGPONG")
    sub = spec.clause("PKT-SUBSCRIBE")
    unsub = _clause(spec, "PKT-UNSUBSCRIBE")
    limits = _clause(spec, "WS-SESSION-LIMITS")
    frame = _clause(spec, "PKT-DATA-FRAME")
    codes_map = _value(spec, "ws_codes")
    all_codes = dict(newest_spec().codes["ws"])
    all_codes.update(spec.codes["ws"])
    codes = {
        name: WsCode(code, str(all_codes[code]["msg1"]), str(all_codes[code]["rt_cd"]))
        for name, code in codes_map.items()
    }
    period = _value(spec, "server_pingpong_period_s")
    grace = _value(spec, "unanswered_pingpong_grace_s")
    cipher = _value(spec, "ack_cipher_lengths")
    return Profile(
        spec=spec,
        token_path=str(kis["token"]["path"]),
        revoke_path=str(kis["revoke"]["path"]),
        approval_path=str(kis["approval"]["path"]),
        quotes=kis["quotes"],
        header_names=kis["headers"],
        credential_lengths=kis["credential_lengths"],
        token_type=bearer.string("token_type"),
        grant_type=bearer.string("grant_type"),
        token_validity_s=bearer.number("validity_s"),
        token_reuse_window_s=float(kis["token_same_within_s"]),
        gateway_error_status=int(kis["gateway_error_status"]),
        error_rt_cd=rest_body.string("error_rt_cd"),
        success_rt_cd=rest_body.string("success_rt_cd"),
        auth_failure=_value(spec, "rest_auth_failure"),
        token_throttle=bool(_value(spec, "token_throttle")),
        throttle_interval_s=throttle.number("min_interval_s"),
        throttle_status=throttle.integer("http_status"),
        throttle_code=throttle.string("error_code"),
        expiry_format=expiry.string("expired_format"),
        kst_offset_s=expiry.integer("utc_offset_s"),
        approval_secret_field=approval.string("secret_field"),
        approval_response_field=approval.string("response_field"),
        rest_success=_value(spec, "rest_success"),
        revoke_success=_value(spec, "revoke_success"),
        default_rest_port=endpoint_port(spec.endpoints["kis"]["rest"]["prod"], "endpoints.kis"),
        default_ws_port=endpoint_port(spec.endpoints["kis"]["ws"]["prod"], "endpoints.kis"),
        ping_tr_id=spec.clause("KA-PING").string("tr_id"),
        ping_datetime_format=server_ping.string("datetime_format"),
        server_pingpong_period_s=None if period is None else float(period),
        unanswered_pingpong_grace_s=None if grace is None else float(grace),
        reflect_client_ping=bool(_value(spec, "reflect_client_ping")),
        subscribe_tr_type=str(sub.mapping("header")["tr_type"]),
        unsubscribe_tr_type=str(unsub.mapping("header")["tr_type"]),
        custtypes=tuple(_value(spec, "custtypes")),
        max_registrations=limits.integer("max_registrations"),
        sessions_per_appkey=limits.integer("sessions_per_appkey"),
        in_use_header=_value(spec, "in_use_header"),
        encrypt_plain=str(_value(spec, "encrypt_flags")["plain"]),
        iv_length=int(cipher["iv"]),
        key_length=int(cipher["key"]),
        codes=codes,
        part_separator=frame.string("part_separator"),
        field_separator=frame.string("field_separator"),
        count_digits=frame.integer("count_digits"),
        plain_flag=frame.string("plain_flag"),
    )
