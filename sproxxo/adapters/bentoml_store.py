"""Adapter over the BentoML model store: the store is what serving trusts.

Imports `bentoml` lazily so that `import sproxxo` stays light (STYLE §1).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from sproxxo.errors import ModelNotFound, ModelRefused
from sproxxo.ml.bundle import MODEL_NAME, BundleMetadata, ModelBundle, load_bundle, write_bundle
from sproxxo.ml.signing import Signature, Signer, dev_verify_key, sign_manifest, verify_or_raise
from sproxxo.settings import Settings

if TYPE_CHECKING:  # pandas is not imported on the service's start-up path
    import pandas as pd

logger = logging.getLogger(__name__)

Stage = Literal["candidate", "challenger", "champion", "retired"]
STAGES: Final = ("candidate", "challenger", "champion", "retired")


class ModelRecord(BaseModel):
    """What the store knows about one model version (no unpickling needed)."""

    model_config = ConfigDict(frozen=True)

    tag: str
    version: str
    stage: str
    labels: dict[str, str]
    created: datetime
    metrics: dict[str, float]
    metadata: dict[str, Any]

    def summary(self, active_tag: str | None) -> ModelSummary:
        """The management API's view of this version (`active`: it serves here)."""
        return ModelSummary(
            tag=self.tag,
            version=self.version,
            stage=self.stage,
            active=self.tag == active_tag,
            created=self.created,
            metrics=self.metrics,
            labels=self.labels,
        )


class ModelSummary(BaseModel):
    """One model version as the management API shows it."""

    tag: str
    version: str
    stage: str
    active: bool
    created: datetime
    metrics: dict[str, float]
    labels: dict[str, str]


def _bentoml() -> Any:
    import bentoml

    return bentoml


def _get(tag: str) -> Any:
    bentoml = _bentoml()
    try:
        return bentoml.models.get(tag)
    except (bentoml.exceptions.BentoMLException, ValueError) as exc:
        # NotFound, or a string that is not a valid tag at all: either way, no such model.
        raise ModelNotFound(f"model {tag!r} is not in the BentoML store") from exc


def full_tag(tag: str) -> str:
    """Accept `name:version`, a bare version or `latest`; return the store's full tag."""
    return str(_get(tag if ":" in tag else f"{MODEL_NAME}:{tag}").tag)


def exists(tag: str) -> bool:
    """Whether the store holds `tag` (`name:version`, a bare version or `latest`)."""
    try:
        full_tag(tag)
    except ModelNotFound:
        return False
    return True


def save_model(
    pipeline: Any,
    metadata: BundleMetadata,
    reference: pd.DataFrame,
    *,
    labels: dict[str, str],
) -> tuple[str, BundleMetadata]:
    """Write a bundle into the store as `sproxxo-fraud`; returns its tag and final metadata."""
    bentoml = _bentoml()
    with tempfile.TemporaryDirectory() as tmp:
        done = write_bundle(Path(tmp), pipeline, metadata, reference)
        with bentoml.models.create(
            MODEL_NAME,
            labels={"stage": "candidate", **labels},
            metadata=done.model_dump(mode="json"),
        ) as model:
            for item in Path(tmp).iterdir():
                shutil.copy2(item, Path(model.path) / item.name)
        return str(model.tag), done


def record(model: Any) -> ModelRecord:
    """A `ModelRecord` for a BentoML model object."""
    meta = dict(model.info.metadata)
    return ModelRecord(
        tag=str(model.tag),
        version=model.tag.version,
        stage=model.info.labels.get("stage", "candidate"),
        labels=dict(model.info.labels),
        created=model.info.creation_time,
        metrics={k: float(v) for k, v in dict(meta.get("metrics", {})).items()},
        metadata=meta,
    )


def list_models() -> list[ModelRecord]:
    """Every `sproxxo-fraud` version, newest first."""
    bentoml = _bentoml()
    try:
        models = bentoml.models.list(MODEL_NAME)
    except bentoml.exceptions.NotFound:
        return []
    return sorted((record(m) for m in models), key=lambda r: r.created, reverse=True)


def get_record(tag: str) -> ModelRecord:
    """The record of one version; raises `ModelNotFound` if absent."""
    return record(_get(full_tag(tag)))


def model_path(tag: str) -> Path:
    """Folder of a model version in the store."""
    return Path(_get(full_tag(tag)).path)


@dataclass(frozen=True)
class Trust:
    """What serving trusts: the promotion key's public half, and whether unsigned models
    are refused (everywhere but dev)."""

    verify_key: str
    signed_only: bool


def trust(settings: Settings) -> Trust:
    """What a service trusts: the configured verify key (dev: the local key pair's), and
    unsigned models refused everywhere but dev."""
    return Trust(
        verify_key=settings.model_verify_key or dev_verify_key(settings.keys_dir),
        signed_only=settings.signed_models_only,
    )


def load_model(tag: str, *, trust: Trust | None = None) -> ModelBundle:
    """Load and verify a model version: signature (when `trust` is given: serving), then
    checksums, schema and dependency contract, and only then unpickle."""
    model = _get(full_tag(tag))
    raw = dict(model.info.metadata)
    if trust is not None:
        verify_or_raise(raw, trust.verify_key, required=trust.signed_only, tag=str(model.tag))
    try:
        metadata = BundleMetadata.model_validate(raw)
    except ValueError as exc:
        raise ModelRefused(f"model {model.tag} has missing or invalid metadata") from exc
    return load_bundle(Path(model.path), metadata, tag=str(model.tag))


def sign_model(tag: str, signer: Signer) -> Signature:
    """Sign a version's manifest (its metadata, checksums included) and store the
    signature with it."""
    model = _get(full_tag(tag))
    signature = sign_manifest(dict(model.info.metadata), signer)
    model.info.metadata["signature"] = signature.as_metadata()
    model.flush()
    return signature


def set_stage(tag: str, stage: Stage, *, notes: dict[str, str] | None = None, **extra: str) -> None:
    """Move a version to a stage; promoting a champion retires the previous one.

    `extra` become labels (short, label-safe values); `notes` go into the metadata.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    target = _get(full_tag(tag))
    if stage == "champion":
        for other in list_models():
            if other.tag != str(target.tag) and other.stage == "champion":
                _relabel(_get(other.tag), stage="retired")
    if notes:
        target.info.metadata.setdefault("notes", {}).update(notes)
    _relabel(target, stage=stage, **extra)


def _relabel(model: Any, **labels: str) -> None:
    # ModelInfo is frozen but its labels dict is not: update it and rewrite model.yaml.
    model.info.labels.update(labels)
    model.flush()
    logger.info("model %s labels now %s", model.tag, dict(model.info.labels))


def champion_tag() -> str | None:
    """The current champion's tag, if any."""
    champions = [r for r in list_models() if r.stage == "champion"]
    return champions[0].tag if champions else None


def delete_model(tag: str) -> None:
    """Remove a version from the store."""
    _bentoml().models.delete(full_tag(tag))
