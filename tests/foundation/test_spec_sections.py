"""`stockmon spec show SECTION`: the REST endpoints, field layouts (positions, types, roles), the
mock profile and its clock, in text and JSON, read from the spec itself."""

from __future__ import annotations

import json

import pytest

from stockmon.cli import main
from stockmon.spec import load_spec
from stockmon.spec.sections import SECTIONS


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_rest_section_shows_quote_endpoints(
    version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The REST section prints every quote path the spec declares (text and JSON agree)."""
    spec = load_spec(version)
    assert main(["spec", "show", "rest", "--spec", version]) == 0
    text = capsys.readouterr().out
    assert main(["spec", "show", "rest", "--spec", version, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for q in spec.rest["kis"]["quotes"].values():
        assert q["path"] in text
        assert q["path"] in json.dumps(doc["data"])


def test_layout_shows_positions_types_and_the_compared_time_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A TR's layout lists each field at its position with its type, and the role fields."""
    spec = load_spec("1.1")
    tr_id = next(t for t, lay in spec.layouts.items() if lay.market == "US" and lay.kind == "tick")
    lay = spec.layouts[tr_id]
    assert main(["spec", "show", tr_id.lower(), "--spec", "1.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["data"][0]
    assert [f["name"] for f in data["fields"]] == list(lay.names)
    assert data["fields"][3]["type"] == lay.fields[3].type
    time_field = lay.roles["time"]
    assert data["roles"]["time"] == {"field": time_field, "position": lay.index(time_field)}
    assert main(["spec", "show", tr_id, "--spec", "1.1"]) == 0
    assert f"time={time_field} @{lay.index(time_field)}" in capsys.readouterr().out


def test_mock_section_shows_profile_and_clock(capsys: pytest.CaptureFixture[str]) -> None:
    """The mock section prints the profile's values and how its clock runs (spec seconds)."""
    spec = load_spec("1.1")
    assert main(["spec", "show", "mock", "--spec", "1.1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["data"]
    assert (
        doc["profile"]["server_pingpong_period_s"] == spec.mock_profile["server_pingpong_period_s"]
    )
    assert "STOCKMON_TIME_SCALE" in doc["clock"] and "token expiry" in doc["clock"]
    # Where the clock starts, so a target knows access_token_token_expired is not on its own clock.
    assert "starts at the real time the mock starts" in doc["clock"]
    assert "access_token_token_expired" in doc["clock"]


def test_show_help_names_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    """`spec show --help` names every section, so an implementer finds rest/layouts/mock there."""
    with pytest.raises(SystemExit):
        main(["spec", "show", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in SECTIONS:
        assert f"{name}:" in text


def test_clauses_still_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """A clause ID still prints the clause (sections only add names)."""
    assert main(["spec", "show", "KA-PING", "--spec", "1.1"]) == 0
    assert capsys.readouterr().out.startswith("KA-PING")
