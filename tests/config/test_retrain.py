"""The weekly retrain cannot bypass the promotion gate or publish an unapproved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / ".github" / "workflows" / "train.yml"


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TRAIN.read_text(encoding="utf-8"))
    return loaded


def _runs(job: dict[str, Any]) -> list[str]:
    return [str(step.get("run", "")) for step in job["steps"]]


def test_every_retrain_job_runs_on_main_only() -> None:
    """A dispatch from another branch runs nothing (its code could skip the gate)."""
    for name, job in _workflow()["jobs"].items():
        assert job.get("if") == "github.ref == 'refs/heads/main'", name


def test_champion_is_imported_before_training_and_before_the_gate() -> None:
    """On a fresh runner the store holds the real champion before training and before the
    gate, so a new model is a challenger and is compared with the incumbent."""
    jobs = _workflow()["jobs"]
    train = _runs(jobs["train"])
    imported = next(i for i, run in enumerate(train) if "import_champion.sh" in run)
    trained = next(i for i, run in enumerate(train) if "training.train" in run)
    assert imported < trained
    promote = _runs(jobs["promote"])
    gate = next(i for i, run in enumerate(promote) if "training.promote" in run)
    assert any("import_champion.sh" in run for run in promote[:gate])


def test_no_workflow_bootstraps_a_champion() -> None:
    """--bootstrap (which promotes through the floors only) appears in no workflow."""
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        assert "--bootstrap" not in path.read_text(encoding="utf-8"), path.name


def test_only_the_approved_promotion_can_write_or_sign() -> None:
    """train/evaluate use the read-only training identity; only `promote`, behind the
    model-promotion environment, uses the identity that writes the bucket and signs."""
    jobs = _workflow()["jobs"]

    def identities(job: dict[str, Any]) -> set[str]:
        return {
            step["with"]["service_account"]
            for step in job["steps"]
            if str(step.get("uses", "")).startswith("google-github-actions/auth@")
        }

    for name in ("train", "evaluate"):
        assert identities(jobs[name]) == {"${{ vars.GCP_TRAINING_SERVICE_ACCOUNT }}"}, name
        assert not any(
            "gcloud storage cp" in r and "gs://" in r.split()[-1] for r in _runs(jobs[name])
        )
    promote = jobs["promote"]
    assert promote["environment"] == "model-promotion"
    assert identities(promote) == {"${{ vars.GCP_PROMOTION_SERVICE_ACCOUNT }}"}
    step = next(s for s in promote["steps"] if "training.promote" in str(s.get("run", "")))
    assert step["env"]["SPROXXO_MODEL_SIGNING_KEY"].startswith("kms://")


def test_published_champion_generation_is_pinned_for_release() -> None:
    """The promote job records the object generation it wrote; release copies exactly it."""
    promote = "\n".join(_runs(_workflow()["jobs"]["promote"]))
    assert "value(generation)" in promote
    assert "CHAMPION_MODEL_GENERATION" in promote
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert "champion.bentomodel#${CHAMPION_MODEL_GENERATION}" in release
