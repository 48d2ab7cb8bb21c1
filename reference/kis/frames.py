"""Realtime data frames (``enc|tr_id|NNN|records``) parsed against the spec's field layouts.

This is the client's hot path, so the work is split in two:

* :meth:`FrameParser.parse` checks the *structure* eagerly — the parts, the flag, a TR that has a
  layout, the count, and that the number of ``^``-separated fields is exactly count x fields per
  record. For a trade frame that check and the reading are one C-level pass: a regular expression
  compiled per TR and record count from the layout's roles (:func:`role_pattern`) matches the whole
  payload only when it holds exactly count x width fields, and captures just the key, time, price
  and volume texts of every record. Splitting the payload into all its fields was 57 % of a record's
  cost (46 fields per H0STCNT0 record, four of them read); the match takes half of that. An order
  book needs most of its fields, so its frames are split.
* Values are converted *lazily*, when a field is read, through per-TR record classes whose role
  positions are precomputed class attributes. The key and time (texts) are slots filled when a
  record is made; reading ``record.price`` is one tuple index and one ``int()`` / ``Decimal()`` (an
  int text read before is a dict lookup). The full field list is split only when a reader asks for
  a field that is not a role (:meth:`Record.raw`, :meth:`Record.to_dict`). A value that does not
  convert raises :class:`FrameError` at that point, naming the field (``Frame.validate()`` converts
  everything up front when a caller wants that).

Numbers: ``int`` fields become ``int`` and ``decimal`` fields become :class:`decimal.Decimal`, never
``float``: US prices such as ``187.2300`` are decimal quantities that a binary float cannot hold
exactly, and ``str(Decimal)`` gives back a valid JSON number with the broker's own digits, so what
the client prints is exactly what the broker (or the mock) sent. ``Decimal`` construction is done in C
and only paid for the fields that are read. Non-finite values (``NaN``, ``Infinity``) and absurd
exponents are rejected as malformed.

The grammar (separators, count width, plain/encrypted flags) comes from clause PKT-DATA-FRAME. Version
1.0 of the spec names only the pipe delimiter (PKT-DATA); the rest of the grammar is a fact of the
broker that 1.1 wrote down, so a 1.0 parser borrows it from the newest version that has the clause.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import repeat
from json.encoder import encode_basestring_ascii as _js
from operator import itemgetter
from typing import Any, ClassVar, NoReturn, TypeAlias, cast

from stockmon.reference.errors import FrameError
from stockmon.reference.events import Row
from stockmon.reference.output import book_row, tick_row
from stockmon.spec import Layout, Spec, broker_clause

Value: TypeAlias = int | Decimal | str
Level: TypeAlias = tuple[int | Decimal, int]
TickRow: TypeAlias = tuple[str, str, int | Decimal, int]
BookRow: TypeAlias = tuple[str, str, list[Level], list[Level]]
Converter: TypeAlias = Callable[[str], Value]

# |exponent| beyond this is not a price or a quantity; refusing it keeps every value printable as a
# JSON number that a float-based reader can hold. Not normative: a sanity bound.
_MAX_DECIMAL_EXPONENT = 30
# A frame body longer than this is refused before splitting (a defence against a runaway peer).
MAX_FRAME_CHARS = 4 * 1024 * 1024

_GRAMMAR_CLAUSE = "PKT-DATA-FRAME"
# Frames of up to this many records are recognised by their head in one lookup. Not normative.
_FAST_COUNTS = 64


def ascii_int(text: str) -> int:
    """An ``int`` field: ASCII digits, optionally after a minus (not Python's ``int()`` rules,
    which take "１２３", "٣٤٥", "1_000" and " 2425 "). Two C-level tests on the hot path."""
    if text.isdigit() and text.isascii():
        return int(text)
    tail = text[1:]
    if text[:1] == "-" and tail.isdigit() and tail.isascii():
        return -int(tail)
    raise ValueError(f"not ASCII digits: {text[:40]!r}")


_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def ascii_decimal(text: str) -> Decimal:
    """A ``decimal`` field: ASCII digits with an optional minus and fraction, finite and of a sane
    exponent (never Python's ``Decimal()`` rules, which take "１２３" and " 1e5 ")."""
    if _DECIMAL_TEXT.fullmatch(text) is None:
        raise ValueError(f"not an ASCII decimal: {text[:40]!r}")
    d = Decimal(text)
    if not d.is_finite() or abs(d.adjusted()) > _MAX_DECIMAL_EXPONENT:
        raise ValueError(f"not a finite price or quantity: {text!r}")
    return d


def _str(text: str) -> str:
    return text


_CONVERTERS: Mapping[str, Converter] = {"int": ascii_int, "decimal": ascii_decimal, "str": _str}


@dataclass(frozen=True, slots=True)
class FrameGrammar:
    """The separators and flags of a data frame, read from the spec."""

    part_separator: str
    field_separator: str
    count_digits: int
    plain_flag: str
    encrypted_flag: str

    @classmethod
    def from_spec(cls, spec: Spec) -> FrameGrammar:
        """Read PKT-DATA-FRAME, borrowing it from the newest version when ``spec`` lacks it."""
        c = broker_clause(spec, _GRAMMAR_CLAUSE)
        return cls(
            part_separator=c.string("part_separator"),
            field_separator=c.string("field_separator"),
            count_digits=c.integer("count_digits"),
            plain_flag=c.string("plain_flag"),
            encrypted_flag=c.string("encrypted_flag"),
        )


# Texts of plain ASCII ints read before -> their value. A market repeats its prices and volumes
# (a price moves by ticks), so a record's int read is mostly a dict lookup instead of int(), which
# is the costlier part of a read (130 ns against 47 ns for the lookup, measured here). Only texts
# that passed the strict test get in, so a hit is exactly int(text). Bounded: emptied when full.
_KNOWN_INTS: dict[str, int] = {}
_MAX_KNOWN_INTS = 16384  # not normative: about 2 MB at most
_known_int = _KNOWN_INTS.get


def _remember_int(text: str) -> int:
    """``int(text)`` of a text that passed the strict test, remembered for the next read."""
    value = int(text)
    if len(_KNOWN_INTS) >= _MAX_KNOWN_INTS:
        _KNOWN_INTS.clear()
    _KNOWN_INTS[text] = value
    return value


def _bad_value(rec: Record, index: int) -> FrameError:
    """The error of layout field ``index`` of ``rec``, naming the field and quoting its text."""
    name = rec.layout.fields[index].name
    raw = rec._f[rec._o + index]
    return FrameError(
        f"{rec.tr_id} record field {name} (#{index}) is not a valid "
        f"{rec.layout.fields[index].type}: {raw[:40]!r}"
    )


def _int_at(rec: Record, at: int) -> int:
    """The int at position ``at`` of the record's texts (``Record._g``), strictly converted."""
    text = rec._g[rec._i + at]
    if text.isdigit() and text.isascii():  # the common case without a second call
        return int(text)
    try:
        return ascii_int(text)
    except ValueError:
        raise _bad_value(rec, rec._g_fields[at]) from None


def _dec_at(rec: Record, at: int) -> Decimal:
    """The decimal at position ``at`` of the record's texts, strictly converted."""
    try:
        return ascii_decimal(rec._g[rec._i + at])
    except (ValueError, InvalidOperation):
        raise _bad_value(rec, rec._g_fields[at]) from None


class Record:
    """One record of a data frame: a view on the frame's texts (no copy), typed on access.

    Subclasses per TR are built by :class:`FrameParser` from the spec's layout; their class
    attributes hold the precomputed positions, so the spec, not this code, decides where a field is.
    A record reads its roles from ``_g``, the texts its frame captured: for a trade, the role texts
    of every record (``_stride`` per record, from the frame's match); for an order book, every field.
    """

    # key and time are plain slots, set when the record is made (texts, nothing to convert, and a
    # slot read is far cheaper than a property call on the records path); typed fields stay lazy
    __slots__ = ("_fr", "_g", "_i", "key", "time")

    _fr: Frame  # the frame: its full field list, split on demand, for raw(), get() and to_dict()
    _g: Sequence[str]  # the frame's role texts (shared by its records, not copied)
    _i: int  # where this record's texts begin in them
    key: str  # the tr_key the record belongs to: ``005930``, ``DNASAAPL``
    time: str  # the record's time field as sent (``HHMMSS``)
    tr_id: ClassVar[str]
    layout: ClassVar[Layout]
    kind: ClassVar[str]
    field_separator: ClassVar[str]  # PKT-DATA-FRAME's, between the fields of the frame
    # name -> (position, converter); position of the key and time roles
    _by_name: ClassVar[Mapping[str, tuple[int, Converter]]]
    _converters: ClassVar[tuple[Converter, ...]]
    _names: ClassVar[tuple[str, ...]]
    _int_names: ClassVar[tuple[str, ...]]
    _dec_names: ClassVar[tuple[str, ...]]
    # (texts, count, ascii_only) -> the typed rows of ticks() / books(), compiled per TR
    _rows: ClassVar[Callable[[Sequence[str], int, bool], list[Any]]]
    _int_get: ClassVar[Callable[[list[str]], tuple[str, ...]]]
    _dec_get: ClassVar[Callable[[list[str]], tuple[str, ...]]]
    _num_get: ClassVar[Callable[[list[str]], tuple[str, ...]]]
    # positions of the key and time roles in a record's texts
    _i_key: ClassVar[int]
    _i_time: ClassVar[int]
    _width: ClassVar[int]  # fields per record
    _stride: ClassVar[int]  # texts per record in _g
    _g_fields: ClassVar[tuple[int, ...]]  # position in a record's texts -> its layout field index
    # a frame's texts from its fields (a trade frame split instead of matched; a book's are its fields)
    _texts_of: ClassVar[Callable[[list[str]], Sequence[str]]]

    def __init__(self, frame: Frame, texts: Sequence[str], offset: int) -> None:
        """A declaration: record_class() compiles each TR's own (_compile_init), with the key and
        time positions bound."""
        raise NotImplementedError

    @property
    def _f(self) -> list[str]:
        """Every field of the frame (split on the first call of any of its records)."""
        return self._fr.fields

    @property
    def _o(self) -> int:
        """Where this record's fields begin in :attr:`_f`."""
        return self._i // self._stride * self._width

    def raw(self, name: str) -> str:
        """A field's text exactly as it arrived."""
        try:
            index = self._by_name[name][0]
        except KeyError:
            raise KeyError(f"{self.tr_id} has no field {name!r}") from None
        return self._f[self._o + index]

    def get(self, name: str) -> Value:
        """A field converted to its layout type; FrameError if it does not convert."""
        try:
            index, conv = self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.tr_id} has no field {name!r}") from None
        try:
            return conv(self._f[self._o + index])
        except (ValueError, InvalidOperation):
            raise _bad_value(self, index) from None

    def to_dict(self) -> dict[str, Value]:
        """Every field, converted (validates the whole record)."""
        cls = type(self)
        o = self._o
        values = self._f[o : o + len(cls._names)]
        out: dict[str, Value] = dict(zip(cls._names, values, strict=True))
        int_texts, dec_texts = cls._int_get(values), cls._dec_get(values)
        # ASCII digits as the layouts say, in one C-level test on every number field's bytes joined
        # (what the strict converters take always passes it; what passes it and still is not a
        # number fails in int()/Decimal()). bytes.isdigit() is a plain C loop, str.isdigit() is not.
        joined = "".join(cls._num_get(values))
        if not (joined.isascii() and joined.encode().translate(None, b"-.").isdigit()) and joined:
            self._raise_first_bad()
        try:
            ints: list[int] = list(map(int, int_texts))
            out.update(zip(cls._int_names, ints, strict=True))
            decimals = list(map(Decimal, dec_texts))
        except (ValueError, InvalidOperation):
            self._raise_first_bad()
        for d in decimals:
            if not d.is_finite() or abs(d.adjusted()) > _MAX_DECIMAL_EXPONENT:
                self._raise_first_bad()
        out.update(zip(cls._dec_names, decimals, strict=True))
        return out

    def _raise_first_bad(self) -> NoReturn:
        f, o = self._f, self._o
        for i, conv in enumerate(self._converters):
            try:
                conv(f[o + i])
            except (ValueError, InvalidOperation):
                raise _bad_value(self, i) from None
        raise AssertionError("no bad field found")  # pragma: no cover

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} @{self.time}>"


