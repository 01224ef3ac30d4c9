"""Business-rule validation beyond types.

The schema (`Transaction`) refuses what is malformed; these rules flag what is well-formed
but against policy or implausible. A violation does not stop scoring: it comes back with
the assessment and moves the decision (see `sproxxo.policy.decide`).

Each rule's test is written once over the numeric canonical columns (`numeric_columns`):
Python floats for one transaction, numpy arrays for a batch, so a batch of a thousand is
checked in a few array operations. Messages are built only for the transactions that break
a rule, from the validated `Transaction`, so they show the value exactly as it was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import numpy as np

from sproxxo.features import Columns, columns_from_transactions, numeric_columns
from sproxxo.schemas import RuleViolation, Transaction

PRODUCT_AMOUNT_LIMIT: Final = Decimal("10000")
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
MAX_AUTHORISATION_AGE: Final = timedelta(hours=24)
PLAUSIBLE_AGE: Final = (14, 100)
MIN_CARDHOLDER_AGE_AT_ISSUE: Final = 12

# Amounts have at most 2 decimals and timestamps are instants: compared as float64 these
# bounds give exactly the Decimal / datetime verdicts (whole seconds and cents).
_LIMIT: Final = float(PRODUCT_AMOUNT_LIMIT)
_SKEW_SECONDS: Final = MAX_CLOCK_SKEW.total_seconds()
_AGE_SECONDS: Final = MAX_AUTHORISATION_AGE.total_seconds()

Severity = Literal["review", "decline"]


@dataclass(frozen=True)
class Rule:
    """One business rule: its test over numeric columns and the violation it reports."""

    name: str
    severity: Severity
    breaks: Callable[[Mapping[str, Any], Any], Any]  # (columns, now: epoch s, or one per row)
    explain: Callable[[Transaction], tuple[str, str]]  # -> (field, message)

    def violation(self, tx: Transaction) -> RuleViolation:
        """The violation this rule reports for a transaction that breaks it."""
        field, message = self.explain(tx)
        return RuleViolation(rule=self.name, field=field, message=message, severity=self.severity)

    def __call__(self, tx: Transaction, now: datetime) -> RuleViolation | None:
        """This rule's violation by one transaction, or None."""
        return self.violation(tx) if self.breaks(_one(tx), now.timestamp()) else None


def _one(tx: Transaction) -> dict[str, float]:
    return numeric_columns(columns_from_transactions([tx]))


def _explain_null_island(tx: Transaction) -> tuple[str, str]:
    field = "lat" if tx.lat == 0.0 and tx.long == 0.0 else "merch_lat"
    return field, f"{field}/{field.replace('lat', 'long')} are (0, 0): location missing"


amount_over_limit: Final = Rule(
    "amount_over_limit",
    "decline",
    lambda c, now: c["amount"] > _LIMIT,
    lambda tx: (
        "amount",
        f"amount {tx.amount} exceeds the product limit {PRODUCT_AMOUNT_LIMIT}",
    ),
)
"""A single authorisation above the product limit is declined."""

timestamp_in_future: Final = Rule(
    "timestamp_in_future",
    "decline",
    lambda c, now: c["epoch_seconds"] > now + _SKEW_SECONDS,
    lambda tx: ("timestamp", f"timestamp {tx.timestamp.isoformat()} is in the future"),
)
"""An authorisation stamped later than now plus clock skew is declined."""

timestamp_stale: Final = Rule(
    "timestamp_stale",
    "review",
    lambda c, now: c["epoch_seconds"] < now - _AGE_SECONDS,
    lambda tx: ("timestamp", f"timestamp {tx.timestamp.isoformat()} is older than 24 hours"),
)
"""An authorisation older than a day is a replay or a batch upload: review it."""

customer_age_implausible: Final = Rule(
    "customer_age_implausible",
    "review",
    lambda c, now: (c["customer_age"] < PLAUSIBLE_AGE[0]) | (c["customer_age"] > PLAUSIBLE_AGE[1]),
    lambda tx: (
        "customer_age",
        f"customer_age {tx.customer_age} is outside [{PLAUSIBLE_AGE[0]}, {PLAUSIBLE_AGE[1]}]",
    ),
)
"""Cardholders are between 14 and 100 years old."""

card_older_than_customer: Final = Rule(
    "card_older_than_customer",
    "review",
    # card_age > max(age - 12, 0) * 366, written without max() so arrays work too.
    lambda c, now: (
        (c["card_age_days"] > 0)
        & (c["card_age_days"] > (c["customer_age"] - MIN_CARDHOLDER_AGE_AT_ISSUE) * 366)
    ),
    lambda tx: (
        "card_age_days",
        f"card_age_days {tx.card_age_days} is impossible for customer_age {tx.customer_age}",
    ),
)
"""A card cannot have been issued before the cardholder was 12."""

null_island: Final = Rule(
    "null_island",
    "review",
    lambda c, now: (
        ((c["lat"] == 0.0) & (c["long"] == 0.0))
        | ((c["merch_lat"] == 0.0) & (c["merch_long"] == 0.0))
    ),
    _explain_null_island,
)
"""(0, 0) coordinates are a missing-value placeholder, not a location."""

RULES: Final[tuple[Rule, ...]] = (
    amount_over_limit,
    timestamp_in_future,
    timestamp_stale,
    customer_age_implausible,
    card_older_than_customer,
    null_island,
)
RULE_NAMES: Final = tuple(rule.name for rule in RULES)


def find_violations(
    columns: Columns,
    transactions: Sequence[Transaction],
    *,
    now: datetime,
    numeric: Mapping[str, Any] | None = None,
) -> list[list[RuleViolation]]:
    """Every rule each transaction breaks, in rule order (`columns` describe them;
    `numeric`: their `numeric_columns` when the caller made them already)."""
    numeric = numeric if numeric is not None else numeric_columns(columns)
    verdicts = [rule.breaks(numeric, now.timestamp()) for rule in RULES]
    if len(transactions) == 1:
        return [
            [r.violation(transactions[0]) for r, hit in zip(RULES, verdicts, strict=True) if hit]
        ]
    hits = np.column_stack(verdicts)
    found: list[list[RuleViolation]] = [[] for _ in range(len(transactions))]
    for i in np.flatnonzero(hits.any(axis=1)).tolist():
        found[i] = [RULES[k].violation(transactions[i]) for k in np.flatnonzero(hits[i])]
    return found
