"""Behaviour of a small trained model: minimum functionality, invariance and directional checks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from sproxxo.features import LABEL_COLUMN, columns_from_transactions
from sproxxo.ml.compiled_trees import compile_model
from sproxxo.ml.training import fit_pipeline, fraud_probability, time_split
from sproxxo.schemas import Transaction
from sproxxo.sources.synthetic import generate

MEXICO_CITY = timezone(timedelta(hours=-6))


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """A small pipeline fitted on a chronological split of 60k synthetic rows."""
    train, validation, test = time_split(generate(60_000, seed=21))
    pipeline = fit_pipeline(train, validation, params={"max_iter": 80}, seed=0)
    return {"pipeline": pipeline, "test": test}


def _tx(**overrides: Any) -> Transaction:
    """A typical daytime grocery purchase near home in Mexico City on an old card."""
    body: dict[str, Any] = {
        "transaction_id": "tx-model-1",
        "card_id": "card_0a1b2c3d4e",
        "amount": "45.00",
        "currency": "USD",
        "timestamp": datetime(2026, 3, 11, 13, 20, tzinfo=MEXICO_CITY).isoformat(),
        "merchant_id": "m-04-0101",
        "merchant_category": "grocery_pos",
        "lat": 19.4326,
        "long": -99.1332,
        "merch_lat": 19.44,
        "merch_long": -99.14,
        "card_age_days": 900,
        "is_foreign": False,
        "customer_age": 41,
        "city_pop": 9_209_944,
    }
    body.update(overrides)
    return Transaction.model_validate_json(json.dumps(body))


def _score(trained: dict[str, Any], *txs: Transaction) -> np.ndarray:
    return fraud_probability(trained["pipeline"], columns_from_transactions(list(txs)))


def _night(hour: int = 3) -> str:
    return datetime(2026, 3, 12, hour, 10, tzinfo=MEXICO_CITY).isoformat()


def test_model_auroc_on_held_out_split(trained: dict[str, Any]) -> None:
    """On the later, held-out time split the model ranks fraud with AUROC >= 0.97."""
    test = trained["test"]
    p = fraud_probability(trained["pipeline"], test)
    assert roc_auc_score(test[LABEL_COLUMN], p) >= 0.97


def test_model_probabilities_are_calibrated_in_aggregate(trained: dict[str, Any]) -> None:
    """The mean predicted probability on held-out data is close to the observed fraud rate."""
    test = trained["test"]
    p = fraud_probability(trained["pipeline"], test)
    assert p.mean() == pytest.approx(test[LABEL_COLUMN].mean(), abs=0.005)


def test_model_night_online_new_card_scores_above_daytime_grocery(trained: dict[str, Any]) -> None:
    """A big night-time online purchase on a day-old card outscores a daytime grocery one."""
    risky = _tx(
        amount="1800.00", timestamp=_night(), merchant_category="shopping_net", card_age_days=1
    )
    typical = _tx()
    p_risky, p_typical = _score(trained, risky, typical)
    assert p_risky > p_typical
    assert p_risky > 0.5
    assert p_typical < 0.05


def test_model_identical_inputs_give_identical_scores(trained: dict[str, Any]) -> None:
    """Scoring the same transaction twice, alone or in a batch, gives the same probability."""
    tx = _tx(amount="612.40", timestamp=_night(1), merchant_category="misc_net")
    alone = _score(trained, tx)[0]
    again = _score(trained, tx)[0]
    batch = _score(trained, _tx(), tx, _tx(amount="3.10"))[1]
    assert alone == again
    assert alone == pytest.approx(batch, abs=1e-12)


@pytest.mark.parametrize(
    "field",
    [
        {"transaction_id": "tx-other-9"},
        {"card_id": "card_ffffeeee00"},
        {"merchant_id": "m-13-0999"},
    ],
)
def test_model_invariant_to_identifiers(trained: dict[str, Any], field: dict[str, str]) -> None:
    """Identifiers are not features: changing them leaves the score unchanged."""
    base = _tx(amount="250.00", timestamp=_night(2), merchant_category="shopping_net")
    changed = _tx(amount="250.00", timestamp=_night(2), merchant_category="shopping_net", **field)
    assert _score(trained, base)[0] == _score(trained, changed)[0]


def test_model_same_instant_written_in_another_zone_scores_the_same(
    trained: dict[str, Any],
) -> None:
    """The same instant and offset written differently (Z vs +00:00) scores identically."""
    a = _tx(timestamp="2026-03-12T09:10:00+00:00")
    b = _tx(timestamp="2026-03-12T09:10:00Z")
    assert _score(trained, a)[0] == _score(trained, b)[0]


@pytest.mark.parametrize("category", ["shopping_net", "misc_net", "grocery_net"])
@pytest.mark.parametrize("hour", [0, 2, 3])
def test_model_higher_amount_at_night_online_not_lower(
    trained: dict[str, Any], category: str, hour: int
) -> None:
    """Raising the amount from 20 to 2000 at night online does not lower the probability."""
    small = _tx(amount="20.00", timestamp=_night(hour), merchant_category=category)
    large = _tx(amount="2000.00", timestamp=_night(hour), merchant_category=category)
    p_small, p_large = _score(trained, small, large)
    assert p_large >= p_small


def test_model_new_card_not_safer_than_old_card(trained: dict[str, Any]) -> None:
    """For a large night-time online purchase a day-old card is not scored safer than an old one."""
    kwargs = {"amount": "900.00", "timestamp": _night(), "merchant_category": "shopping_net"}
    p_new, p_old = _score(
        trained, _tx(card_age_days=1, **kwargs), _tx(card_age_days=1500, **kwargs)
    )
    assert p_new >= p_old


def test_model_compiled_path_agrees_on_behaviour_cases(trained: dict[str, Any]) -> None:
    """The compiled trees give the sklearn probabilities on the behaviour transactions."""
    from sproxxo.features import build_features

    txs = [_tx(), _tx(amount="1800.00", timestamp=_night(), merchant_category="shopping_net")]
    matrix = build_features(columns_from_transactions(txs))
    compiled = compile_model(trained["pipeline"][-1]).predict(matrix)
    np.testing.assert_allclose(compiled, _score(trained, *txs), atol=1e-9)


def test_model_scores_dataframe_and_columns_alike(trained: dict[str, Any]) -> None:
    """The pipeline scores a DataFrame (training) and a column mapping (serving) identically."""
    cols = columns_from_transactions([_tx(), _tx(amount="777.00", timestamp=_night())])
    from_mapping = fraud_probability(trained["pipeline"], cols)
    from_frame = fraud_probability(trained["pipeline"], pd.DataFrame(cols))
    np.testing.assert_array_equal(from_mapping, from_frame)
