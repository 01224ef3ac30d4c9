"""Shadow scoring: the persisted choice every worker follows, and the off-path scorer."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sproxxo.errors import ModelNotFound, ModelRefused
from sproxxo.policy import Policy
from sproxxo.records import SHADOW_COLUMNS
from sproxxo.schemas import RuleViolation
from sproxxo.serving.shadow import ShadowJob, ShadowScorer, ShadowSlot

POLICY = Policy(review_at=0.3, decline_at=0.7)


@dataclass
class FakeBundle:
    """A model whose probability is the first feature (or that waits, or fails)."""

    tag: str
    policy: Policy = POLICY
    gate: threading.Event | None = None
    fail: bool = False
    calls: list[int] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.tag.split(":")[1]

    def predict_matrix(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        self.calls.append(len(matrix))
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RuntimeError("model exploded")
        return matrix[:, 0].copy()


class Store:
    """A loader over a dict of fake bundles; unknown tags are absent (404)."""

    def __init__(self, *bundles: FakeBundle) -> None:
        self.bundles = {b.tag: b for b in bundles}

    def __call__(self, tag: str) -> Any:
        if tag not in self.bundles:
            raise ModelNotFound(f"no model {tag}")
        return self.bundles[tag]


def _slot(path: Path, store: Store) -> ShadowSlot:
    return ShadowSlot(path / "shadow-model.json", loader=store, check_seconds=0.0)


def _follow(slot: ShadowSlot) -> None:
    loader = slot.refresh()
    if loader is not None:
        loader.join(10)


def test_shadow_slot_choice_is_persisted_and_followed(tmp_path: Path) -> None:
    """A shadow set in one worker is followed by another; clearing it too."""
    store = Store(FakeBundle("m:a"), FakeBundle("m:b"))
    first, second = _slot(tmp_path, store), _slot(tmp_path, store)
    bundle, previous = first.set("m:b", champion="m:a")
    assert (bundle.tag, previous, first.tag) == ("m:b", None, "m:b")
    _follow(second)
    assert second.tag == "m:b"
    assert first.clear() == "m:b"
    assert first.tag is None
    _follow(second)
    assert second.tag is None


def test_shadow_slot_refuses_the_champion_and_absent_models(tmp_path: Path) -> None:
    """The champion cannot shadow itself (409) and an absent version is 404; nothing changes."""
    slot = _slot(tmp_path, Store(FakeBundle("m:a")))
    with pytest.raises(ModelRefused, match="active model"):
        slot.set("m:a", champion="m:a")
    with pytest.raises(ModelNotFound):
        slot.set("m:zz", champion="m:a")
    assert slot.tag is None
    assert not slot.state_file.exists()


def test_shadow_slot_start_prefers_the_persisted_choice(tmp_path: Path) -> None:
    """Settings name the shadow only when no operator choice is persisted, "none" included."""
    store = Store(FakeBundle("m:a"), FakeBundle("m:b"))
    fresh = _slot(tmp_path, store)
    fresh.start("m:b")
    assert fresh.tag == "m:b"
    fresh.clear()
    restarted = _slot(tmp_path, store)
    restarted.start("m:b")
    assert restarted.tag is None


def test_shadow_slot_start_with_an_unusable_model_is_refused_not_fatal(tmp_path: Path) -> None:
    """A configured shadow that cannot load leaves no shadow and says why."""
    slot = _slot(tmp_path, Store())
    slot.start("m:gone")
    assert slot.tag is None
    assert slot.refusal is not None
    assert "m:gone" in slot.refusal


def _job(probabilities: list[float], delivered: list[dict[str, Any]], **kw: Any) -> ShadowJob:
    n, name = len(probabilities), kw.get("name", "t")
    matrix = np.array([[p, 0.0] for p in probabilities])
    violations: list[list[RuleViolation]] = kw.get("violations", [[] for _ in range(n)])
    chunk = {"transaction_id": [f"{name}{i}" for i in range(n)], "decision": ["approve"] * n}
    return ShadowJob(matrix, violations, chunk, delivered.append)


class Counts:
    """What the scorer reported."""

    def __init__(self) -> None:
        self.scored: list[tuple[list[str], list[str], str]] = []
        self.dropped = 0

    def on_scored(self, champion: list[str], shadow: list[str], version: str) -> None:
        self.scored.append((champion, shadow, version))

    def on_dropped(self, n: int) -> None:
        self.dropped += n


def _scorer(tmp_path: Path, bundle: FakeBundle, counts: Counts, size: int = 4) -> ShadowScorer:
    slot = _slot(tmp_path, Store(bundle))
    slot.set(bundle.tag, champion="m:champion")
    return ShadowScorer(
        slot, queue_size=size, on_scored=counts.on_scored, on_dropped=counts.on_dropped
    )


def test_shadow_scorer_adds_its_columns_then_delivers(tmp_path: Path) -> None:
    """The shadow's tag, probability and decision (its policy, the same rules) join the
    batch's log rows, which reach the log only then; the pair counts are reported."""
    counts, delivered = Counts(), []
    scorer = _scorer(tmp_path, FakeBundle("m:b"), counts)
    rule = RuleViolation(
        rule="card_expired", field="card.expiry", severity="decline", message="expired"
    )
    assert scorer.offer(_job([0.1, 0.5, 0.9, 0.1], delivered, violations=[[], [], [], [rule]]))
    scorer.close(timeout=10)
    (chunk,) = delivered
    assert chunk["shadow_model_tag"] == ["m:b"] * 4
    assert chunk["shadow_fraud_probability"].tolist() == [0.1, 0.5, 0.9, 0.1]
    assert chunk["shadow_decision"] == ["approve", "review", "decline", "decline"]
    assert counts.scored == [(["approve"] * 4, chunk["shadow_decision"], "b")]


