"""Every route and error path of the service, in process."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from sproxxo.schemas import MAX_BATCH_ITEMS
from tests.helpers import ADMIN_TOKEN, make_transaction


def test_predict_returns_full_assessment(client: TestClient, transaction: dict[str, Any]) -> None:
    """A valid transaction gets decision, probability, risk breakdown, model tag, latency."""
    r = client.post("/predict", json=transaction)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["transaction_id"] == transaction["transaction_id"]
    assert body["valid"] is True
    assert body["violations"] == []
    assert 0.0 <= body["fraud_probability"] <= 1.0
    assert body["decision"] in {"approve", "review", "decline"}
    assert body["model_tag"].startswith("sproxxo-fraud:")
    assert body["latency_ms"] > 0
    names = [i["name"] for i in body["risk"]["indicators"]]
    assert names[:2] == ["high_amount", "unusual_amount_for_category"]
    assert 0.0 <= body["risk"]["score"] <= 1.0


def test_predict_risky_transaction_scores_higher(client: TestClient) -> None:
    """A large night-time online purchase abroad on a new card outscores a grocery run."""
    safe = client.post("/predict", json=make_transaction()).json()
    risky_tx = make_transaction(
        transaction_id="tx-risky",
        amount="1850.00",
        merchant_category="shopping_net",
        timestamp="2026-11-29T02:30:00-06:00",
        card_age_days=1,
        is_foreign=True,
        merch_lat=40.4,
        merch_long=-3.7,
    )
    risky = client.post("/predict", json=risky_tx).json()
    assert risky["fraud_probability"] > safe["fraud_probability"]
    assert risky["risk"]["score"] > 0.7
    assert "RISK_HIGH_AMOUNT" in risky["reason_codes"] or risky["violations"]


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"amount": False}, "amount", "decimal_type"),
        ({"amount": "-5.00"}, "amount", "greater_than"),
        ({"amount": "0"}, "amount", "greater_than"),
        ({"amount": "5000000"}, "amount", "less_than_equal"),
        ({"lat": 123.0}, "lat", "less_than_equal"),
        ({"merchant_category": "casino"}, "merchant_category", "enum"),
        ({"timestamp": "1900-01-01T00:00:00+00:00"}, "timestamp", "value_error"),
        ({"timestamp": "2100-01-01T00:00:00+00:00"}, "timestamp", "value_error"),
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp", "timezone_aware"),
        ({"card_id": "4111111111111111"}, "card_id", "value_error"),
        ({"is_foreign": "yes"}, "is_foreign", "bool_type"),
        ({"customer_age": 34.5}, "customer_age", "int_type"),
        ({"surprise": 1}, "surprise", "extra_forbidden"),
    ],
)
def test_predict_schema_errors_are_400_naming_field(
    client: TestClient, overrides: dict[str, Any], field: str, rule: str
) -> None:
    """Schema violations answer 400 with the field and the rule, never a 5xx."""
    r = client.post("/predict", json=make_transaction(**overrides))
    assert r.status_code == 400, r.text
    errors = r.json()["detail"]
    assert any(e["loc"] == [field] and e["type"] == rule for e in errors), errors


def test_predict_missing_field_is_400(client: TestClient) -> None:
    """A missing field is named in the 400."""
    body = make_transaction()
    del body["amount"]
    r = client.post("/predict", json=body)
    assert r.status_code == 400
    assert {"type": "missing", "loc": ["amount"]}.items() <= r.json()["detail"][0].items()


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "rule"),
    [
        (b'{"amount": NaN}', "application/json", 400, None),
        (
            b'{"transaction_id": "a", "transaction_id": "b"}',
            "application/json",
            400,
            "duplicate_key",
        ),
        (b'{"truncated": ', "application/json", 400, "json_invalid"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "json_too_deep"),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (b"--x\r\n", "multipart/form-data", 415, "unsupported_media_type"),
        (b" " * 2_000_000, "application/json", 413, "max_body_bytes"),
    ],
)
def test_predict_malformed_bodies_are_4xx(
    client: TestClient, raw: bytes, content_type: str, status: int, rule: str | None
) -> None:
    """Malformed, oversize and wrongly typed bodies are refused with a 4xx and a rule."""
    r = client.post("/predict", content=raw, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    if rule:
        assert r.json()["detail"][0]["rule"] == rule


def test_predict_business_rule_violation_still_answers(client: TestClient) -> None:
    """A rule violation is a 200 with valid=false and the documented decision."""
    r = client.post("/predict", json=make_transaction(amount="15000.00"))
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is False
    assert body["violations"][0]["rule"] == "amount_over_limit"
    assert body["violations"][0]["field"] == "amount"
    assert body["decision"] == "decline"
    assert body["reason_codes"][0] == "RULE_AMOUNT_OVER_LIMIT"


def test_predict_batch_scores_in_order_and_isolates_bad_items(client: TestClient) -> None:
    """One bad item does not fail the others; answers keep the input order."""
    items = [make_transaction(transaction_id=f"tx-b-{i}") for i in range(5)]
    items[2] = make_transaction(transaction_id="tx-b-2", amount=False)
    r = client.post("/predict_batch", json={"transactions": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["count"], body["scored"], body["refused"]) == (5, 4, 1)
    ids = [res["transaction_id"] for res in body["results"]]
    assert ids == [f"tx-b-{i}" for i in range(5)]
    bad = body["results"][2]
    assert bad["valid"] is False
    assert bad["index"] == 2
    assert bad["errors"][0]["field"] == "amount"


def test_predict_batch_size_limit_is_400(client: TestClient) -> None:
    """More items than the documented limit is a 400 naming `transactions`."""

    n = MAX_BATCH_ITEMS + 1
    r = client.post("/predict_batch", json={"transactions": [{}] * n})
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"] == ["transactions"]
    assert r.json()["detail"][0]["type"] == "too_long"
    assert r.json()["error"] == "1 validation error for BatchRequestIODescriptor"  # as before


def test_score_batchable_endpoint_scores_lists(client: TestClient) -> None:
    """The adaptive-batching endpoint returns one assessment per transaction."""
    items = [make_transaction(transaction_id=f"tx-s-{i}") for i in range(3)]
    r = client.post("/score", json={"transactions": items})
    assert r.status_code == 200, r.text
    assert [a["transaction_id"] for a in r.json()] == ["tx-s-0", "tx-s-1", "tx-s-2"]


def test_models_list_and_get(client: TestClient, model_tags: list[str]) -> None:
    """GET /models lists every version with stage and metrics; one is active."""
    r = client.get("/models")
    assert r.status_code == 200
    models = {m["tag"]: m for m in r.json()}
    assert set(model_tags) <= set(models)
    assert sum(m["active"] for m in models.values()) == 1
    assert models[model_tags[0]]["stage"] == "champion"
    assert models[model_tags[0]]["metrics"]["roc_auc"] > 0.9
    version = model_tags[1].split(":")[1]
    one = client.get(f"/models/{version}")
    assert one.status_code == 200
    assert one.json()["tag"] == model_tags[1]
    assert client.get("/models/doesnotexist").status_code == 404


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"X-Admin-Token": "nope"}, 403)])
def test_admin_routes_need_the_token(
    client: TestClient, model_tags: list[str], headers: dict[str, str], status: int
) -> None:
    """Activate and delete answer 401 without a token and 403 with a wrong one."""
    version = model_tags[1].split(":")[1]
    assert client.post(f"/models/{version}/activate", headers=headers).status_code == status
    assert client.delete(f"/models/{version}", headers=headers).status_code == status


def test_activate_swaps_and_active_model_cannot_be_deleted(
    client: TestClient, model_tags: list[str]
) -> None:
    """Activation hot-swaps the model; deleting the active model is refused (409)."""
    auth = {"X-Admin-Token": ADMIN_TOKEN}
    first, second = (t.split(":")[1] for t in model_tags)
    r = client.post(f"/models/{second}/activate", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["active"] == model_tags[1]
    assert client.post("/predict", json=make_transaction()).json()["model_tag"] == model_tags[1]
    assert client.delete(f"/models/{second}", headers=auth).status_code == 409
    back = client.post(f"/models/{first}/activate", headers=auth)
    assert back.json() == {"active": model_tags[0], "previous": model_tags[1]}


def test_health_reports_model_and_log(client: TestClient) -> None:
    """/health names the active model and the prediction log's counters."""
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["model"].startswith("sproxxo-fraud:")
    assert body["predlog"]["sink"] == "FileSink"
    assert body["predlog"]["accepted"] >= body["predlog"]["written"]


