"""Settings from the environment only (CRED-ENV): typed values and one-line errors naming the variable."""

from __future__ import annotations

import pytest

from stockmon.errors import SettingsError
from stockmon.settings import Subscription, load_settings
from stockmon.spec import load_spec


def test_defaults_point_at_the_real_brokers() -> None:
    """With nothing set, URLs default to the spec's production endpoints."""
    s = load_settings({})
    spec = load_spec()
    assert s.kis_ws_url == spec.endpoints["kis"]["ws"]["prod"]
    assert s.kis_rest_url == spec.endpoints["kis"]["rest"]["prod"]
    assert s.env == "prod" and s.broker == "kis" and s.time_scale == 1.0
    assert s.kis_app_key is None and s.subscriptions == ()


def test_missing_credential_names_the_variable() -> None:
    """require_kis() on a missing key says which variable and how to fix it."""
    s = load_settings({"KIS_APP_KEY": "k" * 36})
    with pytest.raises(SettingsError, match=r"^KIS_APP_SECRET is not set: export it"):
        s.require_kis()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STOCKMON_TIME_SCALE": "fast"}, "STOCKMON_TIME_SCALE='fast' is not a number"),
        ({"STOCKMON_TIME_SCALE": "0"}, "must be a positive number"),
        ({"STOCKMON_TIME_SCALE": "nan"}, "must be a positive number"),
        ({"STOCKMON_ENV": "staging"}, "STOCKMON_ENV='staging' must be 'prod' or 'mock'"),
        ({"STOCKMON_BROKER": "ls"}, "STOCKMON_BROKER='ls'"),
        ({"STOCKMON_SPEC_VERSION": "2.0"}, "STOCKMON_SPEC_VERSION='2.0' is unknown"),
        (
            {"KIS_WS_URL": "http://x"},
            "KIS_WS_URL='http://x' is not a URL starting with ws:// or wss://",
        ),
        ({"STOCKMON_SUBSCRIPTIONS": "005930"}, "is not TR_ID:KEY"),
        ({"STOCKMON_SUBSCRIPTIONS": "H0XXXXX0:005930"}, "unknown TR 'H0XXXXX0'"),
        ({"STOCKMON_SUBSCRIPTIONS": "H0STCNT0:AAPL"}, "is not a KR key"),
        ({"KIS_APP_KEY": " padded "}, "KIS_APP_KEY has leading or trailing whitespace"),
    ],
)
def test_malformed_variables_are_one_line_errors(env: dict[str, str], message: str) -> None:
    """Every malformed variable is a SettingsError naming it, on one line."""
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_subscriptions_parse_and_dedupe() -> None:
    """TR_ID:KEY pairs parse in order, duplicates dropped, KR and US keys checked by market."""
    s = load_settings(
        {"STOCKMON_SUBSCRIPTIONS": "H0STCNT0:005930, HDFSCNT0:DNASAAPL,H0STCNT0:005930,"}
    )
    assert s.subscriptions == (
        Subscription("H0STCNT0", "005930"),
        Subscription("HDFSCNT0", "DNASAAPL"),
    )
    assert str(s.subscriptions[1]) == "HDFSCNT0:DNASAAPL"


def test_spec_version_selects_the_spec() -> None:
    """STOCKMON_SPEC_VERSION picks the spec the settings expose."""
    assert load_settings({"STOCKMON_SPEC_VERSION": "1.0"}).spec.version == "1.0"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping, settings come from os.environ."""
    monkeypatch.setenv("STOCKMON_ENV", "mock")
    assert load_settings().env == "mock"
