"""Data frame parser: every layout of the spec, multi-record frames, typed values, typed errors only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_support import data_frame, sample_fields

from stockmon.reference.errors import FrameError
from stockmon.reference.kis import frames as frames_module
from stockmon.reference.kis.frames import (
    Frame,
    FrameParser,
    KrOrderbook,
    KrTick,
    OrderbookRecord,
    TickRecord,
    UsOrderbook,
    UsTick,
)
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
PARSER = FrameParser(SPEC)
KEYS = {"H0STCNT0": "005930", "H0STASP0": "000660", "HDFSCNT0": "DNASAAPL", "HDFSASP0": "DNASTSLA"}


def typed(text: str, kind: str) -> int | Decimal | str:
    return int(text) if kind == "int" else Decimal(text) if kind == "decimal" else text


# ---------------------------------------------------------------- PKT-DATA / PKT-DATA-FRAME: layouts


@pytest.mark.parametrize("tr_id", sorted(SPEC.layouts))
def test_every_layout_parses_to_its_typed_record(tr_id: str) -> None:
    """Each layout of the spec gets a record class; every field reads back with its layout type."""
    layout = SPEC.layout(tr_id)
    fields = sample_fields(layout, KEYS[tr_id])
    frame = PARSER.parse(data_frame(SPEC, tr_id, [fields]))
    (rec,) = frame.records
    assert rec.tr_id == tr_id and rec.key == KEYS[tr_id]
    assert rec.time == fields[layout.index(layout.role("time"))]
    values = rec.to_dict()
    assert list(values) == list(layout.names)
    for f, text in zip(layout.fields, fields, strict=True):
        assert values[f.name] == typed(text, f.type)
        assert type(values[f.name]) is type(typed(text, f.type))
        assert rec.get(f.name) == values[f.name] and rec.raw(f.name) == text


def test_record_classes_match_market_and_kind() -> None:
    """H0STCNT0/HDFSCNT0 are ticks, H0STASP0/HDFSASP0 order books; KR prices int, US prices Decimal."""
    types = PARSER.record_types
    assert issubclass(types["H0STCNT0"], KrTick) and issubclass(types["HDFSCNT0"], UsTick)
    assert issubclass(types["H0STASP0"], KrOrderbook) and issubclass(types["HDFSASP0"], UsOrderbook)


@pytest.mark.parametrize("tr_id", ["H0STCNT0", "HDFSCNT0"])
def test_tick_roles(tr_id: str) -> None:
    """price and volume come from the layout's roles, as numbers."""
    layout = SPEC.layout(tr_id)
    fields = sample_fields(layout, KEYS[tr_id])
    (rec,) = PARSER.parse(data_frame(SPEC, tr_id, [fields])).records
    assert isinstance(rec, TickRecord)
    assert rec.price == typed(
        fields[layout.index(layout.role("price"))],
        layout.fields[layout.index(layout.role("price"))].type,
    )
    assert rec.volume == int(fields[layout.index(layout.role("volume"))])


def test_us_price_keeps_the_brokers_digits() -> None:
    """A US price is an exact Decimal (no binary float rounding); str() gives the digits sent."""
    layout = SPEC.layout("HDFSCNT0")
    fields = sample_fields(layout, "DNASAAPL")
    fields[layout.index("LAST")] = "187.2300"
    (rec,) = PARSER.parse(data_frame(SPEC, "HDFSCNT0", [fields])).records
    assert isinstance(rec, UsTick)
    assert rec.price == Decimal("187.23") and str(rec.price) == "187.2300"


@pytest.mark.parametrize("tr_id", ["H0STASP0", "HDFSASP0"])
def test_orderbook_levels_best_first(tr_id: str) -> None:
    """asks/bids pair each price role with its quantity role, L1 first, every level."""
    layout = SPEC.layout(tr_id)
    fields = sample_fields(layout, KEYS[tr_id])
    (rec,) = PARSER.parse(data_frame(SPEC, tr_id, [fields])).records
    assert isinstance(rec, OrderbookRecord)
    for side in ("ask", "bid"):
        prices = layout.role_list(f"{side}_prices")
        qtys = layout.role_list(f"{side}_quantities")
        expected = [
            (
                typed(fields[layout.index(p)], layout.fields[layout.index(p)].type),
                int(fields[layout.index(q)]),
            )
            for p, q in zip(prices, qtys, strict=True)
        ]
        assert getattr(rec, f"{side}s") == expected


