"""Assess transactions: rules, risk indicators, model probability, decision."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from sproxxo.bundle import ModelBundle
from sproxxo.features import Derived, columns_from_transactions, derive
from sproxxo.policy import decide, reason_codes
from sproxxo.risk import INDICATORS, indicator_values
from sproxxo.rules import check_rules
from sproxxo.schemas import Assessment, Indicator, RiskBreakdown, Transaction


def assess(
    transactions: Sequence[Transaction], bundle: ModelBundle, *, now: datetime
) -> tuple[list[Assessment], Derived]:
    """Score validated transactions in one model call; also returns the derived features."""
    derived = derive(columns_from_transactions(transactions))
    probabilities = bundle.predict_matrix(derived.matrix)
    values = indicator_values(derived.inputs)
    policy = bundle.metadata.policy
    results = []
    for i, tx in enumerate(transactions):
        violations = check_rules(tx, now=now)
        p = float(probabilities[i])
        fired = derived.fired[i]
        results.append(
            Assessment(
                transaction_id=tx.transaction_id,
                valid=not violations,
                violations=violations,
                risk=RiskBreakdown(
                    score=float(derived.risk_score[i]),
                    indicators=[
                        Indicator(
                            name=spec.name,
                            fired=bool(fired[k]),
                            weight=spec.weight,
                            value=float(np.round(values[i, k], 4)),
                        )
                        for k, spec in enumerate(INDICATORS)
                    ],
                ),
                fraud_probability=p,
                decision=decide(p, violations, policy),
                reason_codes=reason_codes(p, fired, violations, policy),
                model_tag=bundle.tag,
            )
        )
    return results, derived
