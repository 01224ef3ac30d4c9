"""Business rules: each one fires exactly past its boundary; `find_violations` (what scoring
calls) keeps rule order, one transaction or a batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sproxxo.features import columns_from_transactions
from sproxxo.rules import (
    RULE_NAMES,
    RULES,
    amount_over_limit,
    card_older_than_customer,
    customer_age_implausible,
    find_violations,
    null_island,
    timestamp_in_future,
    timestamp_stale,
)
from sproxxo.schemas import EXAMPLE_TRANSACTION, RuleViolation, Transaction

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _tx(**overrides: Any) -> Transaction:
    """A valid transaction stamped one hour before NOW, with overrides."""
    body = {**EXAMPLE_TRANSACTION, "timestamp": (NOW - timedelta(hours=1)).isoformat()}
    body.update(overrides)
    return Transaction.model_validate_json(json.dumps(body))


def _at(delta: timedelta) -> str:
    return (NOW + delta).isoformat()


def check_rules(tx: Transaction, *, now: datetime) -> list[RuleViolation]:
    """The violations of one transaction, through the production path for one."""
    return find_violations(columns_from_transactions([tx]), [tx], now=now)[0]


def test_tx_helper_breaks_no_rule() -> None:
    """The baseline transaction used by the tables breaks no rule."""
    assert check_rules(_tx(), now=NOW) == []


@pytest.mark.parametrize(
    ("amount", "fires"),
    [
        ("9999.99", False),
        ("10000", False),
        ("10000.00", False),
        ("10000.01", True),
        ("999999", True),
    ],
)
def test_amount_over_limit_fires_above_product_limit(amount: str, fires: bool) -> None:
    """amount_over_limit fires strictly above 10 000 and asks for a decline."""
    violation = amount_over_limit(_tx(amount=amount), NOW)
    assert (violation is not None) is fires
    if violation:
        assert (violation.rule, violation.field, violation.severity) == (
            "amount_over_limit",
            "amount",
            "decline",
        )


@pytest.mark.parametrize(
    ("delta", "fires"),
    [
        (timedelta(minutes=5), False),
        (timedelta(minutes=5, seconds=1), True),
        (timedelta(minutes=4, seconds=59), False),
        (timedelta(days=2), True),
        (timedelta(0), False),
    ],
)
def test_timestamp_in_future_fires_beyond_clock_skew(delta: timedelta, fires: bool) -> None:
    """timestamp_in_future tolerates 5 minutes of clock skew and declines beyond it."""
    violation = timestamp_in_future(_tx(timestamp=_at(delta)), NOW)
    assert (violation is not None) is fires
    if violation:
        assert (violation.field, violation.severity) == ("timestamp", "decline")


def test_timestamp_in_future_compares_instants_not_wall_clock() -> None:
    """A local time with an offset is compared as an instant (+02:00 wall clock 13:00 = 11:00Z)."""
    local = "2026-03-10T13:00:00+02:00"
    assert timestamp_in_future(_tx(timestamp=local), NOW) is None


@pytest.mark.parametrize(
    ("delta", "fires"),
    [
        (-timedelta(hours=24), False),
        (-timedelta(hours=24, seconds=1), True),
        (-timedelta(hours=23, minutes=59), False),
        (-timedelta(days=30), True),
    ],
)
def test_timestamp_stale_fires_after_a_day(delta: timedelta, fires: bool) -> None:
    """timestamp_stale asks for review when the authorisation is more than 24 h old."""
    violation = timestamp_stale(_tx(timestamp=_at(delta)), NOW)
    assert (violation is not None) is fires
    if violation:
        assert (violation.field, violation.severity) == ("timestamp", "review")


@pytest.mark.parametrize(
    ("age", "fires"),
    [(13, True), (14, False), (50, False), (100, False), (101, True), (0, True), (120, True)],
)
def test_customer_age_implausible_fires_outside_14_to_100(age: int, fires: bool) -> None:
    """customer_age_implausible fires outside the inclusive range [14, 100]."""
    violation = customer_age_implausible(_tx(customer_age=age, card_age_days=0), NOW)
    assert (violation is not None) is fires
    if violation:
        assert (violation.field, violation.severity) == ("customer_age", "review")


@pytest.mark.parametrize(
    ("customer_age", "card_age_days", "fires"),
    [
        (30, 18 * 366, False),
        (30, 18 * 366 + 1, True),
        (12, 0, False),
        (12, 1, True),
        (10, 0, False),
        (10, 1, True),
    ],
)
def test_card_older_than_customer_fires_when_issued_before_age_12(
    customer_age: int, card_age_days: int, fires: bool
) -> None:
    """card_older_than_customer fires when the card predates the holder's 12th birthday."""
    tx = _tx(customer_age=customer_age, card_age_days=card_age_days)
    violation = card_older_than_customer(tx, NOW)
    assert (violation is not None) is fires
    if violation:
        assert (violation.field, violation.severity) == ("card_age_days", "review")