class TickRecord(Record):
    """A trade: key, time, price and this trade's volume (roles of the layout)."""

    __slots__ = ()
    kind: ClassVar[str] = "tick"
    _i_price: ClassVar[int]
    _i_volume: ClassVar[int]
    _price_conv: ClassVar[Callable[[str], int | Decimal]]

    @property
    def price(self) -> int | Decimal:
        """Trade price."""
        raise NotImplementedError

    @property
    def volume(self) -> int:
        """This trade's volume."""
        raise NotImplementedError


class OrderbookRecord(Record):
    """Order book levels, best first, from the layout's ask/bid price and quantity roles."""

    __slots__ = ()
    kind: ClassVar[str] = "orderbook"
    _i_asks: ClassVar[tuple[tuple[int, int], ...]]
    _i_bids: ClassVar[tuple[tuple[int, int], ...]]
    _price_conv: ClassVar[Callable[[str], int | Decimal]]

    def _price_at(self, at: int) -> int | Decimal:
        raise NotImplementedError

    def _levels(self, positions: tuple[tuple[int, int], ...]) -> list[Level]:
        return [(self._price_at(p), _int_at(self, q)) for p, q in positions]

    @property
    def asks(self) -> list[Level]:
        """Ask levels ``(price, quantity)``, best (L1) first, every level of the layout."""
        return self._levels(self._i_asks)

    @property
    def bids(self) -> list[Level]:
        """Bid levels ``(price, quantity)``, best (L1) first, every level of the layout."""
        return self._levels(self._i_bids)


