"""Making a model the champion: the one place it happens, after the gate.

Sign the manifest with the promotion key, move the MLflow `champion` alias, label the
store. Called by `training.promote` (the gate, or a forced promotion with its reason) and
by `training.train --bootstrap` (the first local model, through the gate's floors).
"""

from __future__ import annotations

import logging

from sproxxo import store, tracking
from sproxxo.signing import Signer

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
