"""Champion and challenger on the same traffic: the shadow model's answers in the prediction log.

The report covers the real (non-synthetic) transactions logged in [since, until) that carry
a shadow score, for one pair of models: the challenger asked for, else the shadow of the
latest such record, and the champion that scored that record. Rows of other pairs, and
rows without a shadow score (no shadow set, or the shadow queue dropped the batch), are
counted and left out. For that traffic it gives:

* the agreement matrix: champion decision x challenger decision, counts and shares of the
  compared rows, and the agreement rate (the diagonal);
* each model's decision mix;
* on the labelled part (delayed labels, where they exist), each model's precision and
  recall of flagged (review or decline) and of decline, and expected cost, with the
  definitions and `CostModel` costs of `sproxxo.jobs.quality`.

Writes `compare.json` (`CompareReport`, the promotion gate's evidence:
`python -m training.promote TAG --shadow-report compare.json`) and `compare.html`.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Final

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from sproxxo.errors import DataSourceError, FeatureSchemaMismatch, InsufficientData
from sproxxo.jobs.quality import (
    LogSource,
    Quality,
    Role,
    assess,
    latest_predictions,
    read_source_labels,
    read_window,
    tally,
)
from sproxxo.policy import CostModel
from sproxxo.schemas import Decision

logger = logging.getLogger(__name__)

JSON_FILE: Final = "compare.json"
HTML_FILE: Final = "compare.html"
DECISIONS: Final = tuple(d.value for d in Decision)
SHADOW_TAG: Final = "shadow_model_tag"
SHADOW_DECISION: Final = "shadow_decision"


class DecisionMix(BaseModel):
    """How often a model chose each decision on the compared rows."""

    model_config = ConfigDict(frozen=True)

    counts: dict[str, int]
    shares: dict[str, float]


class Agreement(BaseModel):
    """Champion decision (outer key) x challenger decision (inner key)."""

    model_config = ConfigDict(frozen=True)

    counts: dict[str, dict[str, int]]
    rates: dict[str, dict[str, float]]
    agreement_rate: float


class ModelSide(BaseModel):
    """One model of the pair: its decisions, and its quality on the labelled rows."""

    model_config = ConfigDict(frozen=True)

    model_tag: str
    decision_mix: DecisionMix
    labelled: Quality | None  # null when no compared row has a label yet


class CompareReport(BaseModel):
    """What `compare.json` holds."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    champion: ModelSide
    challenger: ModelSide
    rows: int
    unshadowed_rows: int
    other_pair_rows: int
    agreement: Agreement
    labelled_rows: int
    labelled_frauds: int
    costs: CostModel


@dataclass(frozen=True)
class CompareRequest:
    """The window, where the data is, which challenger, the costs, the output folder."""

    source: LogSource
    since: datetime
    until: datetime
    out: Path
    challenger: str = ""
    costs: CostModel = field(default_factory=CostModel)


def shadowed(predictions: pd.DataFrame) -> pd.DataFrame:
    """The latest record of each transaction that carries a shadow decision."""
    if predictions.empty or not {SHADOW_TAG, SHADOW_DECISION} <= set(predictions.columns):
        return predictions.iloc[0:0]
    rows = latest_predictions(predictions)
    return rows[rows[SHADOW_TAG].notna() & rows[SHADOW_DECISION].notna()]


def pick_pair(rows: pd.DataFrame, challenger: str) -> tuple[str, str]:
    """(champion tag, challenger tag): `challenger` (else the latest row's shadow) and the
    champion of the latest row it scored; raises InsufficientData when it scored none."""
    if challenger:
        rows = rows[rows[SHADOW_TAG] == challenger]
    if rows.empty:
        which = f" from {challenger}" if challenger else ""
        raise InsufficientData(f"no transaction in the window carries a shadow score{which}")
    latest = rows.sort_values("logged_at", kind="stable").iloc[-1]
    return str(latest["model_tag"]), str(latest[SHADOW_TAG])


