"""What a target sends can fail it but never leave it unjudged: no check crashes on hostile records
the mock keeps (issue 11, probe 2)."""

from __future__ import annotations

import pytest

import stockmon.conformance.catalog  # noqa: F401  (registers every check)
from stockmon.conformance.errors import CheckFailure, HarnessError
from stockmon.conformance.evidence import client_json
from stockmon.conformance.registry import Outcome, Verdict, all_checks

from .traces import SPEC, Trace

HOSTILE_TEXTS = (
    '{"header":{"tr_type":"1"},"body":{"input":{"tr_id":"H0STCNT0","tr_key":"\\ud800"}}}',
    '{"header":' + "[" * 970 + "]" * 970 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"n":NaN}',
)


def _hostile_trace() -> Trace:
    tr = Trace()
    tr.open(0.0, "c1")
    for i, text in enumerate(HOSTILE_TEXTS):
        tr.add(1.0 + i, "c1", "in", "text", text=text, json=None, frame="other")
    # what an older mock kept: the parsed JSON holding a lone surrogate
    tr.add(9.0, "c1", "in", "text", text="x", json={"header": {"tr_key": "\ud800"}})
    tr.add(10.0, "c1", "in", "request", method="POST", path="/oauth2/Approval", body="appkey=***&x")
    tr.close(20.0, "c1")
    return tr


def test_client_json_refuses_hostile_text_quietly() -> None:
    """client_json answers None (not an exception) for every hostile text record."""
    for text in HOSTILE_TEXTS:
        assert client_json({"text": text}) is None


@pytest.mark.parametrize("name", sorted(n for n, c in all_checks().items() if c.applies_to(SPEC)))
def test_no_check_crashes_on_hostile_records(name: str) -> None:
    """Each check gives a verdict (pass or fail with evidence) on a trace full of hostile frames."""
    ev = _hostile_trace().evidence(30.0)
    try:
        verdict = all_checks()[name].func(ev)
    except CheckFailure:
        return  # the target's failure, with evidence
    except HarnessError as exc:  # this synthetic trace lacks a scenario's marks or injected fault
        assert "Error" not in str(exc), exc  # never a crash dressed as a harness error
        return
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is not Outcome.ERROR, verdict.summary
