"""The `Transaction` schema: strict JSON validation that names the field and the rule."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from sproxxo.features import PROFILE_COLUMNS
from sproxxo.schemas import EXAMPLE_TRANSACTION, Transaction


def _json(overrides: dict[str, Any], *, literals: dict[str, str] | None = None) -> str:
    """The example transaction with `overrides`, as JSON; `literals` splice raw JSON tokens."""
    body = json.dumps({**EXAMPLE_TRANSACTION, **overrides})
    for field, token in (literals or {}).items():
        body = body.replace(f'"{field}": "__raw__"', f'"{field}": {token}')
    return body


def test_transaction_example_is_valid() -> None:
    """The documented example transaction validates and keeps its values."""
    tx = Transaction.model_validate_json(json.dumps(EXAMPLE_TRANSACTION))
    assert tx.amount == Decimal("42.50")
    assert tx.timestamp.utcoffset() is not None
    assert tx.timestamp.utcoffset().total_seconds() == -6 * 3600


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"amount": "12.5"}, Decimal("12.5")),
        ({"amount": 12.5}, Decimal("12.5")),
        ({"amount": 12}, Decimal("12")),
        ({"amount": "0.01"}, Decimal("0.01")),
        ({"amount": "1000000"}, Decimal("1000000")),
    ],
)
def test_transaction_accepts_amount_as_string_or_number(
    overrides: dict[str, Any], expected: Decimal
) -> None:
    """A positive amount with at most 2 decimals is accepted as a JSON string or number."""
    assert Transaction.model_validate_json(_json(overrides)).amount == expected


@pytest.mark.parametrize(
    ("overrides", "literals", "field", "rule"),
    [
        ({"amount": False}, None, "amount", "decimal_type"),
        ({"amount": "0"}, None, "amount", "greater_than"),
        ({"amount": "0.00"}, None, "amount", "greater_than"),
        ({"amount": "-5.00"}, None, "amount", "greater_than"),
        ({"amount": "1000000.01"}, None, "amount", "less_than_equal"),
        ({"amount": "1e12"}, None, "amount", "less_than_equal"),
        ({"amount": "12.345"}, None, "amount", "decimal_max_places"),
        ({"amount": "__raw__"}, {"amount": "NaN"}, "amount", "finite_number"),
        ({"lat": "__raw__"}, {"lat": "NaN"}, "lat", "finite_number"),
        ({"long": "__raw__"}, {"long": "Infinity"}, "long", "finite_number"),
        ({"merch_long": "__raw__"}, {"merch_long": "-Infinity"}, "merch_long", "finite_number"),
        ({"lat": 91}, None, "lat", "less_than_equal"),
        ({"lat": -90.5}, None, "lat", "greater_than_equal"),
        ({"merch_long": 180.1}, None, "merch_long", "less_than_equal"),
        ({"lat": "19.4"}, None, "lat", "float_type"),
        ({"timestamp": "2026-01-05T10:00:00"}, None, "timestamp", "timezone_aware"),
        ({"timestamp": "1900-01-01T00:00:00Z"}, None, "timestamp", "value_error"),
        ({"timestamp": "1999-12-31T23:59:59Z"}, None, "timestamp", "value_error"),
        ({"timestamp": "2100-01-01T00:00:00Z"}, None, "timestamp", "value_error"),
        ({"timestamp": "not a time"}, None, "timestamp", "datetime_parsing"),
        ({"merchant_category": "crypto_exchange"}, None, "merchant_category", "enum"),
        ({"merchant_category": "GROCERY_POS"}, None, "merchant_category", "enum"),
        ({"currency": "EUR"}, None, "currency", "literal_error"),
        ({"card_id": "4111111111111111"}, None, "card_id", "value_error"),
        ({"card_id": "tok_4111111111111111_x"}, None, "card_id", "value_error"),
        ({"card_id": "short"}, None, "card_id", "string_too_short"),
        ({"card_id": "card 1234 abc"}, None, "card_id", "string_pattern_mismatch"),
        ({"transaction_id": ""}, None, "transaction_id", "string_too_short"),
        ({"is_foreign": "false"}, None, "is_foreign", "bool_type"),
        ({"is_foreign": 0}, None, "is_foreign", "bool_type"),
        ({"customer_age": "34"}, None, "customer_age", "int_type"),
        ({"customer_age": 34.5}, None, "customer_age", "int_type"),
        ({"customer_age": 121}, None, "customer_age", "less_than_equal"),
        ({"card_age_days": -1}, None, "card_age_days", "greater_than_equal"),
        ({"city_pop": 50_000_001}, None, "city_pop", "less_than_equal"),
        ({"device": "ios"}, None, "device", "extra_forbidden"),
    ],
)
def test_transaction_refuses_malformed_field(
    overrides: dict[str, Any], literals: dict[str, str] | None, field: str, rule: str
) -> None:
    """A malformed value is refused with an error whose loc names the field and type the rule."""
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate_json(_json(overrides, literals=literals))
    errors = info.value.errors()
    assert [(err["loc"], err["type"]) for err in errors] == [((field,), rule)]


@pytest.mark.parametrize(
    ("timestamp", "rule_in_message"),
    [
        ("1900-01-01T00:00:00Z", "timestamp_range"),
        ("2100-01-01T00:00:00Z", "timestamp_range"),
    ],
)
def test_transaction_timestamp_error_names_rule(timestamp: str, rule_in_message: str) -> None:
    """An absurd timestamp's message names the timestamp_range rule."""
    with pytest.raises(ValidationError, match=rule_in_message):
        Transaction.model_validate_json(_json({"timestamp": timestamp}))


