"""Every behaviour value of the Kiwoom mock, resolved once from the spec (the single source of truth).

Fallback rule (:mod:`stockmon.spec.facts`, as for KIS): Kiwoom's wire facts are facts of the
broker, not of a spec version, so where the selected version has no clause (1.0 lacks
KIWOOM-PROTOCOL and CRED-KIWOOM-SECRET) or no ``rest.kiwoom`` / ``mock_profile.kiwoom`` key, the
newest version supplies it. Where the selected version speaks, it wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stockmon.mockserver.profile import BrokerProfile
from stockmon.spec import (
    KiwoomLayout,
    broker_clause,
    broker_data,
    endpoint_port,
    kiwoom_layouts,
    load_spec,
    need,
)

# The SYSTEM frame keys (protocol/kiwoom.md §2.5): not return_code/return_msg but code/message.
SYSTEM_CODE_KEY = "code"
SYSTEM_MESSAGE_KEY = "message"


@dataclass(frozen=True, slots=True)
class RestError:
    """One REST error answer of the Kiwoom gateway: HTTP status, envelope and documented code."""

    status: int
    return_code: int
    code: str
    message: str

    def body(self) -> dict[str, Any]:
        """The envelope (``return_code`` + ``return_msg`` with ``[NNNN:...]`` inside)."""
        return {"return_code": self.return_code, "return_msg": self.message}


@dataclass(frozen=True)
class KiwoomProfile(BrokerProfile):
    """Resolved Kiwoom values for one spec version."""

    # REST
    quote: Mapping[str, Any]
    grant_type: str
    secret_field: str
    token_field: str
    expires_field: str
    expires_format: str
    utc_offset_s: int
    success_return_code: int
    success_msg: str
    rest_errors: Mapping[str, RestError]
    # WebSocket
    ws_path: str
    trnm_login: str
    trnm_reg: str
    trnm_remove: str
    trnm_real: str
    trnm_ping: str
    trnm_system: str
    system_codes: Mapping[str, str]
    system_messages: Mapping[str, str]
    auth_failure_codes: tuple[str, ...]
    login_failure_code: int
    login_failure_msg: str
    login_ack_extra: Mapping[str, Any]
    reg_failure_code: int
    reg_failure_msg: str
    token_required_in: tuple[str, ...]
    token_optional_in: tuple[str, ...]
    login_required: bool
    ping_period_s: float
    max_missed_pings: int
    login_timeout_s: float
    layouts: Mapping[str, KiwoomLayout]
    type_names: Mapping[str, str]

    def rest_error(self, name: str) -> RestError:
        """A named REST error answer (``invalid_token``, ``throttled`` ...)."""
        return need(self.rest_errors, name, "mock_profile.kiwoom.rest_errors")

    def rest_error_by_code(self, code: str) -> RestError | None:
        """The REST error answer carrying a documented 4-digit code, if the profile has one."""
        return next((e for e in self.rest_errors.values() if e.code == code), None)

    def system_code(self, name: str) -> str:
        """A SYSTEM code by its KIWOOM-PROTOCOL name (``heartbeat_missed`` ...)."""
        return need(self.system_codes, name, "KIWOOM-PROTOCOL system_codes")

    def token_required(self, env: str) -> bool:
        """Whether LOGIN must carry a valid token in this environment (TOKEN-KIWOOM-SESSION)."""
        return env in self.token_required_in or env not in self.token_optional_in


def load_kiwoom_profile(version: str | None = None) -> KiwoomProfile:
    """Resolve every Kiwoom mock behaviour value for a spec version (default: the newest)."""
    spec = load_spec(version)
    rest = broker_data(spec, "rest", "kiwoom")
    mp = broker_data(spec, "mock_profile", "kiwoom")
    proto = broker_clause(spec, "KIWOOM-PROTOCOL")
    secret = broker_clause(spec, "CRED-KIWOOM-SECRET")
    session = broker_clause(spec, "TOKEN-KIWOOM-SESSION")
    where_r, where_m = "rest.kiwoom", "mock_profile.kiwoom"
    errors = {
        name: RestError(int(e["status"]), int(e["return_code"]), str(e["code"]), str(e["message"]))
        for name, e in need(mp, "rest_errors", where_m).items()
    }
    layouts = kiwoom_layouts(spec)
    names = need(mp, "type_names", where_m)
    login_failure = need(mp, "login_failure", where_m)
    reg_failure = need(mp, "reg_failure", where_m)
    return KiwoomProfile(
        spec=spec,
        token_path=str(need(rest, "token", where_r)["path"]),
        revoke_path=str(need(rest, "revoke", where_r)["path"]),
        quote=need(rest, "quote", where_r),
        header_names=need(rest, "headers", where_r),
        grant_type=str(need(rest, "grant_type", where_r)),
        secret_field=secret.string("request_field"),
        token_field=str(need(rest, "token_field", where_r)),
        expires_field=str(need(rest, "expires_field", where_r)),
        expires_format=str(need(rest, "expires_format", where_r)),
        utc_offset_s=int(need(rest, "utc_offset_s", where_r)),
        success_return_code=int(need(rest, "success_return_code", where_r)),
        success_msg=str(need(mp, "success_msg", where_m)),
        token_validity_s=float(need(mp, "token_validity_s", where_m)),
        credential_lengths={k: int(v) for k, v in need(mp, "credential_lengths", where_m).items()},
        rest_errors=errors,
        default_ws_port=endpoint_port(spec.endpoints["kiwoom"]["ws"]["prod"], "endpoints.kiwoom"),
        ws_path=proto.string("path"),
        trnm_login=proto.string("first_message"),
        trnm_reg=proto.string("subscribe"),
        trnm_remove=proto.string("unsubscribe"),
        trnm_real=proto.string("data"),
        trnm_ping=proto.string("ping"),
        trnm_system=proto.string("system"),
        system_codes={str(k): str(v) for k, v in proto.mapping("system_codes").items()},
        system_messages={str(k): str(v) for k, v in need(mp, "system_messages", where_m).items()},
        auth_failure_codes=proto.strings("auth_failure_codes"),
        login_failure_code=int(login_failure["return_code"]),
        login_failure_msg=str(login_failure["message"]),
        login_ack_extra=dict(mp.get("login_ack") or {}),
        reg_failure_code=int(reg_failure["return_code"]),
        reg_failure_msg=str(reg_failure["message"]),
        token_required_in=session.strings("required_in"),
        token_optional_in=session.strings("optional_in"),
        login_required=bool(need(mp, "login_required", where_m)),
        ping_period_s=float(need(mp, "ping_period_s", where_m)),
        max_missed_pings=int(need(mp, "max_missed_pings", where_m)),
        login_timeout_s=float(need(mp, "login_timeout_s", where_m)),
        layouts=layouts,
        type_names={str(k): str(v) for k, v in names.items()},
    )
