"""The promotion job: run the gate, then make the candidate the champion.

`promote_to_champion` is the one place a model becomes the champion: sign the manifest with
the promotion key, move the MLflow `champion` alias, label the store. `promote` runs the
gate first (both models scored on the same data); a forced promotion skips it and records
its reason. `training.train --bootstrap` calls `promote_to_champion` for the first local
model, through the gate's floors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sproxxo.adapters import bentoml_store as store
from sproxxo.adapters import mlflow_tracking as tracking
from sproxxo.errors import GateRefused
from sproxxo.jobs.data import DataSpec
from sproxxo.ml.promotion import gate
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
) -> None:
    """After the gate: sign the manifest, move the MLflow `champion` alias, label the store.

    The only place a model becomes the champion (the gate, a forced promotion with its
    reason, or the local bootstrap of `training.train --bootstrap`)."""
    signature = store.sign_model(tag, signer)
    if mlflow_version:
        tracking.set_alias("champion", mlflow_version, tracking_uri)
    store.set_stage(tag, "champion", promoted_by=promoted_by, notes=notes)
    logger.info("%s is the champion (%s), signed by %s", tag, promoted_by, signature.key_id)


@dataclass(frozen=True)
class PromoteRequest:
    """A candidate, the data to judge it on, and whether (and why) to skip the gate."""

    tag: str
    data: DataSpec
    force: bool = False
    reason: str = ""


def promote(request: PromoteRequest, settings: Settings) -> dict[str, Any]:
    """Gate the candidate against the champion on the same data, then promote it.

    Returns the report (candidate, champion, gate verdict, promoted); raises `GateRefused`
    when the gate fails and the promotion is not forced."""
    from sproxxo.jobs.evaluate import score
    from sproxxo.jobs.train import load_frame, use_store

    use_store(settings)
    candidate = store.load_model(request.tag)
    champion_tag = store.champion_tag()
    report: dict[str, Any] = {"candidate": candidate.tag, "champion": champion_tag}
    if champion_tag == candidate.tag:
        return {**report, "promoted": False, "gate": None}
    frame = load_frame(request.data, settings)
    champion = score(store.load_model(champion_tag), frame) if champion_tag else None
    report["gate"] = gate(score(candidate, frame), champion)
    if report["gate"]["failures"] and not request.force:
        raise GateRefused(
            f"{candidate.tag} not promoted: " + "; ".join(report["gate"]["failures"]), report
        )
    promote_to_champion(
        candidate.tag,
        mlflow_version=candidate.metadata.mlflow_version,
        tracking_uri=settings.tracking_uri,
        signer=signer_for(settings.model_signing_key, dev_folder=settings.keys_dir),
        promoted_by="force" if request.force else "gate",
        notes={"promotion_reason": request.reason} if request.force else {},
    )
    return {**report, "promoted": True}