class KrTick(TickRecord):
    """Domestic trade (H0STCNT0): prices in whole won."""

    __slots__ = ()

    @property
    def price(self) -> int:
        """Trade price in KRW."""
        raise NotImplementedError


class UsTick(TickRecord):
    """Overseas trade (HDFSCNT0): decimal prices."""

    __slots__ = ()

    @property
    def price(self) -> Decimal:
        """Last price in USD, exact."""
        raise NotImplementedError


class KrOrderbook(OrderbookRecord):
    """Domestic order book (H0STASP0)."""

    __slots__ = ()

    def _price_at(self, at: int) -> int:
        return _int_at(self, at)


class UsOrderbook(OrderbookRecord):
    """Overseas order book (HDFSASP0)."""

    __slots__ = ()

    def _price_at(self, at: int) -> Decimal:
        return _dec_at(self, at)


# (kind, market) -> record base; a new TR of a known kind and market needs only a layout in the spec.
_BASES: Mapping[tuple[str, str], type[Record]] = {
    ("tick", "KR"): KrTick,
    ("tick", "US"): UsTick,
    ("orderbook", "KR"): KrOrderbook,
    ("orderbook", "US"): UsOrderbook,
}


def _getter(indices: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """A C-level picker of several positions that always returns a tuple."""
    if not indices:
        return lambda values: ()
    if len(indices) == 1:
        (only,) = indices
        return lambda values: (values[only],)
    getter = itemgetter(*indices)
    return cast(Callable[[list[str]], tuple[str, ...]], getter)


def record_class(layout: Layout, field_separator: str) -> type[Record]:
    """Build the record class of one layout: positions of every role precomputed."""
    base = _BASES.get((layout.kind, layout.market))
    if base is None:
        raise ValueError(f"no record type for a {layout.market} {layout.kind} ({layout.tr_id})")
    converters = tuple(_CONVERTERS[f.type] for f in layout.fields)
    width = len(layout.fields)
    i_key, i_time = layout.index(layout.role("key")), layout.index(layout.role("time"))
    if layout.kind == "tick":
        # a trade record's texts are its role fields in wire order (what role_pattern captures)
        i_price, i_volume = layout.index(layout.role("price")), layout.index(layout.role("volume"))
        g_fields = tuple(sorted({i_key, i_time, i_price, i_volume}))
    else:
        g_fields = tuple(range(width))  # an order book's texts are all its fields
    at = {index: n for n, index in enumerate(g_fields)}.__getitem__
    attrs: dict[str, object] = {
        "__slots__": (),
        "tr_id": layout.tr_id,
        "layout": layout,
        "field_separator": field_separator,
        "_by_name": {f.name: (i, converters[i]) for i, f in enumerate(layout.fields)},
        "_converters": converters,
        "_names": layout.names,
        "_int_names": tuple(f.name for f in layout.fields if f.type == "int"),
        "_dec_names": tuple(f.name for f in layout.fields if f.type == "decimal"),
        "_int_get": staticmethod(
            _getter([i for i, f in enumerate(layout.fields) if f.type == "int"])
        ),
        "_dec_get": staticmethod(
            _getter([i for i, f in enumerate(layout.fields) if f.type == "decimal"])
        ),
        "_num_get": staticmethod(
            _getter([i for i, f in enumerate(layout.fields) if f.type in ("int", "decimal")])
        ),
        "_i_key": at(i_key),
        "_i_time": at(i_time),
        "_width": width,
        "_stride": len(g_fields),
        "_g_fields": g_fields,
        "_texts_of": staticmethod(_texts_picker(g_fields, width)),
    }
    if layout.kind == "tick":
        attrs["_price_conv"] = _CONVERTERS[layout.fields[i_price].type]
        attrs["_i_price"] = at(i_price)
        attrs["_i_volume"] = at(i_volume)
    else:

        def pairs(prices: str, quantities: str) -> tuple[tuple[int, int], ...]:
            return tuple(
                (at(layout.index(p)), at(layout.index(q)))
                for p, q in zip(layout.role_list(prices), layout.role_list(quantities), strict=True)
            )

        first_ask = layout.fields[layout.index(layout.role_list("ask_prices")[0])]
        attrs["_price_conv"] = _CONVERTERS[first_ask.type]
        attrs["_i_asks"] = pairs("ask_prices", "ask_quantities")
        attrs["_i_bids"] = pairs("bid_prices", "bid_quantities")
    attrs["_rows"] = staticmethod(_compile_rows(attrs, len(g_fields), layout.kind))
    attrs["__init__"] = _compile_init(at(i_key), at(i_time))
    attrs.update(_role_reads(attrs, base))
    return type(f"{layout.tr_id}Record", (base,), attrs)


def _texts_picker(g_fields: tuple[int, ...], width: int) -> Callable[[list[str]], Sequence[str]]:
    """The texts of a record type from a frame's fields: the fields themselves when a record reads
    all of them, else its role fields of every record (a frame split rather than matched)."""
    if len(g_fields) == width:  # g_fields is sorted and within the record
        return lambda fields: fields

    def texts(fields: list[str]) -> Sequence[str]:
        return [fields[o + i] for o in range(0, len(fields), width) for i in g_fields]

    return texts


def matchable(record_type: type[Record]) -> bool:
    """Whether frames of ``record_type`` are read by a :func:`role_pattern`: its records read only
    some of their fields (a trade), and the field separator is one character."""
    return len(record_type.field_separator) == 1 and record_type._stride < record_type._width


def role_pattern(record_type: type[Record], count: int) -> re.Pattern[str]:
    """The pattern that matches a payload of exactly ``count`` records of a :func:`matchable`
    ``record_type`` and captures their texts (``_g_fields``).

    Possessive ``[^^]*+`` fields: the match is one linear pass in C and cannot backtrack, so a
    hostile payload costs no more than a split of it."""
    sep = re.escape(record_type.field_separator)
    field = f"[^{sep}]*+"
    capture = set(record_type._g_fields)
    one = sep.join(f"({field})" if i in capture else field for i in range(record_type._width))
    return re.compile(sep.join([one] * count))


def _compile_init(ik: int, it: int) -> Callable[[Record, Frame, Sequence[str], int], None]:
    """A TR's ``Record.__init__`` with its key and time positions bound as closure constants."""

    def __init__(self: Record, frame: Frame, texts: Sequence[str], offset: int) -> None:
        self._fr = frame
        self._g = texts
        self._i = offset
        self.key = texts[offset + ik]
        self.time = texts[offset + it]

    return __init__


def _role_reads(attrs: Mapping[str, Any], base: type[Record]) -> dict[str, property]:
    """A trade's price and volume properties of one TR, positions bound as closure constants: the
    records path's reads with no class-attribute lookup and, for an int, no second call unless the
    text is not plain digits."""

    def integer(index: int) -> Callable[[Record], int]:
        # a text read before is one dict lookup; else _int_at's first test inlined (one call fewer)
        def read(rec: Record) -> int:
            value = rec._g[rec._i + index]
            known = _known_int(value)
            if known is not None:
                return known
            if value.isdigit() and value.isascii():
                return _remember_int(value)
            return _int_at(rec, index)  # the strict rules, or FrameError naming the field

        return read

    def decimal(index: int) -> Callable[[Record], Decimal]:
        return lambda rec: _dec_at(rec, index)

    def prop(name: str, read: Callable[[Record], Any]) -> tuple[str, property]:
        return name, property(read, doc=getattr(base, name).__doc__)

    reads = []
    if "_i_price" in attrs:
        ip = attrs["_i_price"]
        price = integer(ip) if attrs["_price_conv"] is ascii_int else decimal(ip)
        reads += [prop("price", price), prop("volume", integer(attrs["_i_volume"]))]
    return dict(reads)


def _compile_rows(
    attrs: Mapping[str, Any], width: int, kind: str
) -> Callable[[Sequence[str], int, bool], list[Any]]:
    """The hot-path row builder of one TR over a frame's texts (``width`` per record), positions
    bound as closure constants.

    ``ascii_only`` is the frame's ``payload.isascii()`` (O(1) in CPython). Then ``str.isdigit()`` is
    exactly ``[0-9]+``, and a value that passes it is what the builtin ``int()`` converts with no
    liberty (no sign, space, ``_`` or non-ASCII digit): the fast path tests the ints (of a role,
    or of a book record, joined) with one C method and builds rows with the builtin. Anything else (a sign, a bad value) takes the strict
    path, where every int goes through :func:`ascii_int` and a bad one raises.
    """
    conv = attrs["_price_conv"]
    int_price = conv is ascii_int
    fast_conv = int if int_price else conv
    ik, it = attrs["_i_key"], attrs["_i_time"]
    if kind == "tick":
        ip, iv = attrs["_i_price"], attrs["_i_volume"]

        def ticks(f: Sequence[str], count: int, ascii_only: bool) -> list[Any]:
            # f holds exactly count x width texts (parse() checked), so a stride slice is one
            # role of every record, taken in C (an empty text in a joined role fails in int(), as
            # a bad value should)
            if ascii_only:
                prices, volumes = f[ip::width], f[iv::width]
                if "".join(volumes).isdigit() and (not int_price or "".join(prices).isdigit()):
                    keys, times = f[ik::width], f[it::width]
                    return list(
                        zip(keys, times, map(fast_conv, prices), map(int, volumes), strict=True)
                    )
            span = range(0, count * width, width)
            return [(f[o + ik], f[o + it], conv(f[o + ip]), ascii_int(f[o + iv])) for o in span]

        return ticks
    asks, bids = attrs["_i_asks"], attrs["_i_bids"]
    int_positions = [q for _, q in (*asks, *bids)] + (
        [p for p, _ in (*asks, *bids)] if int_price else []
    )

    def books(f: Sequence[str], count: int, ascii_only: bool) -> list[Any]:
        span = range(0, count * width, width)
        plain = ascii_only and all(
            "".join([f[o + i] for i in int_positions]).isdigit() for o in span
        )
        c, num = (fast_conv, int) if plain else (conv, ascii_int)
        return [
            (
                f[o + ik],
                f[o + it],
                [(c(f[o + p]), num(f[o + q])) for p, q in asks],
                [(c(f[o + p]), num(f[o + q])) for p, q in bids],
            )
            for o in span
        ]

    return books


class Frame:
    """One parsed data frame: its TR, record count and the records (views, typed on access).

    The payload is kept as it arrived and split into fields only when a caller needs them all
    (:attr:`fields`); a trade frame's readers mostly need only the role texts its match captured
    (:attr:`texts`). Each TR has its own subclass (:func:`frame_class`), which carries the record
    class and the TR's compiled :meth:`json_lines`.
    """

    __slots__ = ("_fields", "_texts", "count", "payload")
    _fields: list[str] | None
    _texts: Sequence[str] | None
    record_type: ClassVar[type[Record]]

    def __init__(
        self,
        count: int,
        payload: str,
        fields: list[str] | None = None,
        texts: Sequence[str] | None = None,
    ) -> None:
        self.count = count
        self.payload = payload
        # None until split: testing it is cheaper than catching an unset slot's AttributeError
        self._fields = fields
        self._texts = texts

    @property
    def tr_id(self) -> str:
        """The frame's TR ID."""
        return self.record_type.tr_id

    @property
    def ascii_only(self) -> bool:
        """Whether the payload is pure ASCII (O(1) in CPython): the digit tests' fast path."""
        return self.payload.isascii()

    @property
    def fields(self) -> list[str]:
        """Every field of every record, in wire order (split once, on first use)."""
        fields = self._fields
        if fields is None:
            fields = self._fields = self.payload.split(self.record_type.field_separator)
        return fields

    @property
    def texts(self) -> Sequence[str]:
        """The texts the records read: a trade's role fields, ``_stride`` per record (captured by
        the frame's match, or picked from the fields), or an order book's fields."""
        texts = self._texts
        if texts is None:
            texts = self._texts = self.record_type._texts_of(self.fields)
        return texts

    @property
    def records(self) -> list[Record]:
        """The records in wire order."""
        cls = self.record_type
        texts = self._texts
        if texts is None:
            texts = self.texts
        n = self.count
        # parse() checked the field count, so texts holds n x _stride; map() over a class makes
        # the records in C
        return list(map(cls, repeat(self, n), repeat(texts, n), range(0, len(texts), cls._stride)))

    def ticks(self) -> list[TickRow]:
        """``(key, time, price, volume)`` of every record of a tick frame, typed.

        The hot path of the client: no record objects, one precompiled comprehension per TR; a bad
        value raises FrameError naming the field, exactly as the record properties do.
        """
        try:
            return self.record_type._rows(self.texts, self.count, self.ascii_only)
        except (ValueError, InvalidOperation):
            self._raise_bad()
        except AttributeError:
            raise TypeError(f"{self.tr_id} frames are not ticks") from None

    def books(self) -> list[BookRow]:
        """``(key, time, asks, bids)`` of every record of an order-book frame, typed."""
        try:
            return self.record_type._rows(self.texts, self.count, self.ascii_only)
        except (ValueError, InvalidOperation):
            self._raise_bad()

    def _raise_bad(self) -> NoReturn:
        for rec in self.records:
            if isinstance(rec, TickRecord):
                _ = rec.price, rec.volume
            elif isinstance(rec, OrderbookRecord):
                _ = rec.asks, rec.bids
        raise AssertionError("no bad value found")  # pragma: no cover

    def json_lines(self, source: str) -> str:
        """The JSON lines of every record (schema ``event``), joined; FrameError if a value is bad.

        Compiled per TR by :func:`frame_class`."""
        raise NotImplementedError

    def table_rows(self) -> list[tuple[str, str, Row]]:
        """Live-table rows of every record."""
        rows = []
        for rec in self.records:
            if isinstance(rec, TickRecord):
                row = tick_row(rec.time, rec.price, rec.volume)
            else:
                assert isinstance(rec, OrderbookRecord)
                row = book_row(rec.time, rec.asks[0], rec.bids[0])
            rows.append((rec.tr_id, rec.key, row))
        return rows

    def validate(self) -> Frame:
        """Convert every field of every record now; FrameError on the first bad one."""
        for rec in self.records:
            rec.to_dict()
        return self

    def __repr__(self) -> str:
        return f"<Frame {self.tr_id} x{self.count}>"


def _levels(levels: list[Level]) -> str:
    return "[" + ",".join([f"[{p},{q}]" for p, q in levels]) + "]"


# The JSON-lines method of each TR's frames: constant parts preformatted once per source; strings
# through the C JSON string encoder; an ``int`` prints as itself and a ``Decimal`` as its exact digits
# (``str(Decimal)`` is a valid JSON number for every finite value the parser lets through).


def frame_class(record_type: type[Record]) -> type[Frame]:
    """The frame class of one TR: its record class and its compiled :meth:`Frame.json_lines`."""
    heads: dict[str, str] = {}
    kind, tr_id = record_type.kind, record_type.tr_id

    def head_of(source: str) -> str:
        head = heads[source] = (
            f'{{"type":"{kind}","source":{_js(source)},"tr_id":{_js(tr_id)},"key":'
        )
        return head

    json_lines: Callable[[Frame, str], str]
    if kind == "tick":
        assert issubclass(record_type, TickRecord)
        # A one-record frame with integer prices is printed from its role texts as they are: on an
        # ASCII payload a key and time of letters and digits need no JSON escaping, and digits
        # without a leading zero are what int() would print; anything else takes the general path.
        one = record_type._price_conv is ascii_int
        ik, it = record_type._i_key, record_type._i_time
        ip, iv = record_type._i_price, record_type._i_volume

        def ticks(frame: Frame, source: str) -> str:
            head = heads.get(source) or head_of(source)
            if one and frame.count == 1 and frame.payload.isascii():
                f = frame.texts
                k, t, p, v = f[ik], f[it], f[ip], f[iv]
                if (
                    k.isalnum()
                    and t.isalnum()
                    and p.isdigit()
                    and v.isdigit()
                    and p[0] != "0"
                    and v[0] != "0"
                ):
                    return f'{head}"{k}","time":"{t}","price":{p},"volume":{v}}}\n'
            return "".join(
                [
                    f'{head}{_js(k)},"time":{_js(t)},"price":{p},"volume":{v}}}\n'
                    for k, t, p, v in frame.ticks()
                ]
            )

        json_lines = ticks
    else:

        def books(frame: Frame, source: str) -> str:
            head = heads.get(source) or head_of(source)
            return "".join(
                [
                    f'{head}{_js(k)},"time":{_js(t)},"asks":{_levels(a)},"bids":{_levels(b)}}}\n'
                    for k, t, a, b in frame.books()
                ]
            )

        json_lines = books
    attrs = {"__slots__": (), "record_type": record_type, "json_lines": json_lines}
    return type(f"{tr_id}Frame", (Frame,), attrs)


class _Matchers(dict[str, Callable[[str], "re.Match[str] | None"]]):
    """Frame head -> the ``fullmatch`` of its role pattern, compiled on the first frame of that TR
    and count (a pattern of 64 records takes milliseconds to compile; most counts never occur)."""

    def __init__(self, heads: Mapping[str, tuple[type[Frame], int, int, bool]]) -> None:
        super().__init__()
        self._heads = heads

    def __missing__(self, head: str) -> Callable[[str], re.Match[str] | None]:
        frame_type, count, _, _ = self._heads[head]
        match = self[head] = role_pattern(frame_type.record_type, count).fullmatch
        return match


class FrameParser:
    """Parses data frames of one spec version; build once, call :meth:`parse` per frame."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.grammar = g = FrameGrammar.from_spec(spec)
        self._types: dict[str, type[Record]] = {
            tr_id: record_class(layout, g.field_separator)
            for tr_id, layout in spec.layouts.items()
            if (layout.kind, layout.market) in _BASES
        }
        self._entries = {
            tr_id: (frame_class(cls), len(cls.layout.fields)) for tr_id, cls in self._types.items()
        }
        self._sep = g.part_separator
        self._fsep = g.field_separator
        self._plain = g.plain_flag
        self._digits = g.count_digits
        # Every valid count text ("001" ...) mapped to its value: one dict lookup validates and
        # converts it (a zero count is not valid: a frame carries at least one record).
        self._counts = {f"{n:0{g.count_digits}d}": n for n in range(1, 10**g.count_digits)}
        # "flag|TR|count" -> (frame class, count, fields, matches) for the plain frames of up to
        # _FAST_COUNTS records: parse()'s one lookup (larger counts take the part-by-part path);
        # ``matches`` says the TR's frames are matched by a role pattern, compiled on first use
        sep = g.part_separator
        self._heads = {
            sep.join((g.plain_flag, tr_id, text)): (
                cls,
                n,
                n * width,
                matchable(cls.record_type),
            )
            for tr_id, (cls, width) in self._entries.items()
            for text, n in self._counts.items()
            if n <= _FAST_COUNTS
        }
        self._matchers = _Matchers(self._heads)

    @property
    def record_types(self) -> Mapping[str, type[Record]]:
        """TR ID -> record class, for every layout this parser knows."""
        return self._types

    def parse(self, text: str) -> Frame:
        """Parse the structure of one frame; FrameError if it is not a well-formed data frame."""
        # The common case in one dict lookup: the flag, TR and count before the last part
        # separator name a known frame head. Anything else (a separator inside the payload, a
        # count this table leaves out, a wrong field count) is checked part by part below.
        head, _, payload = text.rpartition(self._sep)
        entry = self._heads.get(head)
        if entry is not None and len(text) <= MAX_FRAME_CHARS:
            frame_type, count, n_fields, matches = entry
            if matches:
                # the field count checked and the role texts taken in one pass
                m = self._matchers[head](payload)
                if m is not None:
                    return frame_type(count, payload, None, m.groups())
            elif count == 1:
                # a one-record frame is split only if it must be
                if payload.count(self._fsep) + 1 == n_fields:
                    return frame_type(count, payload)
            else:
                # every reader of a larger book frame splits it, so split now and count the list
                fields = payload.split(self._fsep)
                if len(fields) == n_fields:
                    return frame_type(count, payload, fields)
        return self._parse_parts(text)

    def _parse_parts(self, text: str) -> Frame:
        if len(text) > MAX_FRAME_CHARS:
            raise FrameError(f"data frame of {len(text)} characters is over the limit")
        parts = text.split(self._sep, 3)
        if len(parts) != 4:
            raise FrameError(f"data frame has {len(parts)} of 4 parts: {text[:60]!r}")
        flag, tr_id, count_text, payload = parts
        if flag != self._plain:
            if flag == self.grammar.encrypted_flag:
                raise FrameError(f"encrypted data frame for {tr_id[:20]!r}: no key for it")
            raise FrameError(f"data frame flag {flag[:10]!r} is neither plain nor encrypted")
        entry = self._entries.get(tr_id)
        if entry is None:
            raise FrameError(f"data frame for {tr_id[:20]!r}, a TR without a field layout")
        count = self._counts.get(count_text)
        if count is None:
            raise FrameError(
                f"{tr_id} record count {count_text[:10]!r} is not {self._digits} digits (> 0)"
            )
        frame_type, width = entry
        # counting separators checks the field count without building the list of fields
        n_fields = payload.count(self._fsep) + 1
        if n_fields != count * width:
            raise FrameError(
                f"{tr_id} frame says {count} record(s) of {width} fields "
                f"but carries {n_fields} fields"
            )
        return frame_type(count, payload)
