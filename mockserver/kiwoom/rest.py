"""Kiwoom REST gateway logic without I/O: token issue (au10001), revoke (au10002), one quote (ka10001).

``KiwoomRestApp.handle(request, now)`` returns an :class:`~stockmon.mockserver.httpserver.HttpResponse`;
the HTTP shell records request and response in the trace. The answers keep Kiwoom's envelope
(protocol/kiwoom.md §2.6): every body carries ``return_code`` and ``return_msg``, an error puts its
documented 4-digit code in brackets, a bad token is **HTTP 200** and a throttle HTTP 429. Paths,
field names and codes come from the Kiwoom profile (the spec).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from stockmon.mockserver.httpserver import HttpRequest, HttpResponse, RestAppBase
from stockmon.mockserver.kiwoom.market import KiwoomMarket
from stockmon.mockserver.kiwoom.profile import RestError
from stockmon.mockserver.kiwoom.state import KiwoomWorld

# The documented token_type is lower case (the live server says "Bearer"; clients must not care).
TOKEN_TYPE = "bearer"  # noqa: S105 - a token type, not a secret
_CONT = {"cont-yn": "N", "next-key": ""}


class KiwoomRestApp(RestAppBase):
    """The Kiwoom REST endpoints of the mock."""

    def __init__(self, world: KiwoomWorld, market: KiwoomMarket) -> None:
        super().__init__(world)
        self.world = world
        self.market = market
        p = self.p = world.profile
        self._kst = timezone(timedelta(seconds=p.utc_offset_s))
        self._routes.update(
            {
                ("POST", p.token_path): self._token,
                ("POST", p.revoke_path): self._revoke,
                (str(p.quote["method"]), str(p.quote["path"])): self._quote,
            }
        )

    def _no_route(self, req: HttpRequest, status: int) -> HttpResponse:
        err = self.p.rest_error("bad_request")
        return HttpResponse(
            status,
            {"return_code": err.return_code, "return_msg": f"no {req.method} {req.path} here"},
        )

    def _error(self, err: RestError, headers: dict[str, str] | None = None) -> HttpResponse:
        return HttpResponse(err.status, err.body(), headers=dict(headers or {}))

    def _ok(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> HttpResponse:
        body.update({"return_code": self.p.success_return_code, "return_msg": self.p.success_msg})
        return HttpResponse(200, body, headers=dict(headers or {}))

    def _token(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        p = self.p
        self._violations("kiwoom-token-request", body, req.conn)
        body = body if isinstance(body, dict) else {}
        appkey, secret = body.get("appkey"), body.get(p.secret_field)
        self.world.emit("token_request", appkey=appkey)
        if self.world.faults.throttle_override:
            return self._error(p.rest_error("throttled"))
        if not appkey or not secret:
            return self._error(p.rest_error("missing_credentials"))
        if body.get("grant_type") != p.grant_type:
            return self._error(p.rest_error("bad_grant"))
        if not self.world.auth.credentials_ok(appkey, secret):
            return self._error(p.rest_error("bad_credentials"))
        token = self.world.auth.issue(str(appkey), now)
        expires_wall = self._issued(token, now, reused=False)
        kst = datetime.fromtimestamp(expires_wall, UTC).astimezone(self._kst)
        resp = self._ok(
            {
                p.expires_field: kst.strftime(p.expires_format),
                "token_type": TOKEN_TYPE,
                p.token_field: token.value,
            }
        )
        resp.token = token.value
        return resp

    def _revoke(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        p = self.p
        body = body if isinstance(body, dict) else {}
        appkey, secret = body.get("appkey"), body.get(p.secret_field)
        if not appkey or not secret:
            return self._error(p.rest_error("missing_credentials"))
        if not self.world.auth.credentials_ok(appkey, secret):
            return self._error(p.rest_error("bad_credentials"))
        token = body.get(p.token_field)
        if not isinstance(token, str) or not token:
            return self._error(p.rest_error("revoke_without_token"))
        if not self.world.auth.revoke(token):
            return self._error(p.rest_error("invalid_token"))
        return self._ok({})

    def _quote(self, req: HttpRequest, body: Any, now: float) -> HttpResponse:
        p = self.p
        q = p.quote
        h = p.header_names
        api_id = req.headers.get(str(h["api_id"]), "")
        echo = {str(h["api_id"]): api_id}
        self.world.emit("rest_call", path=req.path, tr_id=api_id)
        fail, code = self.world.faults.take_rest_failure()
        if fail:
            err = p.rest_error_by_code(code) if code else None
            return self._error(err or p.rest_error("invalid_token"), echo)
        scheme, _, value = req.headers.get(str(h["authorization"]), "").partition(" ")
        if scheme.lower() != TOKEN_TYPE or self.world.auth.check(value.strip(), now) is None:
            return self._error(p.rest_error("invalid_token"), echo)
        if api_id != q["api_id"]:
            return self._error(p.rest_error("bad_request"), echo)
        item = body.get(str(q["key_field"])) if isinstance(body, dict) else None
        if not isinstance(item, str) or p.spec.key_match(item, "KR") is None:
            return self._error(p.rest_error("bad_request"), echo)
        return self._ok(dict(self.market.quote(item)), {**echo, **_CONT})