@pytest.mark.parametrize(
    ("coords", "field"),
    [
        ({"lat": 0.0, "long": 0.0}, "lat"),
        ({"merch_lat": 0.0, "merch_long": 0.0}, "merch_lat"),
        ({"lat": 0.0, "long": 0.0, "merch_lat": 0.0, "merch_long": 0.0}, "lat"),
        ({"lat": 0.0, "long": 0.0001}, None),
        ({"lat": 0.0001, "long": 0.0}, None),
        ({"merch_lat": 0.0, "merch_long": 1.0}, None),
    ],
)
def test_null_island_fires_only_on_exact_zero_pair(
    coords: dict[str, float], field: str | None
) -> None:
    """null_island fires for an exact (0, 0) pair and names the first offending field."""
    violation = null_island(_tx(**coords), NOW)
    assert (violation.field if violation else None) == field
    if violation:
        assert violation.severity == "review"


def test_rules_names_match_module_names() -> None:
    """Each rule is importable under its own name, and RULE_NAMES lists RULES in order."""
    import sproxxo.rules as rules

    assert all(getattr(rules, rule.name) is rule for rule in RULES)
    assert tuple(rule.name for rule in RULES) == RULE_NAMES
    assert len(set(RULE_NAMES)) == len(RULES)


def test_find_violations_batch_equals_one_by_one() -> None:
    """The columnar batch check reports, row by row, exactly what check_rules reports."""
    txs = [
        _tx(),
        _tx(amount="10000.01"),
        _tx(amount="10000.00", customer_age=101, card_age_days=0),
        _tx(timestamp=_at(timedelta(minutes=5, seconds=1))),
        _tx(timestamp=_at(timedelta(minutes=5))),
        _tx(timestamp=_at(-timedelta(hours=24, seconds=1))),
        _tx(timestamp=_at(-timedelta(hours=24))),
        _tx(customer_age=12, card_age_days=1),
        _tx(customer_age=30, card_age_days=18 * 366 + 1),
        _tx(merch_lat=0.0, merch_long=0.0),
        _tx(lat=0.0, long=0.0, merch_lat=0.0, merch_long=0.0, amount="20000.00"),
        _tx(lat=0.0, long=0.0001),
    ]
    batch = find_violations(columns_from_transactions(txs), txs, now=NOW)
    one_by_one = [check_rules(tx, now=NOW) for tx in txs]
    assert batch == one_by_one
    assert sum(map(bool, batch)) == 8


def test_check_rules_returns_every_violation_in_rule_order() -> None:
    """A transaction breaking every rule reports them all, ordered as RULES."""
    tx = _tx(
        amount="20000.00",
        timestamp=_at(timedelta(hours=1)),
        customer_age=13,
        card_age_days=400,
        lat=0.0,
        long=0.0,
    )
    names = [v.rule for v in check_rules(tx, now=NOW)]
    assert names == [
        "amount_over_limit",
        "timestamp_in_future",
        "customer_age_implausible",
        "card_older_than_customer",
        "null_island",
    ]
    stale = _tx(timestamp=_at(-timedelta(days=3)), amount="20000.00")
    assert [v.rule for v in check_rules(stale, now=NOW)] == ["amount_over_limit", "timestamp_stale"]


def test_check_rules_message_names_field_and_value() -> None:
    """A violation's message names the field and the offending value."""
    (violation,) = check_rules(_tx(amount="12345.67"), now=NOW)
    assert "amount" in violation.message
    assert "12345.67" in violation.message
