"""The batch fast path (sproxxo.columnar): column-wise checks that agree with the schema."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from sproxxo.columnar import check_batch
from sproxxo.features import columns_from_transactions
from sproxxo.schemas import MAX_BATCH_ITEMS, BatchRequest, Transaction
from tests.helpers import make_transaction

#: Values a field may take in the fuzz below: valid ones (in several JSON spellings),
#: values the fast checks leave to the schema (5.0 as a count, 0.07 as a float), and
#: values the schema refuses.
VALUES: dict[str, list[Any]] = {
    "transaction_id": ["tx-1", "a" * 64, "tx:1.2-3_4", "", "a" * 65, "x\ny", "tx 1", 5, None],
    "card_id": [
        "card_ab12cd34ef",
        "tok_1234-5678-9012",
        "a" * 64,
        "card_1234567890123",
        "card-1234-5678-9012-3",
        "abc",
        "card\nabc_xyz",
        "cärd_abcdef",
        "card_١٢٣٤٥٦٧٨٩٠١٢٣٤",
        "a" * 65,
        7,
    ],
    "amount": [
        "42.50",
        "0.01",
        "0.1",
        "999999.99",
        12.5,
        99999.99,
        0.07,
        1,
        1000000,
        1000000.0,
        "1000000",
        "1000000.00",
        " 4.5",
        "4.500",
        "01.5",
        "1e1",
        "١٢",
        4.005,
        1e-05,
        0,
        -1,
        1000000.01,
        True,
        None,
        [1],
    ],
    "currency": ["USD", "usd", None],
    "timestamp": [
        "2026-11-28T14:05:00-06:00",
        "2026-01-01T00:00:00.5+05:30",
        "2026-01-01T00:00:00.000001+14:00",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00-00:00",
        "2001-01-01T00:00:00+23:59",
        "2099-12-31T23:59:59-23:59",
        "2000-12-31T23:00:00-05:00",
        "1999-12-31T23:00:00-05:00",
        "2100-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T00:00:00.1234567Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",
        "2026-01-01t00:00:00z",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00Z",
        "20260101T000000Z",
        1_764_000_000,
    ],
    "merchant_id": ["m-000123", "", "m 1"],
    "merchant_category": ["grocery_pos", "travel", "Travel", 5, None, {"a": 1}],
    "lat": [19.43, 5, 90, -90.0, 0, 90.0001, True, "5", None],
    "long": [-99.13, 180, -180.0, 180.5, None],
    "merch_lat": [19.44, 0.0, 90.5, None, "1"],
    "merch_long": [-99.14, 180, -180.1, None],
    "card_age_days": [420, 0, 36_500, 30.0, 36_501, -1, 30.5, True, "1", None],
    "is_foreign": [False, True, 0, "true", None],
    "customer_age": [34, 120, 30.0, 121, -1, None, 2**64 - 1, -(2**63), 1e18],
    "city_pop": [9_209_944, 50_000_000, 50_000_001, 1.0, None],
}


def _schema_view(body: dict[str, Any]) -> tuple[list[Any], list[int], dict[str, list[Any]]]:
    """What the per-item schema makes of a batch body: items, valid rows, their columns."""
    items = BatchRequest.model_validate_json(json.dumps(body)).transactions
    rows = [i for i, item in enumerate(items) if isinstance(item, Transaction)]
    return items, rows, columns_from_transactions([items[i] for i in rows])


def _assert_same(body: dict[str, Any]) -> int:
    """The checked batch reads exactly as the schema's: rows, columns (values and types),
    items; returns how many rows were valid."""
    items, rows, columns = _schema_view(body)
    checked = check_batch(orjson.loads(json.dumps(body)))
    assert checked is not None
    assert checked.rows == rows
    assert list(checked.columns) == list(columns)
    for name, expected in columns.items():
        got = checked.columns[name]
        assert [type(v) for v in got] == [type(v) for v in expected], name
        assert got == expected, name
    assert list(checked) == list(items)
    return len(rows)


def test_check_batch_reads_a_valid_batch_as_the_schema_does() -> None:
    """Valid items in several spellings: every row valid, the same columns and items."""
    rng = random.Random(3)
    items = [
        make_transaction(
            transaction_id=f"tx-{i}",
            amount=rng.choice([f"{rng.uniform(0.01, 5000):.2f}", round(rng.uniform(1, 900), 2)]),
            timestamp=f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T1{rng.randint(0, 9)}:"
            f"0{rng.randint(0, 9)}:3{rng.randint(0, 9)}.{rng.randint(0, 999):03d}"
            f"{rng.choice(['Z', '-06:00', '+05:30'])}",
            lat=rng.choice([None, 19.43, 19]),
        )
        for i in range(300)
    ]
    assert _assert_same({"transactions": items}) == 300


@pytest.mark.parametrize("name", sorted(VALUES))
def test_check_batch_agrees_with_the_schema_on_each_edge_value(name: str) -> None:
    """One field at a time through every edge value, beside valid items: the same rows
    valid, the same values, the same refusals."""
    items = [make_transaction(transaction_id=f"tx-{k}") for k in range(3)]
    for k, value in enumerate(VALUES[name]):
        items.append(make_transaction(**{"transaction_id": f"tx-e{k}", name: value}))
        items.append(make_transaction(transaction_id=f"tx-v{k}"))
    assert 0 < _assert_same({"transactions": items}) < len(items)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_check_batch_agrees_with_the_schema_on_batches_of_one(name: str) -> None:
    """Each edge value as the only item of a batch (no valid row to lean on), then two
    empty objects."""
    for value in VALUES[name]:
        _assert_same({"transactions": [make_transaction(**{name: value})]})
    _assert_same({"transactions": [{}, {}]})


def test_check_batch_agrees_with_the_schema_on_random_items() -> None:
    """2,000 items of random edge values, some fields left out, some items not objects."""
    rng = random.Random(11)
    items: list[Any] = []
    for k in range(2_000):
        item = make_transaction(transaction_id=f"tx-{k}")
        for name in rng.sample(sorted(VALUES), rng.choice([0, 0, 1, 1, 2])):
            item[name] = rng.choice(VALUES[name])
        if rng.random() < 0.05:
            item.pop(rng.choice(sorted(item)))
        if rng.random() < 0.01:
            item["device"] = "ios"
        items.append(item if rng.random() > 0.005 else rng.choice([[item], "tx", None]))
    for start in range(0, len(items), MAX_BATCH_ITEMS):
        assert _assert_same({"transactions": items[start : start + MAX_BATCH_ITEMS]}) > 0


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_check_batch_leaves_an_integer_beyond_64_bits_to_the_schema(value: int) -> None:
    """orjson makes such an integer a float: the schema's own parse keeps it an integer
    (and its error says so), so the batch is left to it."""
    items = [make_transaction(), make_transaction(customer_age=value)]
    assert check_batch(orjson.loads(json.dumps({"transactions": items}))) is None
    assert check_batch({"transactions": items[:1]}) is not None


@pytest.mark.parametrize(
    "body",
    [
        [make_transaction()],
        {"transactions": []},
        {"transactions": [make_transaction()] * (MAX_BATCH_ITEMS + 1)},
        {"transactions": make_transaction()},
        {"transactions": [make_transaction()], "extra": 1},
        {"items": [make_transaction()]},
    ],
)
def test_check_batch_leaves_a_body_that_is_not_a_batch_to_the_schema(body: Any) -> None:
    """Not `{"transactions": [1-1000 items]}`: None (the schema names what is wrong)."""
    assert check_batch(body) is None


def test_checked_batch_makes_a_transaction_only_when_one_is_read() -> None:
    """No `Transaction` is built for fast rows until read; then it is the schema's."""
    items = [make_transaction(transaction_id=f"tx-{k}") for k in range(4)]
    checked = check_batch({"transactions": items})
    assert checked is not None
    assert checked._made == {}
    assert checked.valid[2] == Transaction.model_validate_json(orjson.dumps(items[2]))
    assert list(checked._made) == [2]
    assert [tx.transaction_id for tx in checked.valid[1:3]] == ["tx-1", "tx-2"]