def check_decisions(rows: pd.DataFrame) -> None:
    """Refuse decisions that are not approve, review or decline, naming the first one."""
    for column in ("decision", SHADOW_DECISION):
        unknown = rows.loc[~rows[column].isin(DECISIONS), column]
        if not unknown.empty:
            raise FeatureSchemaMismatch(
                f"prediction log: {column} {unknown.iloc[0]!r} is not one of {DECISIONS}"
            )


def decision_mix(decisions: pd.Series) -> DecisionMix:
    """Counts and shares of each decision."""
    counts = {d: int((decisions == d).sum()) for d in DECISIONS}
    total = sum(counts.values())
    return DecisionMix(counts=counts, shares={d: n / total for d, n in counts.items()})


def agreement(rows: pd.DataFrame) -> Agreement:
    """The champion x challenger decision matrix of the compared rows."""
    counts = {
        c: {
            s: int(((rows["decision"] == c) & (rows[SHADOW_DECISION] == s)).sum())
            for s in DECISIONS
        }
        for c in DECISIONS
    }
    total = len(rows)
    return Agreement(
        counts=counts,
        rates={c: {s: n / total for s, n in row.items()} for c, row in counts.items()},
        agreement_rate=sum(counts[d][d] for d in DECISIONS) / total,
    )


def side(
    rows: pd.DataFrame, labelled: pd.DataFrame, *, tag: str, role: Role, costs: CostModel
) -> ModelSide:
    """One model's decision mix and labelled quality (role picks the decision column)."""
    column = "decision" if role == "champion" else SHADOW_DECISION
    quality = (
        assess(tally(labelled, decision_column=column, model_tag=tag, role=role), costs)
        if len(labelled)
        else None
    )
    return ModelSide(model_tag=tag, decision_mix=decision_mix(rows[column]), labelled=quality)


def build_report(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    since: datetime,
    until: datetime,
    costs: CostModel,
    challenger: str = "",
) -> CompareReport:
    """Compare the champion and the challenger on the window's shadowed transactions."""
    candidates = shadowed(predictions)
    champion_tag, challenger_tag = pick_pair(candidates, challenger)
    pair = (candidates["model_tag"] == champion_tag) & (candidates[SHADOW_TAG] == challenger_tag)
    rows = candidates[pair]
    check_decisions(rows)
    known = labels[["transaction_id", "is_fraud"]].astype({"transaction_id": str})
    labelled = rows.merge(known, on="transaction_id", how="inner")
    return CompareReport(
        since=since,
        until=until,
        champion=side(rows, labelled, tag=champion_tag, role="champion", costs=costs),
        challenger=side(rows, labelled, tag=challenger_tag, role="shadow", costs=costs),
        rows=len(rows),
        unshadowed_rows=predictions["transaction_id"].nunique() - len(candidates),
        other_pair_rows=len(candidates) - len(rows),
        agreement=agreement(rows),
        labelled_rows=len(labelled),
        labelled_frauds=int((labelled["is_fraud"] == 1).sum()),
        costs=costs,
    )


def labels_if_any(source: LogSource) -> pd.DataFrame:
    """The stored labels, or none yet (the report then has no labelled part)."""
    try:
        return read_source_labels(source)
    except InsufficientData as exc:
        logger.info("comparing without labels: %s", exc)
        return pd.DataFrame({"transaction_id": [], "is_fraud": []})


def compare(request: CompareRequest) -> CompareReport:
    """Build the report of the window and write `compare.json` and `compare.html`."""
    predictions = read_window(request.source, since=request.since, until=request.until)
    report = build_report(
        predictions,
        labels_if_any(request.source),
        since=request.since,
        until=request.until,
        costs=request.costs,
        challenger=request.challenger,
    )
    request.out.mkdir(parents=True, exist_ok=True)
    (request.out / JSON_FILE).write_text(report.model_dump_json(indent=2), encoding="utf-8")
    (request.out / HTML_FILE).write_text(render_html(report), encoding="utf-8")
    return report


