"""Assess transactions: rules, risk indicators, model probability, decision.

`score` works column-wise (one feature pass, one model call) and keeps its results as
arrays; `Scored.records()` turns them into JSON-ready dicts shaped like `Assessment`
without building a pydantic object per row, which is what makes 1,000-transaction
batches cheap (a test checks that every record validates as an `Assessment`). Reviews,
declines and the transactions whose caller asked are explained in one more model call over
their rows (`sproxxo.explanations`); approves cost nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from sproxxo.explanations import (
    Contributions,
    Explained,
    explanation_blocks,
    model_reason_codes,
    rows_to_explain,
)
from sproxxo.features import (
    FEATURE_NAMES,
    Derived,
    columns_from_transactions,
    derive,
    numeric_columns,
)
from sproxxo.history import HISTORY_FEATURES
from sproxxo.policy import Policy, decide_all, with_model_codes
from sproxxo.risk import INDICATORS
from sproxxo.rules import find_violations
from sproxxo.schemas import Decision, RuleViolation, Transaction

_NAMES_WEIGHTS = [(spec.name, spec.weight) for spec in INDICATORS]
_HISTORY_COLUMNS: Final = [
    FEATURE_NAMES.index(name)
    for name in (
        "card_tx_1h",
        "card_tx_24h",
        "card_amount_24h",
        "card_seconds_since_last",
        "amount_to_card_mean",
    )
]


class Model(Protocol):
    """What scoring needs of a model: a tag, its decision policy and probabilities for a
    feature matrix (`sproxxo.ml.bundle.ModelBundle` is one)."""

    @property
    def tag(self) -> str:
        """The model's store tag (`name:version`)."""

    @property
    def policy(self) -> Policy:
        """The thresholds chosen at training, travelling with the model."""

    def predict_matrix(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated P(fraud) for each row of a `build_features` matrix."""

    def explain_matrix(self, matrix: npt.NDArray[np.float64]) -> Contributions | None:
        """Each row's feature contributions to the raw score; None when the model cannot
        explain itself."""


@dataclass(frozen=True)
class Scored:
    """Column-wise outcome of one model call over a list of transactions."""

    transactions: Sequence[Transaction]
    columns: dict[str, list[Any]]
    derived: Derived
    probabilities: npt.NDArray[np.float64]
    violations: list[list[RuleViolation]]
    decisions: list[Decision]
    reasons: list[list[str]]
    model_tag: str
    explained: Explained | None = None

    def history(self) -> list[dict[str, Any] | str]:
        """The `history` block of each answer: the card's recent use, or `unavailable`
        where the store could not answer (every history feature NaN)."""
        h = self.derived.matrix[:, _HISTORY_COLUMNS]
        missing = np.isnan(h[:, 0]).tolist()
        rows = np.round(h, 3).tolist()
        return [
            "unavailable"
            if gone
            else {
                "tx_1h": int(row[0]),
                "tx_24h": int(row[1]),
                "amount_24h": row[2],
                "seconds_since_last": None if row[3] != row[3] else row[3],
                "amount_to_card_mean": None if row[4] != row[4] else row[4],
            }
            for gone, row in zip(missing, rows, strict=True)
        ]

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per transaction, with exactly `Assessment`'s fields; only
        the explained ones carry `explanation` (absent, not null: BentoML 1.4.40 documents
        the /predict answer with the field's first type only, `_flatten_field`)."""
        n, k = self.derived.fired.shape
        # Every indicator entry in one flat pass, then k per transaction.
        flat = [
            {"name": name, "fired": fired, "weight": weight, "value": value}
            for (name, weight), fired, value in zip(
                _NAMES_WEIGHTS * n,
                self.derived.fired.ravel().tolist(),
                _known(np.round(self.derived.values, 4).ravel()),
                strict=True,
            )
        ]
        records = [
            {
                "transaction_id": tx_id,
                "valid": not broken,
                "violations": [v.model_dump() for v in broken] if broken else [],
                "risk": {"score": risk, "indicators": flat[start : start + k]},
                "fraud_probability": p,
                "decision": decision,  # a StrEnum: serialised as its value
                "reason_codes": codes,
                "model_tag": self.model_tag,
                "history": history,
            }
            for tx_id, broken, risk, start, p, decision, codes, history in zip(
                self.columns["transaction_id"],
                self.violations,
                self.derived.risk_score.tolist(),
                range(0, n * k, k),
                self.probabilities.tolist(),
                self.decisions,
                self.reasons,
                self.history(),
                strict=True,
            )
        ]
        for row, block in explanation_blocks(self.explained, self.derived.matrix).items():
            records[row]["explanation"] = block
        return records


def score(
    transactions: Sequence[Transaction],
    model: Model,
    *,
    now: datetime,
    columns: dict[str, list[Any]] | None = None,
    history: npt.NDArray[np.float64] | Sequence[Sequence[float]] | None = None,
    explain: Sequence[bool] | bool = False,
) -> Scored:
    """Rules, features, one model call and the decision policy for validated transactions,
    and the explanations of reviews, declines and the rows of `explain` (all when True).

    `columns`: their canonical columns if already made; `history`: each transaction's
    history features (`sproxxo.history`, from the store: a row each), None scores them as
    unknown."""
    columns = columns if columns is not None else columns_from_transactions(transactions)
    if history is not None:
        matrix = np.asarray(history, dtype=np.float64).reshape(-1, len(HISTORY_FEATURES))
        for k, name in enumerate(HISTORY_FEATURES):
            columns[name] = matrix[:, k].tolist()
    numeric = numeric_columns(columns)  # read by the features and by the rules
    derived = derive(columns, numeric=numeric)
    probabilities = model.predict_matrix(derived.matrix)
    violations = find_violations(columns, transactions, now=now, numeric=numeric)
    decisions, reasons = decide_all(probabilities, derived.fired, violations, model.policy)
    explained, reasons = explain_decisions(
        model, derived.matrix, decisions, reasons, requested=explain
    )
    return Scored(
        transactions,
        columns,
        derived,
        probabilities,
        violations,
        decisions,
        reasons,
        model.tag,
        explained,
    )


def explain_decisions(
    model: Model,
    matrix: npt.NDArray[np.float64],
    decisions: Sequence[str],
    reasons: list[list[str]],
    *,
    requested: Sequence[bool] | bool = False,
) -> tuple[Explained | None, list[list[str]]]:
    """The explanations of the rows to explain (reviews, declines, requested) in one model
    call, and the reason codes with the model-driven codes in the model's place (a new
    list; `reasons` is not changed). None and `reasons` when there is nothing to explain or
    the model cannot explain."""
    rows = rows_to_explain(decisions, requested)
    found = model.explain_matrix(matrix[rows]) if len(rows) else None
    if found is None:
        return None, reasons
    codes = list(reasons)
    for row, model_codes in zip(rows.tolist(), model_reason_codes(found.by_feature), strict=True):
        codes[row] = with_model_codes(codes[row], model_codes)
    return Explained(rows, found), codes


def _known(values: npt.NDArray[np.float64]) -> list[float | None]:
    """The values as Python floats, None for a missing (NaN) quantity, which JSON cannot
    carry (one pass in numpy, not a call per value)."""
    known: npt.NDArray[np.object_] = values.astype(object)
    known[np.isnan(values)] = None
    listed: list[float | None] = known.tolist()
    return listed
