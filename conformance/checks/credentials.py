"""Credentials (CRED-ENV, CRED-KIWOOM-SECRET): secrets come from the environment only, are never
printed, and a missing one stops the target before it talks to the broker."""

from __future__ import annotations

from stockmon.conformance.evidence import Evidence, Record
from stockmon.conformance.protocol import is_kiwoom
from stockmon.conformance.registry import Verdict, check, failed, passed

# Non-normative: values shorter than this are too common to be a meaningful leak canary.
_MIN_CANARY = 8


@check("CRED-ENV")
def secrets_never_printed(ev: Evidence) -> Verdict:
    """No secret the target was given (app key, app secret, other brokers' keys, the Redis
    password) appears in anything it printed, on stdout or stderr."""
    for tr in ev.targets:
        streams = {"stdout": "\n".join(line.text for line in tr.stdout), "stderr": tr.stderr}
        for name, value in ev.secrets.items():
            if len(value) < _MIN_CANARY:
                continue
            for stream, text in streams.items():
                at = text.find(value)
                if at >= 0:
                    line_no = text.count("\n", 0, at) + 1
                    return failed(
                        f"target {tr.index} printed {name} on {stream} (line {line_no})",
                        expected="secrets never in output, logs or error messages (mask them, e.g. ***)",
                    )
    names = ", ".join(sorted(ev.secrets))
    return passed(f"none of {len(ev.secrets)} secrets ({names}) appeared in the output")


def _exits_without_contact(ev: Evidence, contact: list[Record], missing: str, peer: str) -> Verdict:
    """The target given an incomplete environment exits non-zero before it contacts ``peer``."""
    for tr in ev.targets:
        if not tr.exited_by_itself:
            return failed(
                f"the target kept running although {missing} was missing",
                expected="exit with an error naming the missing variable",
                evidence=contact[:3],
            )
        if tr.returncode == 0:
            return failed(
                f"the target exited with status 0 although {missing} was missing",
                expected="a non-zero exit status and an error message",
                evidence=contact[:3],
            )
    if contact:
        return failed(
            f"the target contacted {peer} although {missing} was missing",
            expected="no request and no connection without complete credentials",
            evidence=contact[:3],
        )
    codes = ", ".join(str(tr.returncode) for tr in ev.targets)
    return passed(f"exited with status {codes} without contacting {peer}")


def _contact(ev: Evidence) -> list[Record]:
    return [r for r in ev.records if r.get("dir") == "in" or r.get("kind") == "ws_open"]


@check("CRED-ENV")
def missing_credential_exits_before_connecting(ev: Evidence) -> Verdict:
    """With a KIS credential missing from the environment, the target exits with an error and
    never contacts the broker."""
    return _exits_without_contact(ev, _contact(ev), "a KIS credential", "the broker")


@check("CRED-KIWOOM-SECRET")
def missing_kiwoom_secret_refused(ev: Evidence) -> Verdict:
    """With KIWOOM_APP_SECRET missing where a token is needed, the target exits with an error and
    never contacts Kiwoom."""
    contact = [r for r in _contact(ev) if is_kiwoom(r)]
    return _exits_without_contact(ev, contact, "KIWOOM_APP_SECRET", "Kiwoom")
