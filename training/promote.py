"""The promotion gate: make a model the champion only if it is no worse than the current one.

    python -m training.promote sproxxo-fraud:abc123            # gated
    python -m training.promote sproxxo-fraud:abc123 --force --reason "hotfix INC-42"
    python -m training.promote sproxxo-fraud:abc123 --shadow-report reports/compare/compare.json

Both models are scored on the same data; the candidate must clear the floors and be no
worse than the champion within the tolerances of `sproxxo.ml.promotion.gate`. With
--shadow-report (`python -m monitoring.compare`'s compare.json) the candidate must also be
that report's challenger against the current champion, on enough labelled live traffic,
at an expected cost no worse than the champion's within the tolerance
(`sproxxo.ml.promotion.shadow_gate`); the evidence is recorded in the promoted model.
Prints the report as JSON (also when the gate refuses: exit 6; unreadable report: exit 3).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from sproxxo.errors import GateRefused
from sproxxo.jobs.cli import add_source_args, configure_logging, data_spec, run
from sproxxo.jobs.promote import PromoteRequest, promote
from sproxxo.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate candidate and champion on the same data, then promote or refuse."""
    p = argparse.ArgumentParser(prog="python -m training.promote", description=__doc__)
    p.add_argument("tag", help="candidate model tag")
    p.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    p.add_argument("--reason", default="", help="why the gate was skipped (recorded)")
    p.add_argument("--shadow-report", type=Path, help="compare.json of the candidate as shadow")
    add_source_args(p, rows=50_000, seed=2024)
    args = p.parse_args(argv)
    if args.force and not args.reason.strip():
        p.error("--force needs --reason")
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        request = PromoteRequest(
            args.tag, data_spec(args), args.force, args.reason, args.shadow_report
        )
        report = promote(request, settings)
    except GateRefused as refused:
        print(json.dumps(refused.report, indent=2))
        raise
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
