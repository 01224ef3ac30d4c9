"""Explanations through the service app: reviews and declines carry one, approves only with
`?explain=true` (single and batch routes), each adds up to the model's raw score, and the
model's part of the reason codes names the features that drove the score."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient

from sproxxo.adapters import bentoml_store as store
from sproxxo.explanations import MODEL_CODES
from sproxxo.ml.bundle import ModelBundle
from sproxxo.policy import MODEL_SCORE_CODES
from tests.helpers import make_transaction

TOLERANCE = 1e-6


def _tx(**overrides: Any) -> dict[str, Any]:
    """A transaction on a card of its own (no history shared with other tests)."""
    tag = uuid.uuid4().hex[:12]
    return make_transaction(transaction_id=f"tx-x-{tag}", card_id=f"card_x_{tag}", **overrides)


def _night_now() -> str:
    """An hour ago, in a UTC offset where it is 2 am local time."""
    when = datetime.now(UTC) - timedelta(hours=1)
    offset = next(h for h in range(-12, 15) if (when.hour + h) % 24 == 2)
    return when.astimezone(timezone(timedelta(hours=offset))).isoformat()


def _risky(i: int) -> dict[str, Any]:
    return _tx(
        amount=f"{900 + 350 * i}.00",
        merchant_category=("shopping_net", "misc_net", "grocery_pos", "travel")[i % 4],
        timestamp=_night_now(),
        card_age_days=i % 3,
        is_foreign=bool(i % 2),
        merch_lat=40.4 - i,
        merch_long=-3.7 + i,
    )


def _adds_up(answer: dict[str, Any], bundle: ModelBundle) -> None:
    """base + listed + others is the raw score, and the raw score is the model's: it
    calibrates to the answer's fraud probability."""
    block = answer["explanation"]
    listed = sum(c["contribution"] for c in block["contributions"])
    total = block["base_value"] + listed + block["other_contributions"]
    assert abs(total - block["raw_score"]) <= TOLERANCE
    assert bundle.compiled is not None
    probs = [1 / (1 + math.exp(a * block["raw_score"] + b)) for a, b in bundle.compiled.calibrators]
    assert abs(sum(probs) / len(probs) - answer["fraud_probability"]) <= TOLERANCE
    assert 1 <= len(block["contributions"]) <= 5


@pytest.fixture(scope="module")
def bundle(client: TestClient, model_tags: list[str]) -> ModelBundle:
    """The model the service answers with."""
    tag = client.post("/predict", json=_tx()).json()["model_tag"]
    return store.load_model(tag)


def test_predict_approve_has_no_explanation_by_default(client: TestClient) -> None:
    """An approved grocery run carries no explanation without the flag (nor with
    `explain=false`)."""
    for url in ("/predict", "/predict?explain=false"):
        answer = client.post(url, json=_tx()).json()
        assert answer["decision"] == "approve"
        assert "explanation" not in answer


def test_predict_explain_true_explains_an_approve(client: TestClient, bundle: ModelBundle) -> None:
    """`?explain=true` explains an approve too, exactly, without changing its decision or
    reason codes."""
    body = _tx()
    plain = client.post("/predict", json=body).json()
    answer = client.post("/predict?explain=true", json=body).json()  # a retry: same history
    assert answer["decision"] == "approve"
    _adds_up(answer, bundle)
    assert answer["reason_codes"] == plain["reason_codes"]


def test_predict_rule_decisions_carry_explanations(client: TestClient, bundle: ModelBundle) -> None:
    """A rule's decline (over the product limit) and review (implausible age) are explained
    without the flag; the rules still lead the reason codes."""
    declined = client.post("/predict", json=_tx(amount="15000.00")).json()
    reviewed = client.post("/predict", json=_tx(customer_age=110)).json()
    assert declined["decision"] == "decline"
    assert reviewed["decision"] in {"review", "decline"}
    for answer in (declined, reviewed):
        _adds_up(answer, bundle)
        assert answer["reason_codes"][0].startswith("RULE_")


def test_predict_model_decisions_name_the_features_that_drove_them(
    client: TestClient, bundle: ModelBundle
) -> None:
    """Where the model's own score reached a threshold, the answer is explained and its
    reason codes name model-driven codes in place of the generic score code."""
    answers = [client.post("/predict", json=_risky(i)).json() for i in range(12)]
    driven = [a for a in answers if a["fraud_probability"] >= bundle.policy.review_at]
    assert driven, [a["fraud_probability"] for a in answers]
    for answer in driven:
        assert answer["decision"] in {"review", "decline"}
        _adds_up(answer, bundle)
        assert not MODEL_SCORE_CODES & set(answer["reason_codes"])
        assert set(answer["reason_codes"]) & set(MODEL_CODES)
    for answer in answers:
        assert ("explanation" in answer) == (answer["decision"] != "approve")


@pytest.mark.parametrize("route", ["/predict_batch", "/predict/batch"])
def test_batch_routes_explain_on_request(
    client: TestClient, bundle: ModelBundle, route: str
) -> None:
    """Without the flag only reviews and declines are explained; with it every scored item
    is; a refused item stays a refusal."""
    items: list[Any] = [_tx(), _tx(amount="15000.00"), {"transaction_id": "broken"}, _tx()]
    plain = client.post(route, json={"transactions": items}).json()["results"]
    asked = client.post(f"{route}?explain=true", json={"transactions": items}).json()["results"]
    assert ["explanation" in r for r in plain] == [False, True, False, False]
    assert ["explanation" in r for r in asked] == [True, True, False, True]
    for answer in (asked[0], asked[1], asked[3], plain[1]):
        _adds_up(answer, bundle)
    assert asked[2]["valid"] is False


@pytest.mark.parametrize("route", ["/predict", "/predict_batch"])
def test_explain_flag_that_is_not_a_boolean_is_refused(client: TestClient, route: str) -> None:
    """`?explain=maybe` is a 400 naming the parameter, nothing scored."""
    body: Any = _tx() if route == "/predict" else {"transactions": [_tx()]}
    r = client.post(f"{route}?explain=maybe", json=body)
    assert r.status_code == 400, r.text
    assert "explain" in r.text