@pytest.mark.parametrize(
    "card_id",
    [
        "4111111111111111",
        "card_4111-1111-1111-1111",
        "card_4111_1111_1111_1111",
        "tok-5500-0000-0000-0004-x",
        "c_378282246310005",  # 15-digit Amex
        "id_4111111111111_1111111",  # 13 digits joined by an underscore, 20 in all
    ],
)
def test_transaction_pan_error_names_rule(card_id: str) -> None:
    """A card_id holding a card number, separators or not, is refused naming no_pan."""
    with pytest.raises(ValidationError, match="no_pan"):
        Transaction.model_validate_json(_json({"card_id": card_id}))


@pytest.mark.parametrize(
    "card_id", ["card_ab12cd34ef", "card_2219d49c8078", "tok_1234-5678-9012", "c-123456789012"]
)
def test_transaction_accepts_tokens_with_short_digit_runs(card_id: str) -> None:
    """Tokens whose digits (separators removed) stay under 13 in a row are accepted."""
    assert Transaction.model_validate_json(_json({"card_id": card_id})).card_id == card_id


def test_card_id_documented_pattern_agrees_with_the_validator() -> None:
    """The JSON Schema pattern (for clients and the fuzzer) refuses the same card numbers."""
    pattern = re.compile(Transaction.model_json_schema()["properties"]["card_id"]["pattern"])
    assert not pattern.match("card_4111-1111-1111-1111")
    assert pattern.match("tok_1234-5678-9012")


@pytest.mark.parametrize(
    "timestamp", ["2000-01-01T00:00:00Z", "2099-12-31T12:00:00Z", "2026-01-05T03:00:00+05:30"]
)
def test_transaction_accepts_timestamp_inside_range(timestamp: str) -> None:
    """Aware timestamps from 2000-01-01 up to the end of 2099 are accepted."""
    assert Transaction.model_validate_json(_json({"timestamp": timestamp})).timestamp.tzinfo


def test_transaction_reports_missing_field() -> None:
    """A missing required field is reported with loc = the field and type missing."""
    body = {k: v for k, v in EXAMPLE_TRANSACTION.items() if k != "merch_lat"}
    with pytest.raises(ValidationError) as info:
        Transaction.model_validate_json(json.dumps(body))
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [(("merch_lat",), "missing")]


@pytest.mark.parametrize("field", PROFILE_COLUMNS)
def test_transaction_profile_fields_are_optional(field: str) -> None:
    """The card profile (home, holder's age, city population, card age) may be left out:
    a real authorisation does not carry it; the service reads it from the card store."""
    body = {k: v for k, v in EXAMPLE_TRANSACTION.items() if k != field}
    tx = Transaction.model_validate_json(json.dumps(body))
    assert getattr(tx, field) is None


def test_transaction_is_frozen() -> None:
    """A validated transaction cannot be mutated."""
    tx = Transaction.model_validate_json(json.dumps(EXAMPLE_TRANSACTION))
    with pytest.raises(ValidationError):
        tx.amount = Decimal("1.00")  # type: ignore[misc]


def test_documented_schemas_use_only_json_schema_bound_keywords() -> None:
    """Bounds are documented as minimum/maximum: pydantic writes the non-standard `ge`/`le`
    for a constrained optional field with a validator, which clients and fuzzers ignore."""
    from sproxxo.schemas import BatchRequest, Transaction

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    for model in (Transaction, BatchRequest):
        found = keys(model.model_json_schema())
        assert found & {"ge", "le", "gt", "lt"} == set(), model.__name__
        assert "minimum" in found