def load_report(path: Path) -> CompareReport:
    """A `compare.json` read back; raises DataSourceError when missing or malformed."""
    try:
        return CompareReport.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise DataSourceError(f"shadow report {path} cannot be read: {exc}") from exc
    except ValidationError as exc:
        raise DataSourceError(f"shadow report {path} is not a compare.json: {exc}") from exc


def summary_line(report: CompareReport) -> str:
    """One line: the pair, the rows, the agreement and the labelled costs."""
    line = (
        f"{report.champion.model_tag} vs {report.challenger.model_tag}: {report.rows} "
        f"transactions, agreement {report.agreement.agreement_rate:.1%}, "
        f"{report.labelled_rows} labelled"
    )
    champion, challenger = report.champion.labelled, report.challenger.labelled
    if champion is not None and challenger is not None:
        line += (
            f", expected cost {champion.expected_cost_per_row:.2f} vs "
            f"{challenger.expected_cost_per_row:.2f} USD/transaction"
        )
    return line


_PAGE: Final = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Champion vs challenger</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #999;padding:4px 10px;text-align:right}th{background:#eee}</style>
</head><body>
<h1>Champion $champion vs challenger $challenger</h1>
<p>Logged $since to $until: $rows transactions scored by both ($unshadowed without a shadow
score, $other scored by another pair left out); $labelled labelled ($frauds fraud).</p>
<h2>Agreement ($agreement_rate agree)</h2>
<p>Rows: champion decision; columns: challenger decision; counts (share of rows).</p>
$matrix
<h2>Decision mix</h2>
$mix
<h2>Labelled transactions</h2>
<p>Flagged = review or decline. Expected cost (USD): approved frauds' amounts + $review_cost
per review + $false_decline_cost per declined legitimate transaction.</p>
$quality
</body></html>
""")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _quality_rows(report: CompareReport) -> list[list[str]]:
    rows = []
    for name, model in (("champion", report.champion), ("challenger", report.challenger)):
        q = model.labelled
        if q is None:
            continue
        rows.append(
            [
                f"{name} {model.model_tag}",
                *map(_pct, (q.precision, q.recall, q.decline_precision, q.decline_recall)),
                f"{q.expected_cost:,.2f}",
                f"{q.expected_cost_per_row:.3f}",
            ]
        )
    return rows


def _quality_html(report: CompareReport) -> str:
    rows = _quality_rows(report)
    if not rows:
        return "<p>No compared transaction has a label yet.</p>"
    header = ["model", "precision", "recall", "decline precision", "decline recall"]
    return _table([*header, "expected cost", "per transaction"], rows)


def render_html(report: CompareReport) -> str:
    """The report as one self-contained HTML page (standard library only)."""
    a = report.agreement
    matrix = _table(
        ["champion \\ challenger", *DECISIONS],
        [[c, *(f"{a.counts[c][s]} ({a.rates[c][s]:.1%})" for s in DECISIONS)] for c in DECISIONS],
    )
    mix = _table(
        ["model", *DECISIONS],
        [
            [f"{name} {m.model_tag}", *(_pct(m.decision_mix.shares[d]) for d in DECISIONS)]
            for name, m in (("champion", report.champion), ("challenger", report.challenger))
        ],
    )
    return _PAGE.substitute(
        champion=html.escape(report.champion.model_tag),
        challenger=html.escape(report.challenger.model_tag),
        since=report.since.isoformat(),
        until=report.until.isoformat(),
        rows=report.rows,
        unshadowed=report.unshadowed_rows,
        other=report.other_pair_rows,
        labelled=report.labelled_rows,
        frauds=report.labelled_frauds,
        agreement_rate=_pct(a.agreement_rate),
        matrix=matrix,
        mix=mix,
        quality=_quality_html(report),
        review_cost=report.costs.review_cost,
        false_decline_cost=report.costs.false_decline_cost,
    )
