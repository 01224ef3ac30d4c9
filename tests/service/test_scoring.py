"""The columnar scoring core against the schema the API documents."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from sproxxo.adapters import bentoml_store as store
from sproxxo.schemas import Assessment, Transaction
from sproxxo.scoring import score
from tests.helpers import make_transaction


def test_score_records_validate_as_assessments(model_tags: list[str]) -> None:
    """Every JSON-ready record has exactly Assessment's fields and types, in input order."""
    bundle = store.load_model(model_tags[0])
    bodies = [make_transaction(transaction_id=f"tx-r-{i}") for i in range(50)]
    bodies[7] = make_transaction(transaction_id="tx-r-7", amount="15000.00")
    txs = [Transaction.model_validate_json(orjson.dumps(b)) for b in bodies]
    records = score(txs, bundle, now=datetime.now(UTC)).records()
    parsed = [Assessment.model_validate_json(orjson.dumps(r)) for r in records]
    assert [a.transaction_id for a in parsed] == [b["transaction_id"] for b in bodies]
    assert set(records[0]) | {"explanation"} == set(Assessment.model_fields)  # an approve
    assert parsed[7].valid is False
    assert parsed[7].violations[0].rule == "amount_over_limit"
    assert all(a.model_tag == bundle.tag for a in parsed)


def test_score_single_and_batch_paths_agree(model_tags: list[str]) -> None:
    """A transaction scored alone gets the same probability and decision as in a batch."""
    bundle = store.load_model(model_tags[0])
    txs = [
        Transaction.model_validate_json(
            orjson.dumps(
                make_transaction(
                    transaction_id=f"tx-p-{i}", amount=f"{10 + 97 * i}.00", card_age_days=i * 40
                )
            )
        )
        for i in range(20)
    ]
    now = datetime.now(UTC)
    batch = score(txs, bundle, now=now).records()
    for tx, together in zip(txs, batch, strict=True):
        alone = score([tx], bundle, now=now).records()[0]
        assert abs(alone["fraud_probability"] - together["fraud_probability"]) <= 1e-9
        assert alone["decision"] == together["decision"]
        assert alone["reason_codes"] == together["reason_codes"]