def test_shadow_scorer_without_a_shadow_declines_the_batch(tmp_path: Path) -> None:
    """No shadow set: the caller logs the batch as it is."""
    counts, delivered = Counts(), []
    scorer = _scorer(tmp_path, FakeBundle("m:b"), counts)
    scorer.slot.clear()
    assert not scorer.offer(_job([0.5], delivered))
    scorer.close(timeout=10)
    assert delivered == []
    assert counts.scored == []


def test_shadow_scorer_drops_when_full_and_loses_no_row(tmp_path: Path) -> None:
    """A busy shadow (blocked by construction) fills its queue: further batches are refused
    and counted; at close the queued ones reach the log without shadow columns and the busy
    one with them once it finishes."""
    gate = threading.Event()
    counts, delivered = Counts(), []
    bundle = FakeBundle("m:b", gate=gate)
    scorer = _scorer(tmp_path, bundle, counts, size=2)
    assert scorer.offer(_job([0.1], delivered, name="busy"))
    while not bundle.calls:  # the thread holds the first batch (waiting on the gate)
        threading.Event().wait(0.01)
    assert scorer.offer(_job([0.2], delivered))
    assert scorer.offer(_job([0.3], delivered))
    assert not scorer.offer(_job([0.4, 0.5], delivered))
    assert counts.dropped == 2
    scorer.close(timeout=0.05)
    assert [c["transaction_id"] for c in delivered] == [["t0"], ["t0"]]
    assert all("shadow_decision" not in c for c in delivered)
    gate.set()
    scorer._thread.join(10)
    assert not scorer._thread.is_alive()
    assert delivered[-1]["transaction_id"] == ["busy0"]
    assert delivered[-1]["shadow_decision"] == ["approve"]


def test_shadow_scorer_failure_still_logs_the_batch(tmp_path: Path) -> None:
    """A shadow that raises never costs the champion's log rows."""
    counts, delivered = Counts(), []
    scorer = _scorer(tmp_path, FakeBundle("m:b", fail=True), counts)
    assert scorer.offer(_job([0.1, 0.2], delivered))
    scorer.close(timeout=10)
    (chunk,) = delivered
    assert set(SHADOW_COLUMNS).isdisjoint(chunk)
    assert counts.scored == []
