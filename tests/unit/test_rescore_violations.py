"""Re-scoring words the rule-breaking rows' violations from their `Transaction`, whatever the
frame's column dtypes (pandas nullable integers with missing values included), as the
per-row path did, and refuses a row that is not a transaction without quoting its values."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from sproxxo.errors import DataSourceError
from sproxxo.features import columns_from_transactions, transaction_body
from sproxxo.jobs.rescore import _violations
from sproxxo.rules import RULES
from sproxxo.schemas import Transaction
from tests.helpers import make_transaction


def _frame() -> pd.DataFrame:
    """Four canonical rows, every other one over the product limit; numeric card tokens."""
    bodies = [
        make_transaction(
            transaction_id=f"tx-viol-{i}",
            card_id=f"{10_000_000 + i}",
            amount="12500.00" if i % 2 else "10.00",
        )
        for i in range(4)
    ]
    txs = [Transaction.model_validate_json(orjson.dumps(b)) for b in bodies]
    return pd.DataFrame(columns_from_transactions(txs))


def _per_row(part: pd.DataFrame, broken: np.ndarray, hits: np.ndarray) -> list[list[Any]]:
    """The previous path: `to_dict` rows, one validation each."""
    rows = part.iloc[broken].to_dict("records")
    found = []
    for row, i in zip(rows, broken.tolist(), strict=True):
        tx = Transaction.model_validate_json(
            orjson.dumps(transaction_body({str(k): v for k, v in row.items()}))
        )
        found.append([RULES[k].violation(tx) for k in np.flatnonzero(hits[i])])
    return found


def _hits(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    hits = np.zeros((len(part), len(RULES)), dtype=bool)
    hits[:, [r.name for r in RULES].index("amount_over_limit")] = part["amount"] > 10_000
    return np.flatnonzero(hits.any(axis=1)), hits


@pytest.mark.parametrize(
    "nullable",
    [
        {},
        {"card_id": "Int64", "customer_age": "Int64", "city_pop": "Int64", "lat": "Float64"},
        {"card_age_days": "int64[pyarrow]", "is_foreign": "boolean"},
    ],
)
def test_violations_equal_the_per_row_path_for_nullable_columns(nullable: dict[str, str]) -> None:
    """Nullable columns with a missing value in a row that breaks no rule (which makes
    `to_numpy` turn the whole integer column into floats: card 10000001 into "10000001.0")
    give the same violations as validating row by row."""
    part = _frame()
    part["card_id"] = part["card_id"].astype("int64")
    for name, dtype in nullable.items():
        part[name] = part[name].astype(dtype)
        if name != "is_foreign":
            part.loc[0, name] = pd.NA  # row 0 is within the limit
    broken, hits = _hits(part)
    assert broken.tolist() == [1, 3]
    found = _violations(part, broken=broken, hits=hits)
    assert found == _per_row(part, broken, hits)
    assert [[v.rule for v in vs] for vs in found] == [["amount_over_limit"]] * 2


def test_a_broken_row_that_is_no_transaction_is_refused_without_its_values() -> None:
    """A card number where the token should be: DataSourceError names the row (the frame's
    index label), the field and the rule, and quotes no value."""
    part = _frame().set_index(pd.Index([10, 11, 12, 13]))
    part.loc[13, "card_id"] = "4111111111111111"
    broken, hits = _hits(part)
    with pytest.raises(DataSourceError) as refused:
        _violations(part, broken=broken, hits=hits)
    message = str(refused.value)
    assert message.startswith("row 13: card_id: ")
    assert "no_pan" in message
    assert "4111" not in message
