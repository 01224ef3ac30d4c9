"""A prediction log with shadow scores and delayed labels, built so every count is known.

One day (2026-03-01) of records in the layout the service's `FileSink` writes (chunks of
equal-length columns), champion `CHAMPION`, shadow `CHALLENGER`:

* `SHADOWED`: (champion decision, shadow decision, label, rows); label 1 fraud, 0 legit,
  None not labelled yet. Every amount is `AMOUNT` USD.
* `UNSHADOWED`: champion-only records (no shadow set: the shadow columns are absent).
* one earlier record shadowed by `OLD_SHADOW` (another pair), labelled legit, approve/approve;
* noise that must not count: a synthetic record and a record of the next day (both
  shadowed, labelled fraud, approved by both), and a fraud whose first report said legit.

The expected numbers are written out in the tests that use it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd

from sproxxo.adapters.logfiles import FileSink
from sproxxo.jobs.labels import store_labels
from sproxxo.records import Chunk, chunk_of

CHAMPION: Final = "sproxxo-fraud:v1"
CHALLENGER: Final = "sproxxo-fraud:v2"
OLD_SHADOW: Final = "sproxxo-fraud:v3"
DAY: Final = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW: Final = ["--since", "2026-03-01", "--until", "2026-03-02"]
AMOUNT: Final = 100.0
PROBABILITY: Final = {"approve": 0.05, "review": 0.5, "decline": 0.9}
SHADOWED: Final = (
    ("approve", "approve", 0, 10),
    ("approve", "approve", 1, 1),
    ("approve", "review", 1, 2),
    ("approve", "decline", 0, 1),
    ("review", "approve", 0, 3),
    ("review", "review", 1, 2),
    ("decline", "decline", 1, 3),
    ("decline", "review", 0, 2),
    ("approve", "approve", None, 5),
    ("decline", "approve", None, 1),
)
UNSHADOWED: Final = (("approve", 0, 3), ("decline", 1, 1))


def record(tx: str, at: datetime, decision: str, *, synthetic: bool = False) -> dict[str, Any]:
    """A champion-only log record (what `log_chunk` writes, minus the model features)."""
    return {
        "transaction_id": tx,
        "logged_at": at.isoformat(),
        "event_time": at.isoformat(),
        "model_tag": CHAMPION,
        "amount": AMOUNT,
        "merchant_category": "grocery_pos",
        "valid": True,
        "violations": [],
        "risk_score": 0.1,
        "fraud_probability": PROBABILITY[decision],
        "decision": decision,
        "reason_codes": [],
        "http_status": 200,
        "synthetic": synthetic,
    }


def shadowed(
    tx: str, at: datetime, decision: str, shadow: str, *, tag: str = CHALLENGER, **kw: Any
) -> dict[str, Any]:
    """A record that the shadow model `tag` also scored."""
    return {
        **record(tx, at, decision, **kw),
        "shadow_model_tag": tag,
        "shadow_fraud_probability": PROBABILITY[shadow],
        "shadow_decision": shadow,
    }


def build(
    *, scale: int = 1, champion: str = CHAMPION, challenger: str = CHALLENGER
) -> tuple[list[Chunk], pd.DataFrame]:
    """(log chunks, labels frame) of the day; `scale` multiplies every row count of
    `SHADOWED` and `UNSHADOWED`."""
    labels: list[dict[str, Any]] = []
    clock = iter(DAY + timedelta(seconds=10 * i) for i in range(1_000_000))

    def label(tx: str, is_fraud: int | None, after: timedelta = timedelta(days=2)) -> None:
        if is_fraud is not None:
            labels.append({"transaction_id": tx, "is_fraud": is_fraud, "reported_at": DAY + after})

    old = shadowed("tx-old-0", next(clock), "approve", "approve", tag=OLD_SHADOW)
    label("tx-old-0", 0)
    pairs = []
    for i, (decision, shadow, fraud, rows) in enumerate(SHADOWED):
        for j in range(rows * scale):
            pairs.append(shadowed(f"tx-s{i}-{j}", next(clock), decision, shadow, tag=challenger))
            label(f"tx-s{i}-{j}", fraud)
    label("tx-s1-0", 0, timedelta(days=1))  # the first report of tx-s1-0 said legit
    alone = []
    for i, (decision, fraud, rows) in enumerate(UNSHADOWED):
        for j in range(rows * scale):
            alone.append(record(f"tx-u{i}-{j}", next(clock), decision))
            label(f"tx-u{i}-{j}", fraud)
    noise = [
        shadowed("tx-synthetic", next(clock), "approve", "approve", synthetic=True),
        shadowed("tx-next-day", DAY + timedelta(days=1, hours=1), "approve", "approve"),
    ]
    label("tx-synthetic", 1)
    label("tx-next-day", 1)
    chunks = [chunk_of([old]), chunk_of(pairs), chunk_of(alone), *(chunk_of([n]) for n in noise)]
    for chunk in chunks:
        chunk["model_tag"] = [champion] * len(chunk["model_tag"])
    return chunks, pd.DataFrame(labels)


def write_files(log_dir: Path, labels_dir: Path, **kw: Any) -> None:
    """Write the day's log as the file sink does and store its labels as `labels ingest`
    does (one Parquet file)."""
    chunks, labels = build(**kw)
    FileSink(log_dir).write(chunks)
    store_labels(
        labels.assign(reported_at=pd.to_datetime(labels["reported_at"], utc=True)), labels_dir
    )
