"""Column-wise validation of a batch's parsed items: the fast path of `/predict_batch`.

`check_batch` takes the items as a JSON parser gave them (dicts of str, int, float, bool and
None) and checks each field over its whole column, with rules that accept a subset of what
`Transaction` accepts: ASCII patterns matched over the joined column, amounts that are
whole cents, RFC 3339 timestamps in 2001-2099, integer counts, bounded coordinates. A row
any of them refuses is validated alone by the schema itself (`parse_item`), so a row the
fast rules cannot vouch for (a count written 5.0, an amount of 0.07 in a float the rule
does not recognise, a broken item) is accepted or refused exactly as the per-item path
would, with the same field errors.

The canonical columns it builds are `columns_from_transactions` of the transactions the
schema would have made (tested on valid and on mixed batches). Why the values agree:
strings are the parser's strings; an amount's float is the correctly rounded value of its
text or number either way; pydantic makes a JSON number's `Decimal` from its float, so
`round(v, 2) == v` is its 2-decimal-places rule; timestamps parse to the same instant and
offset. The `Transaction` objects themselves are made only where a caller asks for one
(a broken rule's message): `CheckedBatch.valid` validates that item then.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any, Final, overload

from pydantic import JsonValue

from sproxxo.features import columns_from_transactions
from sproxxo.schemas import CATEGORIES, MAX_AMOUNT, MAX_BATCH_ITEMS, Transaction
from sproxxo.validation import parse_item

_REQUIRED: Final = frozenset(
    {"transaction_id", "card_id", "amount", "currency", "timestamp", "merchant_id"}
    | {"merchant_category", "merch_lat", "merch_long", "is_foreign"}
)
_OPTIONAL: Final = frozenset({"lat", "long", "card_age_days", "customer_age", "city_pop"})
_ALLOWED: Final = _REQUIRED | _OPTIONAL
_CATEGORY_SET: Final = frozenset(CATEGORIES)
_MAX_AMOUNT: Final = float(MAX_AMOUNT)
_HUGE: Final = 2.0**63

# [0-9], never \d: in a str pattern \d matches every Unicode digit.
_ID: Final = r"[A-Za-z0-9_.:\-]{1,64}"
_CARD: Final = r"[A-Za-z0-9_\-]{8,64}"
_STAMP: Final = (
    r"20(?:0[1-9]|[1-9][0-9])-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_AMOUNT: Final = r"(?:[1-9][0-9]{0,5}(?:\.[0-9]{1,2})?|0\.(?:0[1-9]|[1-9][0-9]?))"
#: A card number once `-` and `_` are taken out (the schema's no-PAN rule, ASCII tokens).
_PAN_RUN: Final = re.compile(r"[0-9]{13}")


def _one_and_all(pattern: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """One value, and a column joined by newlines (which no pattern admits)."""
    return re.compile(pattern), re.compile(rf"(?:{pattern}\n)*{pattern}")


_IDS: Final = _one_and_all(_ID)
_CARDS: Final = _one_and_all(_CARD)
_STAMPS: Final = _one_and_all(_STAMP)
_AMOUNT_TEXT, _AMOUNT_TEXTS = _one_and_all(_AMOUNT)


@dataclass
class CheckedBatch(Sequence[Transaction | JsonValue]):
    """A batch's items, checked: the valid rows' canonical columns (`columns`, in order,
    at the items' `rows`), the others refused; reads as the items the schema would give
    (a `Transaction` where valid, else the raw item)."""

    items: list[Any]
    rows: list[int]
    columns: dict[str, list[Any]]
    _made: dict[int, Transaction] = field(default_factory=dict, repr=False)
    _valid: frozenset[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._valid = frozenset(self.rows)

    @property
    def valid(self) -> Sequence[Transaction]:
        """The valid rows as transactions (each validated by the schema when first read)."""
        return _Rows(self, self.rows)

    def transaction(self, index: int) -> Transaction:
        """Item `index` (a valid one) as the schema validates it."""
        if index not in self._made:
            made = parse_item(self.items[index])
            if not isinstance(made, Transaction):
                raise ValueError(f"batch item {index} does not validate")
            self._made[index] = made
        return self._made[index]

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> Transaction | JsonValue: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Transaction | JsonValue]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]
        return self.transaction(index) if index in self._valid else self.items[index]


@dataclass(frozen=True)
class _Rows(Sequence[Transaction]):
    batch: CheckedBatch
    rows: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, k: int) -> Transaction: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[Transaction]: ...
    def __getitem__(self, k: int | slice) -> Any:
        if isinstance(k, slice):
            return [self.batch.transaction(i) for i in self.rows[k]]
        return self.batch.transaction(self.rows[k])

    def __iter__(self) -> Iterator[Transaction]:
        return (self.batch.transaction(i) for i in self.rows)


def check_batch(body: Any) -> CheckedBatch | None:
    """The checked batch of a parsed `/predict_batch` body; None when the body itself is
    not `{"transactions": [1 to 1,000 items]}` (the schema's own validation says why)."""
    if type(body) is not dict or body.keys() != {"transactions"}:
        return None
    items = body["transactions"]
    if type(items) is not list or not 1 <= len(items) <= MAX_BATCH_ITEMS:
        return None
    if set(map(type, items)) == {dict} and all(map(_ALLOWED.issuperset, items)):
        bad: set[int] = set()  # a missing required field is refused by its column's check
        rows = items
    else:
        bad = {i for i, d in enumerate(items) if type(d) is not dict or not d.keys() <= _ALLOWED}
        rows = [{} if i in bad else d for i, d in enumerate(items)]
    values: dict[str, list[Any]] = {}
    for name, check in _CHECKS:
        values[name], refused = check([d.get(name) for d in rows])
        bad |= refused
    if any(_holds_a_huge_number(items[i]) for i in bad):
        return None  # orjson made it a float; the schema would see the integer
    return _assemble(items, values, bad)


def _holds_a_huge_number(value: Any) -> bool:
    """A float of 2**63 or more in size anywhere in `value`: orjson's parse of an integer
    beyond 64 bits (the schema's own parse keeps it an integer, and says so)."""
    if type(value) is float:
        return abs(value) >= _HUGE
    if type(value) is dict:
        value = list(value.values())
    return type(value) is list and any(_holds_a_huge_number(v) for v in value)


def _assemble(items: list[Any], values: dict[str, list[Any]], bad: set[int]) -> CheckedBatch:
    """Canonical columns from the checked values; refused rows validated one by one."""
    stamps = values.pop("timestamp")
    if bad:
        made = {i: parse_item(items[i]) for i in sorted(bad)}
        slow = {i: tx for i, tx in made.items() if isinstance(tx, Transaction)}
        rows = [i for i in range(len(items)) if i not in bad or i in slow]
        stamps = [slow[i].timestamp if i in slow else stamps[i] for i in rows]
        for name, column in values.items():
            values[name] = [getattr(slow[i], name) if i in slow else column[i] for i in rows]
    else:
        slow, rows = {}, list(range(len(items)))
    offsets = [stamp.utcoffset() for stamp in stamps]
    columns = {
        **values,
        "epoch_seconds": [stamp.timestamp() for stamp in stamps],
        "utc_offset_minutes": [o.total_seconds() / 60 if o else 0.0 for o in offsets],
    }
    if slow:  # their values as the schema made them (amount: a Decimal; the category: enum)
        fixed = columns_from_transactions([slow[i] for i in rows if i in slow])
        where = [k for k, i in enumerate(rows) if i in slow]
        for name, column in fixed.items():
            for k, value in zip(where, column, strict=True):
                columns[name][k] = value
    order = [*_CANONICAL]
    return CheckedBatch(items, rows, {name: columns[name] for name in order}, dict(slow))


# --------------------------------------------------------------------------- one column each
#: A column's check: its canonical values (None where refused) and the rows it refuses. Each
#: tries the whole column at once (C-speed set, min/max, joined-regex passes) and looks at
#: rows one by one only when that fails.
Check = Callable[[list[Any]], tuple[list[Any], set[int]]]
_NONE: Final = type(None)


def _strings(patterns: tuple[re.Pattern[str], re.Pattern[str]]) -> Check:
    one, joined = patterns

    def check(column: list[Any]) -> tuple[list[Any], set[int]]:
        if set(map(type, column)) == {str}:
            text = "\n".join(column)  # as many lines as values: no value held a newline
            if text.count("\n") == len(column) - 1 and joined.fullmatch(text):
                return column, set()
        return column, {
            i for i, v in enumerate(column) if type(v) is not str or not one.fullmatch(v)
        }

    return check


def _card_ids(column: list[Any]) -> tuple[list[Any], set[int]]:
    column, bad = _strings(_CARDS)(column)
    valid = ("" if i in bad else v for i, v in enumerate(column)) if bad else column
    if _PAN_RUN.search("\n".join(valid).replace("-", "").replace("_", "")):
        bad |= {
            i
            for i, v in enumerate(column)
            if i not in bad and _PAN_RUN.search(v.replace("-", "").replace("_", ""))
        }
    return column, bad


def _amount(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value if 0.0 < value <= _MAX_AMOUNT and round(value, 2) == value else None
    if kind is int:
        return float(value) if 0 < value <= _MAX_AMOUNT else None
    if kind is str and _AMOUNT_TEXT.fullmatch(value):
        return float(value)
    return None


def _amounts(column: list[Any]) -> tuple[list[Any], set[int]]:
    kinds = set(map(type, column))
    if kinds == {str}:
        text = "\n".join(column)
        if text.count("\n") == len(column) - 1 and _AMOUNT_TEXTS.fullmatch(text):
            return list(map(float, column)), set()
    elif (
        kinds == {float}
        and min(column) > 0.0
        and max(column) <= _MAX_AMOUNT
        and list(map(round, column, repeat(2))) == column
    ):
        return column, set()
    values = [_amount(v) for v in column]
    return values, {i for i, v in enumerate(values) if v is None}


def _currencies(column: list[Any]) -> tuple[list[Any], set[int]]:
    if column.count("USD") == len(column):
        return column, set()
    return column, {i for i, v in enumerate(column) if not (type(v) is str and v == "USD")}


def _timestamps(column: list[Any]) -> tuple[list[Any], set[int]]:
    column, bad = _strings(_STAMPS)(column)
    if not bad:
        try:
            return list(map(datetime.fromisoformat, column)), bad
        except ValueError:  # a day its month lacks: find it below
            pass
    stamps: list[Any] = []
    for i, text in enumerate(column):
        try:
            stamps.append(None if i in bad else datetime.fromisoformat(text))
        except ValueError:
            stamps.append(None)
            bad.add(i)
    return stamps, bad


def _categories(column: list[Any]) -> tuple[list[Any], set[int]]:
    if set(map(type, column)) == {str} and _CATEGORY_SET.issuperset(column):
        return column, set()
    return column, {i for i, v in enumerate(column) if type(v) is not str or v not in _CATEGORY_SET}


def _in_range(column: list[Any], kinds: set[type], low: float, high: float) -> bool:
    """Every value of one of `kinds` (None allowed only if listed) and the numbers within."""
    found = set(map(type, column))
    if not found <= kinds:
        return False
    numbers = [v for v in column if v is not None] if _NONE in found else column
    return not numbers or (low <= min(numbers) and max(numbers) <= high)


def _numbers(low: float, high: float, *, optional: bool) -> Check:
    kinds = {float, int, _NONE} if optional else {float, int}

    def check(column: list[Any]) -> tuple[list[Any], set[int]]:
        if _in_range(column, kinds, low, high):
            if int not in set(map(type, column)):
                return column, set()
            return [v if v is None else float(v) for v in column], set()
        values = [
            float(v) if (type(v) is float or type(v) is int) and low <= v <= high else None
            for v in column
        ]
        return values, {
            i for i, (v, out) in enumerate(zip(column, values, strict=True))
            if out is None and not (optional and v is None)
        }  # fmt: skip

    return check


def _counts(high: int) -> Check:
    def check(column: list[Any]) -> tuple[list[Any], set[int]]:
        if _in_range(column, {int, _NONE}, 0, high):
            return column, set()
        return column, {
            i
            for i, v in enumerate(column)
            if v is not None and not (type(v) is int and 0 <= v <= high)
        }

    return check


def _flags(column: list[Any]) -> tuple[list[Any], set[int]]:
    if set(map(type, column)) == {bool}:
        return column, set()
    return column, {i for i, v in enumerate(column) if type(v) is not bool}


#: Field -> its check, in the order of the canonical columns (timestamp gives two).
_CHECKS: Final[tuple[tuple[str, Check], ...]] = (
    ("transaction_id", _strings(_IDS)),
    ("card_id", _card_ids),
    ("amount", _amounts),
    ("currency", _currencies),
    ("timestamp", _timestamps),
    ("merchant_id", _strings(_IDS)),
    ("merchant_category", _categories),
    ("lat", _numbers(-90.0, 90.0, optional=True)),
    ("long", _numbers(-180.0, 180.0, optional=True)),
    ("merch_lat", _numbers(-90.0, 90.0, optional=False)),
    ("merch_long", _numbers(-180.0, 180.0, optional=False)),
    ("card_age_days", _counts(36_500)),
    ("is_foreign", _flags),
    ("customer_age", _counts(120)),
    ("city_pop", _counts(50_000_000)),
)
_CANONICAL: Final = tuple(columns_from_transactions([]))
