"""Business-rule validation beyond types.

The schema (`Transaction`) refuses what is malformed; these rules flag what is well-formed
but against policy or implausible. A violation does not stop scoring: it comes back with
the assessment and moves the decision (see `sproxxo.policy.decide`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from sproxxo.schemas import RuleViolation, Transaction

PRODUCT_AMOUNT_LIMIT: Final = Decimal("10000")
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
MAX_AUTHORISATION_AGE: Final = timedelta(hours=24)
PLAUSIBLE_AGE: Final = (14, 100)
MIN_CARDHOLDER_AGE_AT_ISSUE: Final = 12

Rule = Callable[[Transaction, datetime], RuleViolation | None]


def amount_over_limit(tx: Transaction, now: datetime) -> RuleViolation | None:
    """A single authorisation above the product limit is declined."""
    if tx.amount > PRODUCT_AMOUNT_LIMIT:
        return RuleViolation(
            rule="amount_over_limit",
            field="amount",
            message=f"amount {tx.amount} exceeds the product limit {PRODUCT_AMOUNT_LIMIT}",
            severity="decline",
        )
    return None


def timestamp_in_future(tx: Transaction, now: datetime) -> RuleViolation | None:
    """An authorisation stamped later than now plus clock skew is declined."""
    if tx.timestamp > now + MAX_CLOCK_SKEW:
        return RuleViolation(
            rule="timestamp_in_future",
            field="timestamp",
            message=f"timestamp {tx.timestamp.isoformat()} is in the future",
            severity="decline",
        )
    return None


def timestamp_stale(tx: Transaction, now: datetime) -> RuleViolation | None:
    """An authorisation older than a day is a replay or a batch upload: review it."""
    if tx.timestamp < now - MAX_AUTHORISATION_AGE:
        return RuleViolation(
            rule="timestamp_stale",
            field="timestamp",
            message=f"timestamp {tx.timestamp.isoformat()} is older than 24 hours",
            severity="review",
        )
    return None


def customer_age_implausible(tx: Transaction, now: datetime) -> RuleViolation | None:
    """Cardholders are between 14 and 100 years old."""
    low, high = PLAUSIBLE_AGE
    if not low <= tx.customer_age <= high:
        return RuleViolation(
            rule="customer_age_implausible",
            field="customer_age",
            message=f"customer_age {tx.customer_age} is outside [{low}, {high}]",
            severity="review",
        )
    return None


def card_older_than_customer(tx: Transaction, now: datetime) -> RuleViolation | None:
    """A card cannot have been issued before the cardholder was 12."""
    max_days = max(tx.customer_age - MIN_CARDHOLDER_AGE_AT_ISSUE, 0) * 366
    if tx.card_age_days > max_days:
        return RuleViolation(
            rule="card_older_than_customer",
            field="card_age_days",
            message=(
                f"card_age_days {tx.card_age_days} is impossible for customer_age {tx.customer_age}"
            ),
            severity="review",
        )
    return None


def null_island(tx: Transaction, now: datetime) -> RuleViolation | None:
    """(0, 0) coordinates are a missing-value placeholder, not a location."""
    for field, lat, lon in (("lat", tx.lat, tx.long), ("merch_lat", tx.merch_lat, tx.merch_long)):
        if lat == 0.0 and lon == 0.0:
            return RuleViolation(
                rule="null_island",
                field=field,
                message=f"{field}/{field.replace('lat', 'long')} are (0, 0): location missing",
                severity="review",
            )
    return None


RULES: Final[tuple[Rule, ...]] = (
    amount_over_limit,
    timestamp_in_future,
    timestamp_stale,
    customer_age_implausible,
    card_older_than_customer,
    null_island,
)
RULE_NAMES: Final = (
    "amount_over_limit",
    "timestamp_in_future",
    "timestamp_stale",
    "customer_age_implausible",
    "card_older_than_customer",
    "null_island",
)


def check_rules(tx: Transaction, *, now: datetime) -> list[RuleViolation]:
    """Every business rule the transaction breaks, in rule order."""
    return [v for rule in RULES if (v := rule(tx, now)) is not None]
