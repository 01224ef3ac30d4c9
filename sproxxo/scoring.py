"""Assess transactions: rules, risk indicators, model probability, decision.

`score` works column-wise (one feature pass, one model call) and keeps its results as
arrays; `Scored.records()` turns them into JSON-ready dicts shaped like `Assessment`
without building a pydantic object per row, which is what makes 1,000-transaction
batches cheap (a test checks that every record validates as an `Assessment`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from sproxxo.bundle import ModelBundle
from sproxxo.features import Derived, columns_from_transactions, derive
from sproxxo.policy import decide_all
from sproxxo.risk import INDICATORS
from sproxxo.rules import find_violations
from sproxxo.schemas import Decision, RuleViolation, Transaction

_NAMES_WEIGHTS = [(spec.name, spec.weight) for spec in INDICATORS]


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

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per transaction, with exactly `Assessment`'s fields."""
        n, k = self.derived.fired.shape
        # Every indicator entry in one flat pass, then k per transaction.
        flat = [
            {"name": name, "fired": fired, "weight": weight, "value": value}
            for (name, weight), fired, value in zip(
                _NAMES_WEIGHTS * n,
                self.derived.fired.ravel().tolist(),
                np.round(self.derived.values, 4).ravel().tolist(),
                strict=True,
            )
        ]
        return [
            {
                "transaction_id": tx.transaction_id,
                "valid": not broken,
                "violations": [v.model_dump() for v in broken] if broken else [],
                "risk": {"score": risk, "indicators": flat[start : start + k]},
                "fraud_probability": p,
                "decision": decision,  # a StrEnum: serialised as its value
                "reason_codes": codes,
                "model_tag": self.model_tag,
            }
            for tx, broken, risk, start, p, decision, codes in zip(
                self.transactions,
                self.violations,
                self.derived.risk_score.tolist(),
                range(0, n * k, k),
                self.probabilities.tolist(),
                self.decisions,
                self.reasons,
                strict=True,
            )
        ]


def score(transactions: Sequence[Transaction], bundle: ModelBundle, *, now: datetime) -> Scored:
    """Rules, features, one model call and the decision policy for validated transactions."""
    columns = columns_from_transactions(transactions)
    derived = derive(columns)
    probabilities = bundle.predict_matrix(derived.matrix)
    violations = find_violations(columns, transactions, now=now)
    decisions, reasons = decide_all(
        probabilities, derived.fired, violations, bundle.metadata.policy
    )
    return Scored(
        transactions, columns, derived, probabilities, violations, decisions, reasons, bundle.tag
    )
