"""The promotion gate: when a candidate may replace the champion.

A candidate must clear metric floors and be no worse than the current champion, scored on
the same data, within tolerances. With no champion at all (a first local model, promoted by
`training.train --bootstrap`) only the floors apply; a forced promotion skips the gate and
must record its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Floors every champion must clear, and how much worse than the incumbent is tolerated.
GATE_FLOORS: Final[dict[str, float]] = {"roc_auc": 0.95, "average_precision": 0.70}
GATE_TOLERANCE: Final[dict[str, float]] = {"roc_auc": 0.002, "average_precision": 0.01}
GATE_COST_TOLERANCE: Final = 0.02  # relative


def gate(candidate: dict[str, float], champion: dict[str, float] | None) -> dict[str, list[str]]:
    """Promotion verdict: the failures (empty = promote) and the checks that passed."""
    failures: list[str] = []
    passed: list[str] = []
    for metric, floor in GATE_FLOORS.items():
        (passed if candidate[metric] >= floor else failures).append(
            f"{metric} {candidate[metric]:.4f} vs floor {floor}"
        )
    if champion is not None:
        for metric, tol in GATE_TOLERANCE.items():
            ok = candidate[metric] >= champion[metric] - tol
            (passed if ok else failures).append(
                f"{metric} {candidate[metric]:.4f} vs champion {champion[metric]:.4f} (-{tol})"
            )
        limit = champion["expected_cost"] * (1 + GATE_COST_TOLERANCE)
        (passed if candidate["expected_cost"] <= limit else failures).append(
            f"expected_cost {candidate['expected_cost']:.0f} vs champion "
            f"{champion['expected_cost']:.0f} (+{GATE_COST_TOLERANCE:.0%})"
        )
    return {"failures": failures, "passed": passed}


#: The environment variable that marks a CI runner (GitHub Actions sets it to "true").
CI_MARKER: Final = "GITHUB_ACTIONS"


def bootstrap_problem(environ: Mapping[str, str]) -> str | None:
    """Why a bootstrap promotion (no champion yet, floors only) must not happen here: on a
    CI runner the store starts empty every time, so the champion must be imported instead."""
    if environ.get(CI_MARKER) == "true":
        return "--bootstrap is refused in CI: import the current champion before training"
    return None