@pytest.mark.parametrize("count", [1, 2, 4, 19])
def test_multi_record_frames(count: int) -> None:
    """NNN records in one frame, each a view at its own offset, in wire order."""
    layout = SPEC.layout("H0STCNT0")
    recs = [sample_fields(layout, f"{i:06d}", i) for i in range(count)]
    frame = PARSER.parse(data_frame(SPEC, "H0STCNT0", recs))
    assert frame.count == count
    assert [r.key for r in frame.records] == [f"{i:06d}" for i in range(count)]
    assert [r.to_dict() for r in frame.records] == [
        {f.name: typed(t, f.type) for f, t in zip(layout.fields, r, strict=True)} for r in recs
    ]


def test_version_1_0_parses_with_the_borrowed_grammar() -> None:
    """Spec 1.0 names only the pipe; the parser borrows the rest of the grammar and still works."""
    spec10 = load_spec("1.0")
    assert not spec10.has("PKT-DATA-FRAME")
    parser = FrameParser(spec10)
    fields = sample_fields(spec10.layout("H0STCNT0"), "005930")
    assert parser.parse(data_frame(SPEC, "H0STCNT0", [fields])).records[0].key == "005930"


# ---------------------------------------------------------------- malformed frames: FrameError


def _good(n: int = 1) -> str:
    layout = SPEC.layout("H0STCNT0")
    return data_frame(SPEC, "H0STCNT0", [sample_fields(layout, "005930", i) for i in range(n)])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0|H0STCNT0|001", "parts"),
        ("", "parts"),
        ("2|H0STCNT0|001|" + _good().split("|", 3)[3], "flag"),
        ("1|H0STCNT0|001|QUJD", "encrypted"),
        ("0|H0STCNI0|001|x", "layout"),
        ("0|H0STCNT0|01|" + _good().split("|", 3)[3], "digits"),
        ("0|H0STCNT0|0a1|" + _good().split("|", 3)[3], "digits"),
        ("0|H0STCNT0|000|", "count"),
        ("0|H0STCNT0|002|" + _good().split("|", 3)[3], "carries"),
        (_good() + "^extra", "carries"),
        (_good(3) + "^extra", "carries"),
        (_good(3).rsplit("^", 1)[0], "carries"),
    ],
)
def test_structural_errors_raise_frame_error(text: str, why: str) -> None:
    """A frame whose structure is wrong raises FrameError at parse time, with a useful message."""
    with pytest.raises(FrameError, match=why):
        PARSER.parse(text)


@pytest.mark.parametrize(
    "bad", ["abc", "", "1.5", "NaN", "１２３", "٣٤٥", "1_000", " 2425 ", "+5", "--1", "-"]
)
def test_bad_int_value_raises_on_access_naming_the_field(bad: str) -> None:
    """A value that does not convert raises FrameError naming the field when it is read."""
    layout = SPEC.layout("H0STCNT0")
    fields = sample_fields(layout, "005930")
    fields[layout.index("STCK_PRPR")] = bad
    frame = PARSER.parse(data_frame(SPEC, "H0STCNT0", [fields]))
    with pytest.raises(FrameError, match="STCK_PRPR"):
        _ = frame.records[0].price  # type: ignore[attr-defined]
    with pytest.raises(FrameError, match="STCK_PRPR"):
        frame.validate()


@pytest.mark.parametrize(
    "bad",
    ["NaN", "Infinity", "-inf", "1e99", "x1", "１２３.5", "٣٤٥", "1_000.5", " 187.23 ", "1e2"],
)
def test_non_finite_or_absurd_decimal_is_malformed(bad: str) -> None:
    """NaN, infinities and absurd exponents are not prices."""
    layout = SPEC.layout("HDFSCNT0")
    fields = sample_fields(layout, "DNASAAPL")
    fields[layout.index("LAST")] = bad
    (rec,) = PARSER.parse(data_frame(SPEC, "HDFSCNT0", [fields])).records
    with pytest.raises(FrameError, match="LAST"):
        _ = rec.price  # type: ignore[attr-defined]


def test_ascii_digits_only_in_every_typed_path() -> None:
    """Non-ASCII digits are refused by record properties, Frame.ticks() and to_dict (issue 11, probe 7)."""
    layout = SPEC.layout("H0STCNT0")
    fields = sample_fields(layout, "005930")
    fields[layout.index(layout.role("volume"))] = "１２３"
    frame = PARSER.parse(data_frame(SPEC, "H0STCNT0", [fields]))
    with pytest.raises(FrameError):
        frame.ticks()
    with pytest.raises(FrameError):
        frame.records[0].to_dict()
    fields[layout.index(layout.role("volume"))] = "-17"
    assert PARSER.parse(data_frame(SPEC, "H0STCNT0", [fields])).ticks()[0][3] == -17


