"""The promotion gate: make a model the champion only if it is no worse than the current one.

    python -m training.promote sproxxo-fraud:abc123            # gated
    python -m training.promote sproxxo-fraud:abc123 --force --reason "hotfix INC-42"

Both models are scored on the same evaluation data; the candidate must clear the metric
floors and be no worse than the champion within the tolerances in `sproxxo.model.gate`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence

from sproxxo import store
from sproxxo.cli import GateRefused, configure_logging, run
from sproxxo.model import gate
from sproxxo.promotion import promote_to_champion
from sproxxo.settings import get_settings
from sproxxo.signing import signer_for
from training.evaluate import score
from training.train import add_source_args, load_data

logger = logging.getLogger("training.promote")


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate candidate and champion on the same data, then promote or refuse."""
    p = argparse.ArgumentParser(prog="python -m training.promote", description=__doc__)
    p.add_argument("tag", help="candidate model tag")
    p.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    p.add_argument("--reason", default="", help="why the gate was skipped (recorded)")
    p.add_argument("--tracking-uri", default=None)
    add_source_args(p)
    p.set_defaults(rows=50_000, seed=2024)
    args = p.parse_args(argv)
    if args.force and not args.reason.strip():
        p.error("--force needs --reason")
    settings = get_settings()
    configure_logging(settings.log_level)
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home.resolve()))
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow_uri

    candidate = store.load_model(args.tag)
    champion_tag = store.champion_tag()
    if champion_tag == candidate.tag:
        print(f"{candidate.tag} is already the champion")
        return 0
    data = load_data(args)
    cand_metrics = score(candidate, data)
    champ_metrics = score(store.load_model(champion_tag), data) if champion_tag else None
    verdict = gate(cand_metrics, champ_metrics)
    report = {"candidate": candidate.tag, "champion": champion_tag, "gate": verdict}
    print(json.dumps(report, indent=2))
    if verdict["failures"] and not args.force:
        raise GateRefused(f"{candidate.tag} not promoted: " + "; ".join(verdict["failures"]))
    promote_to_champion(
        candidate.tag,
        mlflow_version=candidate.metadata.mlflow_version,
        tracking_uri=tracking_uri,
        signer=signer_for(settings.model_signing_key, dev_folder=settings.keys_dir),
        promoted_by="force" if args.force else "gate",
        notes={"promotion_reason": args.reason} if args.force else {},
    )
    print(f"promoted {candidate.tag} to champion")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
