"""Test helpers without side effects (safe to import from any test module)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

ADMIN_TOKEN = "test-admin-token-0123456789"


def make_transaction(**overrides: Any) -> dict[str, Any]:
    """A valid transaction body (timestamp = one hour ago) with overrides."""
    when = datetime.now(UTC).astimezone(UTC) - timedelta(hours=1)
    body: dict[str, Any] = {
        "transaction_id": "tx-test-000001",
        "card_id": "card_ab12cd34ef",
        "amount": "42.50",
        "currency": "USD",
        "timestamp": when.isoformat(),
        "merchant_id": "m-000123",
        "merchant_category": "grocery_pos",
        "lat": 19.43,
        "long": -99.13,
        "merch_lat": 19.44,
        "merch_long": -99.14,
        "card_age_days": 420,
        "is_foreign": False,
        "customer_age": 34,
        "city_pop": 9_209_944,
    }
    body.update(overrides)
    return body