def test_remembered_int_reads_stay_exact_strict_and_bounded() -> None:
    """Int reads remembered across records give int(text), never let a bad text in, and stay bounded."""
    layout = SPEC.layout("H0STCNT0")
    i_vol = layout.index(layout.role("volume"))
    rows = [sample_fields(layout, "005930", i) for i in range(3)]
    for fields, vol in zip(rows, ["17", "17", "１７"], strict=True):
        fields[i_vol] = vol
    recs = PARSER.parse(data_frame(SPEC, "H0STCNT0", rows)).records
    assert [recs[0].volume, recs[1].volume] == [17, 17]  # type: ignore[attr-defined]
    for _ in range(2):  # a refused text is refused every time: it was never remembered
        with pytest.raises(FrameError, match="CNTG_VOL"):
            _ = recs[2].volume  # type: ignore[attr-defined]
    limit = frames_module._MAX_KNOWN_INTS
    for n in range(limit + 10):
        rows[0][i_vol] = str(n + 1)
        (rec,) = PARSER.parse(data_frame(SPEC, "H0STCNT0", rows[:1])).records
        assert rec.volume == n + 1  # type: ignore[attr-defined]
    assert 0 < len(frames_module._KNOWN_INTS) <= limit


def test_unknown_field_name_is_a_key_error() -> None:
    """Asking for a field the layout lacks is the caller's bug (KeyError), not a frame error."""
    (rec,) = PARSER.parse(_good()).records
    with pytest.raises(KeyError):
        rec.get("NOPE")


def _outcome(text: str) -> str:
    """'parsed' or 'frame_error'; any other exception propagates and fails the test."""
    try:
        _materialise(PARSER.parse(text))
    except FrameError as exc:
        assert str(exc), "a FrameError always says what is wrong"
        return "frame_error"
    return "parsed"


def _materialise(frame: Frame) -> None:
    for rec in frame.records:
        rec.to_dict()
        _ = rec.key, rec.time
        if isinstance(rec, TickRecord):
            _ = rec.price, rec.volume
        elif isinstance(rec, OrderbookRecord):
            _ = rec.asks, rec.bids


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_text_only_frame_error(text: str) -> None:
    """Any text either parses and materialises, or raises FrameError; nothing else escapes."""
    assert _outcome(text) in ("parsed", "frame_error")


@settings(max_examples=400, deadline=None)
@given(
    tr_id=st.sampled_from(sorted(KEYS)),
    count=st.integers(1, 3),
    data=st.data(),
)
def test_fuzz_mutated_valid_frames_only_frame_error(
    tr_id: str, count: int, data: st.DataObject
) -> None:
    """Valid frames with random fields replaced, inserted or cut: only FrameError escapes."""
    layout = SPEC.layout(tr_id)
    recs = [sample_fields(layout, KEYS[tr_id], i) for i in range(count)]
    flat = [f for r in recs for f in r]
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(flat) - 1))
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        junk = data.draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
        if op == "replace":
            flat[i] = junk
        elif op == "insert":
            flat.insert(i, junk)
        elif len(flat) > 1:
            del flat[i]
    head = data.draw(st.sampled_from(["0", "1", "x", "0|", ""]))
    text = f"{head}|{tr_id}|{count:03d}|" + "^".join(flat)
    assert _outcome(text) in ("parsed", "frame_error")


# ---------------------------------------------------------------- trade frames: the role match


def _split_reading(frame: Frame) -> list[tuple[str, ...]]:
    """Every record's role texts as the fields of the split payload give them (the reference)."""
    cls = frame.record_type
    fields = frame.payload.split(cls.field_separator)
    width = cls._width
    return [
        tuple(fields[o + i] for i in cls._g_fields) for o in range(0, frame.count * width, width)
    ]


@settings(max_examples=300, deadline=None)
@given(
    tr_id=st.sampled_from(["H0STCNT0", "HDFSCNT0"]),
    count=st.sampled_from([1, 2, 3, 4, 64, 65]),
    junk=st.lists(st.text(alphabet="^\n|a1-.\u00e9", max_size=6), min_size=1, max_size=6),
    at=st.data(),
)
def test_role_match_reads_what_the_split_fields_say(
    tr_id: str, count: int, junk: list[str], at: st.DataObject
) -> None:
    """A trade frame is accepted exactly when its split has count x width fields, and every
    record's key, time, price and volume texts are those fields, whatever the texts hold."""
    layout = SPEC.layout(tr_id)
    flat = [f for i in range(count) for f in sample_fields(layout, KEYS[tr_id], i)]
    for text in junk:
        flat[at.draw(st.integers(0, len(flat) - 1))] = text
    payload = "^".join(flat)
    text = f"0|{tr_id}|{count:03d}|{payload}"
    right_count = payload.count("^") + 1 == count * len(layout.fields)
    if not right_count:
        with pytest.raises(FrameError, match="carries"):
            PARSER.parse(text)
        return
    frame = PARSER.parse(text)
    want = _split_reading(frame)
    assert [tuple(frame.texts[n * 4 : n * 4 + 4]) for n in range(count)] == want
    ik, it = (layout.index(layout.role(r)) for r in ("key", "time"))
    assert [(r.key, r.time) for r in frame.records] == [
        (flat[n * len(layout.fields) + ik], flat[n * len(layout.fields) + it]) for n in range(count)
    ]


