"""The promotion gate: when a candidate may replace the champion.

A candidate must clear metric floors and be no worse than the current champion, scored on
the same data, within tolerances. With no champion at all (a first local model, promoted by
`training.train --bootstrap`) only the floors apply; a forced promotion skips the gate and
must record its reason.

With shadow evidence (`python -m monitoring.compare`: both models on the same live traffic,
judged by the delayed labels) the candidate must also be the report's challenger, the report
must be about the current champion, the labelled shared traffic must be large enough to
judge (`SHADOW_MIN_LABELLED_ROWS`, `SHADOW_MIN_LABELLED_FRAUDS`), and the challenger's
expected cost per labelled transaction may exceed the champion's by `GATE_COST_TOLERANCE`
at most.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


#: Labelled transactions (and frauds among them) both models scored, below which the shadow
#: comparison cannot judge cost: a handful of missed frauds' amounts would decide it.
SHADOW_MIN_LABELLED_ROWS: Final = 1_000
SHADOW_MIN_LABELLED_FRAUDS: Final = 20


@dataclass(frozen=True)
class ShadowEvidence:
    """What the gate reads from a champion/challenger report: who was compared, on how many
    labelled transactions, at what expected cost per labelled transaction (USD)."""

    challenger_tag: str
    champion_tag: str
    labelled_rows: int
    labelled_frauds: int
    champion_cost: float | None  # null: no labelled row
    challenger_cost: float | None
    window: str = ""  # the report's [since, until) of logged_at, ISO, for the record


def _check(ok: bool, message: str, verdict: dict[str, list[str]]) -> None:
    verdict["passed" if ok else "failures"].append(message)


def shadow_gate(
    evidence: ShadowEvidence, *, candidate: str, champion: str | None
) -> dict[str, list[str]]:
    """Shadow verdict: the failures (empty = the evidence supports promotion) and passes."""
    verdict: dict[str, list[str]] = {"failures": [], "passed": []}
    _check(
        evidence.challenger_tag == candidate,
        f"shadow report challenger {evidence.challenger_tag} vs candidate {candidate}",
        verdict,
    )
    _check(
        evidence.champion_tag == champion,
        f"shadow report champion {evidence.champion_tag} vs current champion {champion}",
        verdict,
    )
    enough = _enough(evidence)
    _check(
        enough,
        f"shadow labelled transactions {evidence.labelled_rows} ({evidence.labelled_frauds} "
        f"fraud) vs floor {SHADOW_MIN_LABELLED_ROWS} ({SHADOW_MIN_LABELLED_FRAUDS} fraud): "
        + ("enough to judge" if enough else "too few to judge the expected cost"),
        verdict,
    )
    if enough and evidence.champion_cost is not None and evidence.challenger_cost is not None:
        limit = evidence.champion_cost * (1 + GATE_COST_TOLERANCE)
        _check(
            evidence.challenger_cost <= limit,
            f"shadow expected cost {evidence.challenger_cost:.4f} vs champion "
            f"{evidence.champion_cost:.4f} USD/transaction (+{GATE_COST_TOLERANCE:.0%})",
            verdict,
        )
    return verdict


def _enough(evidence: ShadowEvidence) -> bool:
    return (
        evidence.labelled_rows >= SHADOW_MIN_LABELLED_ROWS
        and evidence.labelled_frauds >= SHADOW_MIN_LABELLED_FRAUDS
    )


#: The environment variable that marks a CI runner (GitHub Actions sets it to "true").
CI_MARKER: Final = "GITHUB_ACTIONS"


def bootstrap_problem(environ: Mapping[str, str]) -> str | None:
    """Why a bootstrap promotion (no champion yet, floors only) must not happen here: on a
    CI runner the store starts empty every time, so the champion must be imported instead."""
    if environ.get(CI_MARKER) == "true":
        return "--bootstrap is refused in CI: import the current champion before training"
    return None
