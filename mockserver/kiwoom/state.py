"""The Kiwoom mock's world, without I/O: credentials, tokens, app-key sessions, settings.

The REST app and the WebSocket session cores read and change it synchronously on the mock's loop.
Times are spec seconds since mock start; ``wall(now)`` is the spec wall time used for ``expires_dt``
and the HHMMSS fields. When the Kiwoom mock runs beside a KIS mock it shares that mock's trace,
market simulator and wall clock, so one JSONL trace orders both brokers' records and a KR symbol
trades at the same simulated prices on both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stockmon.mockserver.config import KiwoomMockConfig, chosen
from stockmon.mockserver.kiwoom.profile import KiwoomProfile
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.trace import Trace
from stockmon.mockserver.world import ALNUM, Token, TokenBook, WorldBase, short_hash

BROKER = "kiwoom"


@dataclass(frozen=True, slots=True)
class KiwoomSettings:
    """Per-run behaviour after config overrides (0 or None = off)."""

    env: str
    token_required: bool
    ping_period_s: float | None
    max_missed_pings: int
    login_timeout_s: float | None
    tick_rate_hz: float
    repeat_entry_probability: float


class KiwoomAuth(TokenBook):
    """Which app keys exist and which tokens are live."""

    def __init__(self, profile: KiwoomProfile, seed: int, validity_s: float) -> None:
        super().__init__(f"kiwoom-auth:{seed}", validity_s)
        self.profile = profile

    def _new_app_key(self) -> str:
        return self._chars(ALNUM, self.profile.credential_lengths["appkey"])

    def _new_app_secret(self) -> str:
        return self._chars(ALNUM, self.profile.credential_lengths["secretkey"])

    def credentials_ok(self, appkey: object, secret: object) -> bool:
        """Whether the pair is known."""
        return isinstance(appkey, str) and self.credentials.get(appkey) == secret

    def issue(self, appkey: str, now: float) -> Token:
        """A new token (the reuse behaviour of the real server is unknown: always a new one)."""
        value = self._chars(ALNUM, self.profile.credential_lengths["token"])
        return self._add(Token(value, short_hash(value), appkey, now, now + self.validity_s))

    def check(self, value: object, now: float) -> Token | None:
        """The live token with this value, or None (unknown, revoked or expired)."""
        token = self.tokens.get(value) if isinstance(value, str) else None
        if token is None or token.revoked or now >= token.expires_at:
            return None
        return token


class KiwoomWorld(WorldBase):
    """Everything the Kiwoom REST app and WebSocket cores share."""

    def __init__(
        self,
        config: KiwoomMockConfig,
        profile: KiwoomProfile,
        trace: Trace,
        sim: MarketSimulator,
        wall0: float,
    ) -> None:
        super().__init__(config, trace, sim, wall0, broker=BROKER)
        self.config: KiwoomMockConfig = config
        self.profile = profile
        validity = chosen(config.token_validity_s, profile.token_validity_s)
        self.auth: KiwoomAuth = KiwoomAuth(profile, config.seed, validity)
        self.app_key, self.app_secret = self.auth.new_credentials(config.app_key, config.app_secret)
        env = config.env or ("prod" if profile.login_required else "mock")
        period = chosen(config.ping_period_s, profile.ping_period_s)
        login_to = chosen(config.login_timeout_s, profile.login_timeout_s)
        self.settings = KiwoomSettings(
            env=env,
            token_required=profile.token_required(env),
            ping_period_s=period or None,
            max_missed_pings=config.max_missed_pings or profile.max_missed_pings,
            login_timeout_s=login_to or None,
            tick_rate_hz=config.tick_rate_hz,
            repeat_entry_probability=config.repeat_entry_probability,
        )
        self._sessions: dict[str, str] = {}  # appkey -> conn of its logged-in session
        self.evict: Callable[[str, float], None] = lambda conn, now: None

    def login(self, appkey: str, conn: str, now: float) -> None:
        """Bind an app key to a logged-in session; an older session of that key is evicted."""
        old = self._sessions.get(appkey)
        self._sessions[appkey] = conn
        if old is not None and old != conn:
            self.evict(old, now)

    def logout(self, appkey: str, conn: str) -> None:
        """Free an app key when its session ends."""
        if self._sessions.get(appkey) == conn:
            del self._sessions[appkey]