def test_bad_value_in_a_later_record_names_its_field_and_text() -> None:
    """A bad volume in record 3 of 4 is reported with its own field name, position and text,
    by the record property, by Frame.ticks() and by to_dict() (role and field offsets agree)."""
    layout = SPEC.layout("H0STCNT0")
    recs = [sample_fields(layout, f"00593{i}", i) for i in range(4)]
    iv = layout.index(layout.role("volume"))
    recs[2][iv] = "12x4"
    frame = PARSER.parse(data_frame(SPEC, "H0STCNT0", recs))
    name = layout.fields[iv].name
    want = f"field {name} \\(#{iv}\\) is not a valid int: '12x4'"
    rec = frame.records[2]
    assert (rec.key, rec.raw(name)) == ("005932", "12x4")
    assert frame.records[3].raw(layout.fields[5].name) == recs[3][5]
    with pytest.raises(FrameError, match=want):
        _ = rec.volume  # type: ignore[attr-defined]
    with pytest.raises(FrameError, match=want):
        frame.ticks()
    with pytest.raises(FrameError, match=want):
        rec.to_dict()
    assert frame.records[1].volume == int(recs[1][iv])  # type: ignore[attr-defined]


def test_frames_beyond_the_head_table_read_the_same() -> None:
    """A frame of more records than the head table holds takes the part-by-part path and reads
    the same roles as a matched one."""
    layout = SPEC.layout("H0STCNT0")
    count = frames_module._FAST_COUNTS + 3
    recs = [sample_fields(layout, f"{i:06d}", i) for i in range(count)]
    frame = PARSER.parse(data_frame(SPEC, "H0STCNT0", recs))
    matched = PARSER.parse(data_frame(SPEC, "H0STCNT0", recs[:4]))
    assert frame.ticks()[:4] == matched.ticks()
    assert [r.key for r in frame.records] == [f"{i:06d}" for i in range(count)]


MATCHED = sorted(t for t, r in PARSER.record_types.items() if frames_module.matchable(r))


def _ops(node: object) -> set[str]:
    """Every opcode name in a pattern parsed by the stdlib's own parser, nested ones too."""
    from re import _constants, _parser  # the regex engine's view of the pattern (3.11+)

    if isinstance(node, _parser.SubPattern):
        node = node.data
    if not isinstance(node, (list, tuple)):
        return set()
    found: set[str] = set()
    for item in node:
        if (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], _constants._NamedIntConstant)
        ):
            found.add(str(item[0]))
            found |= _ops(item[1])
        else:
            found |= _ops(item)
    return found


@pytest.mark.parametrize("tr_id", MATCHED)
def test_role_patterns_cannot_backtrack(tr_id: str) -> None:
    """Every role pattern repeats only possessively and has no any-character node, so a hostile
    payload is one linear pass (a greedy ``.*`` field would make a near-miss payload explode)."""
    from re import _parser

    assert MATCHED, "no TR is read by a role pattern"
    record_type = PARSER.record_types[tr_id]
    for count in (1, 2, frames_module._FAST_COUNTS):
        pattern = frames_module.role_pattern(record_type, count).pattern
        ops = _ops(_parser.parse(pattern))
        assert "POSSESSIVE_REPEAT" in ops, pattern[:80]
        assert not {"MAX_REPEAT", "MIN_REPEAT", "ANY"} & ops, (count, pattern[:80])


@pytest.mark.timeout(20)
def test_near_miss_payloads_of_the_largest_matched_count_are_frame_errors() -> None:
    """A payload one field short or one field long of the largest matched count, with fields of
    separator-free junk, is a FrameError naming the field count, in one linear pass."""
    layout = SPEC.layout("H0STCNT0")
    count = frames_module._FAST_COUNTS
    recs = [["x" * 50] * len(layout.fields) for _ in range(count)]
    good = data_frame(SPEC, "H0STCNT0", recs)
    short, long_ = good.rsplit("^", 1)[0], good + "^x"
    for text in (short, long_):
        with pytest.raises(FrameError, match="carries"):
            PARSER.parse(text)