def test_readyz_and_metrics(client: TestClient) -> None:
    """/readyz is 200 with a model; scoring updates the sproxxo metrics.

    (In process there is no /metrics route: the integration tests scrape the real one.)
    """
    from prometheus_client import REGISTRY, generate_latest

    client.post("/predict", json=make_transaction())
    assert client.get("/readyz").status_code == 200
    text = generate_latest(REGISTRY).decode()
    for name in (
        "sproxxo_predictions_total",
        "sproxxo_fraud_probability_bucket",
        "sproxxo_model_loaded",
        "sproxxo_batch_size_bucket",
    ):
        assert name in text


def test_openapi_documents_every_route(client: TestClient) -> None:
    """/docs.json describes the scoring and management routes."""
    r = client.get("/docs.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for route in (
        "/predict",
        "/predict_batch",
        "/models",
        "/models/{version}",
        "/models/{version}/activate",
        "/health",
    ):
        assert route in paths


def test_wrong_method_on_a_model_route_is_405_naming_each_allowed_method_once(
    client: TestClient,
) -> None:
    """`/models/shadow` also matches `/models/{version}`: Allow lists GET and DELETE once."""
    r = client.put("/models/shadow", headers={"X-Admin-Token": ADMIN_TOKEN})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "DELETE, GET"


def test_predict_batch_validates_the_guards_own_parse(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through BentoML, the batch route's column-wise check reads the very objects the
    guard parsed (the body is parsed once), and answers from them."""
    from sproxxo.serving import guard

    parsed: list[object] = []
    checked: list[object] = []
    check_json, check_batch = guard.checked_json, guard.check_batch

    def spied_json(body: bytes, limits: guard.JsonLimits) -> tuple[object, object]:
        found = check_json(body, limits)
        parsed.append(found[1])
        return found

    def spied_batch(body: object) -> object:
        checked.append(body)
        return check_batch(body)

    monkeypatch.setattr(guard, "checked_json", spied_json)
    monkeypatch.setattr(guard, "check_batch", spied_batch)
    items = [make_transaction(transaction_id=f"tx-p-{i}") for i in range(3)]
    r = client.post("/predict_batch", json={"transactions": items})
    assert r.status_code == 200, r.text
    assert [res["transaction_id"] for res in r.json()["results"]] == ["tx-p-0", "tx-p-1", "tx-p-2"]
    assert len(parsed) == len(checked) == 1
    assert checked[0] is parsed[0]
