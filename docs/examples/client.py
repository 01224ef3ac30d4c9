"""Calling the fraud service from Python: BentoML's client and plain httpx.

uv run python docs/examples/client.py http://127.0.0.1:3000
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import bentoml
import httpx

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"

TRANSACTION = {
    "transaction_id": "tx-example-0001",
    "card_id": "card_5f2c9a1e7b",
    "amount": "42.50",
    "currency": "USD",
    "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    "merchant_id": "m-000123",
    "merchant_category": "grocery_pos",
    "lat": 19.4326,
    "long": -99.1332,
    "merch_lat": 19.44,
    "merch_long": -99.14,
    "card_age_days": 420,
    "is_foreign": False,
    "customer_age": 34,
    "city_pop": 9209944,
}


def with_httpx() -> dict[str, object]:
    """The gateway's way: one POST with a timeout; the transaction is the body."""
    with httpx.Client(base_url=URL, timeout=httpx.Timeout(0.5)) as client:
        response = client.post("/predict", json=TRANSACTION)
        response.raise_for_status()
        return dict(response.json())


def with_bentoml_client() -> object:
    """BentoML's typed client: /predict takes the transaction as its one argument."""
    with bentoml.SyncHTTPClient(URL, server_ready_timeout=30) as client:
        return client.predict(TRANSACTION)


if __name__ == "__main__":
    answer = with_httpx()
    print(answer["decision"], answer["fraud_probability"], answer["model_tag"])
    print(with_bentoml_client())
