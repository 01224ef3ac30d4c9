"""The promotion job: run the gate, then make the candidate the champion.

`promote_to_champion` is the one place a model becomes the champion: sign the manifest with
the promotion key, move the MLflow `champion` alias, label the store. `promote` runs the
gate first (both models scored on the same data); a forced promotion skips it and records
its reason. `training.train --bootstrap` calls `promote_to_champion` for the first local
model, through the gate's floors. With a shadow report (`python -m monitoring.compare`'s
`compare.json`) the gate also weighs the live evidence (`sproxxo.ml.promotion.shadow_gate`),
and the promotion records it: the `shadow_gate` label and `shadow_*` notes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sproxxo.adapters import bentoml_store as store
from sproxxo.adapters import mlflow_tracking as tracking
from sproxxo.errors import GateRefused
from sproxxo.jobs.data import DataSpec
from sproxxo.ml.bundle import ModelBundle
from sproxxo.ml.promotion import ShadowEvidence, gate, shadow_gate
from sproxxo.ml.signing import Signer, signer_for
from sproxxo.settings import Settings

logger = logging.getLogger(__name__)


def promote_to_champion(
    tag: str,
    *,
    mlflow_version: str,
    tracking_uri: str,
    signer: Signer,
    promoted_by: str,
    notes: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    """After the gate: sign the manifest, move the MLflow `champion` alias, label the store.

    The only place a model becomes the champion (the gate, a forced promotion with its
    reason, or the local bootstrap of `training.train --bootstrap`). `labels` are extra
    store labels (short values), `notes` go into the metadata."""
    signature = store.sign_model(tag, signer)
    if mlflow_version:
        tracking.set_alias("champion", mlflow_version, tracking_uri)
    store.set_stage(tag, "champion", promoted_by=promoted_by, notes=notes, **(labels or {}))
    logger.info("%s is the champion (%s), signed by %s", tag, promoted_by, signature.key_id)


@dataclass(frozen=True)
class PromoteRequest:
    """A candidate, the data to judge it on, whether (and why) to skip the gate, and the
    shadow report to weigh."""

    tag: str
    data: DataSpec
    force: bool = False
    reason: str = ""
    shadow_report: Path | None = None


def read_shadow_evidence(path: Path) -> ShadowEvidence:
    """What the gate needs from a `compare.json`; raises DataSourceError when unreadable."""
    from sproxxo.jobs.compare import load_report

    report = load_report(path)
    champion, challenger = report.champion.labelled, report.challenger.labelled
    return ShadowEvidence(
        challenger_tag=report.challenger.model_tag,
        champion_tag=report.champion.model_tag,
        labelled_rows=report.labelled_rows,
        labelled_frauds=report.labelled_frauds,
        champion_cost=champion.expected_cost_per_row if champion else None,
        challenger_cost=challenger.expected_cost_per_row if challenger else None,
        window=f"{report.since.isoformat()}/{report.until.isoformat()}",
    )


def weigh_shadow(
    path: Path | None, *, candidate: str, champion: str | None
) -> dict[str, Any] | None:
    """The shadow part of the verdict (evidence, failures, passed), or None without a report."""
    if path is None:
        return None
    evidence = read_shadow_evidence(path)
    verdict = shadow_gate(evidence, candidate=candidate, champion=champion)
    return {"report": str(path.resolve()), "evidence": asdict(evidence), **verdict}


def promotion_record(
    request: PromoteRequest, shadow: dict[str, Any] | None
) -> dict[str, dict[str, str]]:
    """The store labels and metadata notes a promotion writes: a forced promotion's reason,
    the shadow evidence (if any) and its verdict."""
    notes = {"promotion_reason": request.reason} if request.force else {}
    if shadow is None:
        return {"labels": {}, "notes": notes}
    notes |= {f"shadow_{key}": str(value) for key, value in shadow["evidence"].items()}
    notes["shadow_report"] = shadow["report"]
    return {"labels": {"shadow_gate": "failed" if shadow["failures"] else "passed"}, "notes": notes}


def judge(
    request: PromoteRequest, settings: Settings, candidate: ModelBundle, champion_tag: str | None
) -> dict[str, list[str]]:
    """The gate's verdict with both models scored on the same data."""
    from sproxxo.jobs.evaluate import score
    from sproxxo.jobs.train import load_frame

    frame = load_frame(request.data, settings)
    champion = score(store.load_model(champion_tag), frame) if champion_tag else None
    return gate(score(candidate, frame), champion)


def promote(request: PromoteRequest, settings: Settings) -> dict[str, Any]:
    """Gate the candidate against the champion on the same data (and on the shadow report,
    if any), then promote it.

    Returns the report (candidate, champion, gate and shadow verdicts, promoted); raises
    `GateRefused` when either verdict has failures and the promotion is not forced."""
    from sproxxo.jobs.train import use_store

    use_store(settings)
    candidate = store.load_model(request.tag)
    champion_tag = store.champion_tag()
    report: dict[str, Any] = {"candidate": candidate.tag, "champion": champion_tag}
    if champion_tag == candidate.tag:
        return {**report, "promoted": False, "gate": None}
    shadow = weigh_shadow(request.shadow_report, candidate=candidate.tag, champion=champion_tag)
    report["shadow"] = shadow
    report["gate"] = judge(request, settings, candidate, champion_tag)
    failures = report["gate"]["failures"] + (shadow["failures"] if shadow else [])
    if failures and not request.force:
        raise GateRefused(f"{candidate.tag} not promoted: " + "; ".join(failures), report)
    record = promotion_record(request, shadow)
    promote_to_champion(
        candidate.tag,
        mlflow_version=candidate.metadata.mlflow_version,
        tracking_uri=settings.tracking_uri,
        signer=signer_for(settings.model_signing_key, dev_folder=settings.keys_dir),
        promoted_by="force" if request.force else "gate",
        notes=record["notes"],
        labels=record["labels"],
    )
    return {**report, "promoted": True}
