"""Secrets never leak: repr, str, formatting, logs, exceptions and pickling all hide a canary value."""

from __future__ import annotations

import logging
import pickle

import pytest

from stockmon.redaction import MASK, RedactingFilter, Secret, install_log_redaction, scrub
from stockmon.settings import load_settings

CANARY = "CANARY-9f3b2c1d-secret-value"


def test_secret_hides_value_everywhere() -> None:
    """repr, str, f-strings and %-formatting show only the mask."""
    s = Secret(CANARY)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % s, format(s, "")):  # noqa: UP031
        assert CANARY not in text
        assert MASK in text
    assert s.reveal() == CANARY


def test_settings_repr_hides_credentials() -> None:
    """The settings object's repr shows no credential."""
    s = load_settings(
        {
            "KIS_APP_KEY": CANARY,
            "KIS_APP_SECRET": CANARY + "2",
            "REDIS_URL": "redis://:" + CANARY + "@h",
        }
    )
    assert CANARY not in repr(s)
    assert CANARY not in str(s)


def test_secret_in_exception_text_is_masked() -> None:
    """An exception built from a Secret shows the mask."""
    s = Secret(CANARY)
    err = RuntimeError(f"login failed for {s}")
    assert CANARY not in str(err)


def test_secret_cannot_be_pickled() -> None:
    """Pickling would write the value to disk or a queue; it is refused."""
    with pytest.raises(TypeError):
        pickle.dumps(Secret(CANARY))


def test_log_filter_scrubs_revealed_values(caplog: pytest.LogCaptureFixture) -> None:
    """A revealed secret that reaches a log record is masked by the filter (second line of defence)."""
    Secret(CANARY)  # registers the value
    logger = logging.getLogger("stockmon.test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="stockmon.test.redaction"):
        logger.info("token request with appsecret=%s", CANARY)
        try:
            raise ValueError(CANARY)
        except ValueError:
            logger.exception("boom")
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert CANARY not in text
    assert MASK in text


def test_install_log_redaction_is_idempotent() -> None:
    """Installing twice adds one filter per handler."""
    logger = logging.getLogger("stockmon.test.idem")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        install_log_redaction(logger)
        install_log_redaction(logger)
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


def test_scrub_masks_registered_values_only() -> None:
    """scrub() masks registered secrets and leaves other text alone."""
    Secret(CANARY)
    assert scrub(f"a {CANARY} b") == f"a {MASK} b"
    assert scrub("nothing here") == "nothing here"
