"""KIS REST gateway logic without I/O: token, revoke, approval and the quote endpoints.

``RestApp.handle(request, now)`` returns an :class:`HttpResponse`; the shell parses bytes, sleeps
for an injected delay, writes the answer and records request/response in the trace. Codes, statuses, paths and field names come from the Profile (the spec).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from stockmon.mockserver.httpserver import HttpRequest, HttpResponse, RestAppBase
from stockmon.mockserver.kis.state import TokenState, World
from stockmon.spec import mock_profile_value

# Mock-specific answers for requests the real gateway would reject in ways nobody has recorded;
# prefixed MOCK so nobody mistakes them for KIS codes.


class RestApp(RestAppBase):
    """The KIS REST endpoints of the mock."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.world = world
        p = world.profile
        self.p = p
        self._kst = timezone(timedelta(seconds=p.kst_offset_s))
        self._routes.update(
            {
                ("POST", p.token_path): self._token,
                ("POST", p.revoke_path): self._revoke,
                ("POST", p.approval_path): self._approval,
            }
        )
        self._quotes: dict[str, str] = {}
        for market, q in p.quotes.items():
            self._routes[(str(q["method"]), str(q["path"]))] = self._quote
            self._quotes[str(q["path"])] = market
        self._cred_fail: Mapping[str, str] = mock_profile_value(p.spec, "rest_credential_failure")
        self._token_err_status = int(mock_profile_value(p.spec, "token_endpoint_error_status"))
        self._own: Mapping[str, str] = mock_profile_value(p.spec, "mock_codes")

    def _no_route(self, req: HttpRequest, status: int) -> HttpResponse:
        return self._rest_error(
            status, self._own["unknown_path"], f"no {req.method} {req.path} here"
        )

    def _rest_error(self, status: int, code: str, msg1: str | None = None) -> HttpResponse:
        if msg1 is None:
            msg1 = self.p.rest_msg(code)
        return HttpResponse(status, {"rt_cd": self.p.error_rt_cd, "msg_cd": code, "msg1": msg1})

    def _token_error(self, code: str, description: str | None = None) -> HttpResponse:
        """An OAuth endpoint's refusal, in its own error_code/error_description shape."""
        if description is None:
            description = self.p.rest_msg(code)
        return HttpResponse(
            self._token_err_status, {"error_code": code, "error_description": description}
        )

    def _bad_grant(self) -> HttpResponse:
        return self._token_error(self._own["bad_body"], f"grant_type must be {self.p.grant_type}")

    def _creds(self, appkey: Any, secret: Any) -> str | None:
        bad = self.world.auth.credentials_ok(appkey, secret)
        return None if bad is None else str(self._cred_fail[bad])

    def _token(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        self._violations("kis-token-request", body, req.conn)
        body = body if isinstance(body, dict) else {}
        self.world.emit("token_request", appkey=body.get("appkey"))
        if body.get("grant_type") != self.p.grant_type:
            return self._bad_grant()
        bad = self._creds(body.get("appkey"), body.get("appsecret"))
        if bad is not None:
            return self._token_error(bad)
        wall = self.world.wall(now)
        issue = self.world.auth.issue_token(
            str(body["appkey"]), now, wall, self.world.faults.throttle_override
        )
        if issue.throttled or issue.token is None:
            return HttpResponse(
                self.p.throttle_status,
                {
                    "error_code": self.p.throttle_code,
                    "error_description": self.p.rest_msg(self.p.throttle_code),
                },
            )
        token = issue.token
        expires_wall = self._issued(token, now, issue.reused)
        expires_in = max(1, round(token.expires_at - now))
        kst = datetime.fromtimestamp(expires_wall, UTC).astimezone(self._kst)
        return HttpResponse(
            200,
            {
                "access_token": token.value,
                "access_token_token_expired": kst.strftime(self.p.expiry_format),
                "token_type": self.p.token_type,
                "expires_in": expires_in,
            },
            token=token.value,
        )

    def _revoke(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        self._violations("kis-revoke-request", body, req.conn)
        body = body if isinstance(body, dict) else {}
        bad = self._creds(body.get("appkey"), body.get("appsecret"))
        if bad is not None:
            return self._token_error(bad)
        token = body.get("token")
        if not isinstance(token, str) or not self.world.auth.revoke(token):
            return self._rest_error(self.p.gateway_error_status, self.p.auth_failure["invalid"])
        return HttpResponse(200, dict(self.p.revoke_success))

    def _approval(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        self._violations("kis-approval-request", body, req.conn)
        body = body if isinstance(body, dict) else {}
        if body.get("grant_type") != self.p.grant_type:
            return self._bad_grant()
        bad = self._creds(body.get("appkey"), body.get(self.p.approval_secret_field))
        if bad is not None:
            return self._token_error(bad)
        key = self.world.auth.issue_approval(str(body["appkey"]), now)
        self.world.emit("approval_issued", appkey=body["appkey"])
        return HttpResponse(200, {self.p.approval_response_field: key})

    def _quote(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        market = self._quotes[req.path]
        q = self.p.quotes[market]
        h = self.p.header_names
        self.world.emit("rest_call", path=req.path, tr_id=req.headers.get(str(h["tr_id"])))
        fail, code = self.world.faults.take_rest_failure()
        if fail:
            return self._rest_error(
                self.p.gateway_error_status, code or self.p.auth_failure["invalid"]
            )
        auth = req.headers.get(str(h["authorization"]), "")
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() != self.p.token_type.lower() or not value:
            return self._rest_error(self.p.gateway_error_status, self.p.auth_failure["invalid"])
        state, token = self.world.auth.check_token(value, now)
        if state is TokenState.INVALID:
            return self._rest_error(self.p.gateway_error_status, self.p.auth_failure["invalid"])
        if state is TokenState.EXPIRED:
            return self._rest_error(self.p.gateway_error_status, self.p.auth_failure["expired"])
        bad = self._creds(req.headers.get(str(h["appkey"])), req.headers.get(str(h["appsecret"])))
        if bad is not None:
            return self._rest_error(self.p.gateway_error_status, bad)
        assert token is not None
        if token.appkey != req.headers.get(str(h["appkey"])):
            return self._rest_error(self.p.gateway_error_status, self.p.auth_failure["invalid"])
        tr_id = req.headers.get(str(h["tr_id"]))
        if tr_id != q["tr_id"]:
            return self._rest_error(
                self.p.gateway_error_status,
                self._own["bad_tr_id"],
                f"tr_id {tr_id!r} is not served at {req.path} (expected {q['tr_id']})",
            )
        key = self._quote_key(market, q, req.query)
        if key is None:
            return HttpResponse(
                200,
                {
                    "rt_cd": self.p.error_rt_cd,
                    "msg_cd": self._own["bad_params"],
                    "msg1": f"bad or missing query parameters for {req.path}",
                },
            )
        output = self.world.market.quote(market, key, self.world.wall(now))
        return HttpResponse(
            200,
            {
                "output": output,
                "rt_cd": self.p.success_rt_cd,
                "msg_cd": self.p.rest_success["msg_cd"],
                "msg1": self.p.rest_success["msg1"],
            },
            headers={
                "tr_id": str(tr_id),
                "tr_cont": "",
                "gt_uid": f"mock{self.world.rng.getrandbits(64):016x}",
            },
        )

    def _quote_key(self, market: str, q: Mapping[str, Any], query: Mapping[str, str]) -> str | None:
        key_param = str(q["key_param"])
        raw = query.get(key_param, "")
        if market == "KR":
            if query.get(str(q["market_param"])) != q["market_value"]:
                return None
            return raw if self.p.spec.key_match(raw, "KR") else None
        exchanges: Mapping[str, str] = self.p.spec.markets["US"]["exchanges"]
        excd = query.get(str(q["exchange_param"]), "")
        short = next((k for k, v in exchanges.items() if excd in (k, v)), None)
        if short is None or not raw:
            return None
        # The realtime key of the free US feed: D + exchange + symbol (protocol/kis.md §2.6).
        key = f"D{short}{raw}"
        return key if self.p.spec.key_match(key, "US") else None
