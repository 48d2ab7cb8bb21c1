"""Every spec value the Kiwoom client needs, read once (KIWOOM-PROTOCOL, TOKEN-KIWOOM-SESSION, ...).

Kiwoom's wire facts (the trnm names, the SYSTEM codes, the token response shape) are facts of the
broker, so a spec version without the clause (1.0 lacks KIWOOM-PROTOCOL and CRED-KIWOOM-SECRET)
borrows them from the newest version that has it (:mod:`stockmon.spec.facts`).
Policy values (the idle timeout, the session-in-use back-off) come from the version in use.

Subscriptions stay written the KIS way (``STOCKMON_SUBSCRIPTIONS=H0STCNT0:005930``): a KIS TR maps
to the Kiwoom realtime type whose FID layout has the same market and kind (H0STCNT0 -> 0B, H0STASP0
-> 0D); a key of a market no Kiwoom layout serves (US) is *unserved* and reported, never dropped
silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stockmon.settings import Subscription
from stockmon.spec import KiwoomLayout, Spec, broker_clause, broker_data, kiwoom_layouts


@dataclass(frozen=True, slots=True)
class KiwoomRules:
    """The Kiwoom WebSocket rules of one spec version."""

    spec_version: str
    login: str
    reg: str
    remove: str
    real: str
    ping: str
    system: str
    grp_no: str
    refresh_keep: str
    system_codes: Mapping[str, str]
    auth_failure_codes: tuple[str, ...]
    token_required_in: tuple[str, ...]
    token_optional_in: tuple[str, ...]
    success_return_code: int
    idle_timeout_s: float
    replaced_backoff_s: float
    layouts: Mapping[str, KiwoomLayout]
    # (market, kind) -> Kiwoom type code
    types: Mapping[tuple[str, str], str]
    kis_layouts: Mapping[str, tuple[str, str]]  # KIS tr_id -> (market, kind)
    spec: Spec = field(repr=False, compare=False)  # its key patterns tell a key's market

    @classmethod
    def from_spec(cls, spec: Spec) -> KiwoomRules:
        """Read the clauses and layouts of ``spec`` (broker facts borrowed when missing)."""
        proto = broker_clause(spec, "KIWOOM-PROTOCOL")
        session = broker_clause(spec, "TOKEN-KIWOOM-SESSION")
        rest = broker_data(spec, "rest", "kiwoom")
        limits = broker_clause(spec, "WS-SESSION-LIMITS")
        layouts = kiwoom_layouts(spec)
        types: dict[tuple[str, str], str] = {}
        for code, lay in layouts.items():
            types.setdefault((lay.market, lay.kind), code)
        return cls(
            spec_version=spec.version,
            login=proto.string("first_message"),
            reg=proto.string("subscribe"),
            remove=proto.string("unsubscribe"),
            real=proto.string("data"),
            ping=proto.string("ping"),
            system=proto.string("system"),
            grp_no=proto.string("grp_no"),
            refresh_keep=proto.string("refresh_keep"),
            system_codes={str(k): str(v) for k, v in proto.mapping("system_codes").items()},
            auth_failure_codes=proto.strings("auth_failure_codes"),
            token_required_in=session.strings("required_in"),
            token_optional_in=session.strings("optional_in"),
            success_return_code=int(rest["success_return_code"]),
            idle_timeout_s=spec.clause("POL-IDLE-RECONNECT").number("idle_timeout_s"),
            # R10001 is Kiwoom's "app key in use": the same rule as WS-SESSION-LIMITS' in-use
            # code, never a second socket, back off before reconnecting.
            replaced_backoff_s=limits.number("in_use_backoff_s"),
            layouts=layouts,
            types=types,
            kis_layouts={t: (lay.market, lay.kind) for t, lay in spec.layouts.items()},
            spec=spec,
        )

    def token_required(self, env: str) -> bool:
        """Whether LOGIN must carry a session token in this environment (TOKEN-KIWOOM-SESSION)."""
        return env in self.token_required_in or env not in self.token_optional_in

    def kiwoom_type(self, sub: Subscription) -> str | None:
        """The Kiwoom realtime type serving a KIS subscription, or None (unserved, e.g. US)."""
        mk = self.kis_layouts.get(sub.tr_id)
        if mk is None:
            return None
        code = self.types.get(mk)
        if code is None or self.spec.key_match(sub.tr_key, mk[0]) is None:
            return None
        return code

    def system_name(self, code: str) -> str | None:
        """The KIWOOM-PROTOCOL name of a SYSTEM code (``heartbeat_missed`` ...), if known."""
        return next((name for name, c in self.system_codes.items() if c == code), None)


__all__ = ["KiwoomRules"]
