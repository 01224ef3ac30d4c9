"""Card history through the real service app (default store: SQLite under the state
folder): the `history` block and its reason codes, retries, and where the profile fields
come from when the request does not carry them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from sproxxo.adapters.history_sqlite import SqliteHistory
from sproxxo.features import haversine_km
from sproxxo.history import DAY_MS, Profile, event_time_ms
from sproxxo.settings import get_settings
from tests.helpers import make_transaction

PROFILE_FIELDS = ("lat", "long", "card_age_days", "customer_age", "city_pop")


def card() -> str:
    return f"card_{uuid.uuid4().hex[:12]}"


def tx(card_id: str, minutes_ago: float, **overrides: Any) -> dict[str, Any]:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return make_transaction(
        transaction_id=f"tx-{uuid.uuid4().hex[:16]}",
        card_id=card_id,
        timestamp=when.isoformat(),
        **overrides,
    )


def indicator(answer: dict[str, Any], name: str) -> Any:
    return next(i for i in answer["risk"]["indicators"] if i["name"] == name)


def test_first_transaction_of_a_card_has_an_empty_history(client: TestClient) -> None:
    r = client.post("/predict", json=tx(card(), 30))
    assert r.status_code == 200, r.text
    assert r.json()["history"] == {
        "tx_1h": 0,
        "tx_24h": 0,
        "amount_24h": 0.0,
        "seconds_since_last": None,
        "amount_to_card_mean": None,
    }


def test_history_counts_the_cards_earlier_transactions(client: TestClient) -> None:
    """Three earlier transactions (one over an hour before): counts, amount, gap, ratio."""
    c = card()
    for minutes, amount in ((90, "10.00"), (20, "20.00"), (10, "30.00")):
        assert client.post("/predict", json=tx(c, minutes, amount=amount)).status_code == 200
    h = client.post("/predict", json=tx(c, 5, amount="40.00")).json()["history"]
    assert (h["tx_1h"], h["tx_24h"], h["amount_24h"]) == (2, 3, 60.0)
    assert h["seconds_since_last"] == pytest.approx(300, abs=1)
    assert h["amount_to_card_mean"] == pytest.approx(2.0)


def test_a_burst_fires_the_velocity_reason(client: TestClient) -> None:
    """Many transactions within the hour: CARD_VELOCITY_HIGH is among the reasons."""
    c = card()
    items = [tx(c, 30 - i) for i in range(12)]
    r = client.post("/predict_batch", json={"transactions": items})
    assert r.status_code == 200, r.text
    last = r.json()["results"][-1]
    assert last["history"]["tx_1h"] == 11
    assert indicator(last, "card_velocity_high")["fired"] is True
    assert "CARD_VELOCITY_HIGH" in last["reason_codes"]


def test_gateway_retry_is_answered_the_same_and_counted_once(client: TestClient) -> None:
    c = card()
    first = tx(c, 20)
    a = client.post("/predict", json=first).json()
    b = client.post("/predict", json=first).json()
    assert a["history"] == b["history"]
    assert a["fraud_probability"] == b["fraud_probability"]
    h = client.post("/predict", json=tx(c, 10)).json()["history"]
    assert h["tx_1h"] == 1


@pytest.fixture(scope="module")
def store_profile() -> tuple[str, Profile]:
    """A card whose profile is loaded in the service's store (as `training.history
    profiles` does): home in Monterrey, card issued 3 days and an hour ago, holder 61."""
    c = card()
    now = event_time_ms(datetime.now(UTC).timestamp())
    profile = Profile(25.67, -100.31, 1_142_000, 61, now, now - 3 * DAY_MS - 3_600_000)
    store = SqliteHistory(get_settings().state_dir / "history.sqlite")
    store.put_profiles({c: profile})
    store.close()
    return c, profile


def test_profile_fields_from_the_request_win(
    client: TestClient, store_profile: tuple[str, Profile]
) -> None:
    """The request carries the profile: its home and card age are used, not the store's."""
    c, _ = store_profile
    body = tx(c, 10)
    answer = client.post("/predict", json=body).json()
    expected = haversine_km(body["lat"], body["long"], body["merch_lat"], body["merch_long"])
    assert indicator(answer, "far_from_home")["value"] == pytest.approx(expected, abs=1e-3)
    assert indicator(answer, "new_card")["value"] == body["card_age_days"]


def test_profile_fields_from_the_store_when_the_request_has_none(
    client: TestClient, store_profile: tuple[str, Profile]
) -> None:
    """No profile fields in the request: home and card age come from the stored profile."""
    c, profile = store_profile
    body = tx(c, 5)
    for name in PROFILE_FIELDS:
        del body[name]
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    expected = haversine_km(profile.lat, profile.long, body["merch_lat"], body["merch_long"])
    assert indicator(answer, "far_from_home")["value"] == pytest.approx(expected, abs=1e-3)
    assert indicator(answer, "new_card")["value"] == 3
    assert indicator(answer, "new_card")["fired"] is True


def test_profile_fields_missing_everywhere_score_as_unknown(client: TestClient) -> None:
    """Neither the request nor the store knows the card: scored, the indicators unknown."""
    body = tx(card(), 5)
    for name in PROFILE_FIELDS:
        del body[name]
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert indicator(answer, "far_from_home") | {"weight": 0} == {
        "name": "far_from_home",
        "fired": False,
        "weight": 0,
        "value": None,
    }
    assert indicator(answer, "new_card")["value"] is None
    assert 0.0 <= answer["fraud_probability"] <= 1.0


def test_batch_fast_path_answers_as_the_per_item_path(
    client: TestClient, store_profile: tuple[str, Profile]
) -> None:
    """/predict_batch (checked column-wise) gives the answer of the per-item schema path
    (`Runtime.answer_batch` over `BatchRequest`'s items) on a mixed batch: profiles from
    the store, rows only the schema vouches for, broken rows, broken business rules. Each
    path scores its own cards (same profiles), so neither sees the other's events."""
    import service
    from sproxxo.columnar import CheckedBatch
    from sproxxo.schemas import BatchRequest
    from sproxxo.serving.guard import CheckedBatchRequest

    _, profile = store_profile
    cards = [[card() for _ in range(3)] for _ in range(2)]
    store = SqliteHistory(get_settings().state_dir / "history.sqlite")
    store.put_profiles({cards[0][0]: profile, cards[1][0]: profile})
    store.close()
    items = [tx("", 30 - i / 2) for i in range(40)]
    for i in range(0, 40, 4):  # the stored card's profile, or none known
        for name in PROFILE_FIELDS:
            del items[i][name]
    items[5] |= {"customer_age": 30.0, "amount": 0.07}  # valid: the schema says so
    items[6]["amount"] = False  # refused
    items[7].pop("merchant_id")  # refused
    items[9]["card_id"] = "4111111111111111"  # refused: a card number
    items[10]["amount"] = "20000.00"  # scored: breaks amount_over_limit
    items[11]["timestamp"] = (datetime.now(UTC) - timedelta(days=3)).isoformat()  # stale

    def batch(k: int) -> dict[str, Any]:
        return {
            "transactions": [
                item | {"card_id": cards[k][i % 3]} if i != 9 else item
                for i, item in enumerate(items)
            ]
        }

    per_item = BatchRequest.model_validate_json(orjson.dumps(batch(0))).transactions
    assert not isinstance(per_item, CheckedBatch)
    expected = orjson.loads(orjson.dumps(service._runtime.answer_batch(per_item, None)))
    route = client.post("/predict_batch", json=batch(1))
    assert route.status_code == 200, route.text
    fast = route.json()
    assert fast.pop("latency_ms") >= 0
    assert (fast["scored"], fast["refused"]) == (37, 3)
    assert fast == expected
    rules = {v["rule"] for r in fast["results"] for v in r.get("violations", [])}
    assert {"amount_over_limit", "timestamp_stale"} <= rules
    homes = [indicator(fast["results"][i], "far_from_home")["value"] for i in (0, 4)]
    assert homes[0] is not None  # the stored profile's home
    assert homes[1] is None  # no profile anywhere
    assert issubclass(service.SERVICE.apis["predict_batch"].input_spec, CheckedBatchRequest)
