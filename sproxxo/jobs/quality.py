"""Live model quality: delayed labels joined to the prediction log, per model tag and role.

A labelled prediction is judged once for the champion (`model_tag`, `decision`) and, when a
shadow model scored the same transaction, once more for the shadow (`shadow_model_tag`,
`shadow_decision`). Per (model tag, role) the job counts a `Tally`, then:

    precision          = flagged frauds / flagged     (flagged: review or decline, both
    recall             = flagged frauds / frauds       stop the fraud; null when 0 / 0)
    decline precision  = declined frauds / declined,  decline recall = declined frauds / frauds
    expected cost, USD = amount of the approved frauds (a missed fraud costs its amount)
                       + reviews x review_cost + declined legitimate x false_decline_cost

with `sproxxo.policy.CostModel` (defaults: 3 USD a review, 25 USD a false decline): the
costs training picks thresholds by, applied here to the logged decisions (rules included).
The latest log record and the latest label of a transaction count; synthetic traffic does
not. Locally the join is pandas over the file log and the stored labels; in production it
is one SQL query in BigQuery (`sproxxo.adapters.bigquery.quality_tallies`) that returns the
same tallies. The result is written as `quality.json` and exported as the gauges of
`LIVE_METRICS` (textfile, Pushgateway, Cloud Monitoring), labelled `model_tag` and `role`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from sproxxo.adapters.job_metrics import GaugePoint, push, write_textfile
from sproxxo.errors import InsufficientData
from sproxxo.jobs.labels import read_labels
from sproxxo.jobs.predictions import read_predictions
from sproxxo.policy import CostModel
from sproxxo.schemas import Decision

logger = logging.getLogger(__name__)

Role = Literal["champion", "shadow"]
#: The (model tag, decision) columns each role is judged on.
ROLE_COLUMNS: Final[dict[Role, tuple[str, str]]] = {
    "champion": ("model_tag", "decision"),
    "shadow": ("shadow_model_tag", "shadow_decision"),
}
FLAGGED: Final = (Decision.REVIEW.value, Decision.DECLINE.value)
JSON_FILE: Final = "quality.json"
TEXTFILE: Final = "quality.prom"
PUSH_JOB: Final = "sproxxo-quality"
#: The gauges this job exports (labels `model_tag`, `role`); monitoring/metrics_catalog.py
#: reads the names from here.
LIVE_METRICS: Final = {
    "sproxxo_live_precision": "Share of flagged (review or decline) labelled transactions "
    "that were fraud",
    "sproxxo_live_recall": "Share of labelled frauds that were flagged (review or decline)",
    "sproxxo_live_expected_cost": "Expected cost per labelled transaction, USD (approved "
    "frauds' amounts, reviews, false declines)",
    "sproxxo_live_labelled_total": "Labelled transactions in the job's window",
    "sproxxo_live_frauds_total": "Labelled frauds in the job's window",
}
LAST_RUN_METRIC: Final = "sproxxo_live_last_run_timestamp_seconds"
LIVE_METRIC_NAMES: Final = (*LIVE_METRICS, LAST_RUN_METRIC)


class Tally(BaseModel):
    """The counts behind one model's quality on labelled predictions."""

    model_config = ConfigDict(frozen=True)

    model_tag: str
    role: Role
    labelled: int
    frauds: int
    flagged: int
    flagged_frauds: int
    declined: int
    declined_frauds: int
    reviewed: int
    missed_fraud_amount: float


class Quality(BaseModel):
    """One model's live quality (module docstring for the definitions)."""

    model_config = ConfigDict(frozen=True)

    model_tag: str
    role: Role
    labelled: int
    frauds: int
    precision: float | None
    recall: float | None
    decline_precision: float | None
    decline_recall: float | None
    expected_cost: float
    expected_cost_per_row: float


class QualityReport(BaseModel):
    """What `quality.json` holds."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    costs: CostModel
    models: list[Quality]


@dataclass(frozen=True)
class LogSource:
    """Where the prediction log and the labels are: local files, or BigQuery tables."""

    log_dir: Path
    labels_dir: Path
    table: str = ""  # BigQuery prediction log; empty = the local files
    labels_table: str = ""  # BigQuery labels table; empty = the local label store


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def expected_cost(tally: Tally, costs: CostModel) -> float:
    """Missed fraud amounts + reviews x review cost + false declines x false-decline cost."""
    false_declines = tally.declined - tally.declined_frauds
    return (
        tally.missed_fraud_amount
        + tally.reviewed * costs.review_cost
        + false_declines * costs.false_decline_cost
    )


def assess(tally: Tally, costs: CostModel) -> Quality:
    """Precision, recall and expected cost of one tally."""
    cost = expected_cost(tally, costs)
    return Quality(
        model_tag=tally.model_tag,
        role=tally.role,
        labelled=tally.labelled,
        frauds=tally.frauds,
        precision=_ratio(tally.flagged_frauds, tally.flagged),
        recall=_ratio(tally.flagged_frauds, tally.frauds),
        decline_precision=_ratio(tally.declined_frauds, tally.declined),
        decline_recall=_ratio(tally.declined_frauds, tally.frauds),
        expected_cost=cost,
        expected_cost_per_row=cost / tally.labelled if tally.labelled else 0.0,
    )


def tally(frame: pd.DataFrame, *, decision_column: str, model_tag: str, role: Role) -> Tally:
    """Count one model's decisions (`decision_column`) against `is_fraud` and `amount`."""
    fraud = frame["is_fraud"].to_numpy() == 1
    decision = frame[decision_column]
    flagged = decision.isin(FLAGGED).to_numpy()
    declined = (decision == Decision.DECLINE.value).to_numpy()
    approved = (decision == Decision.APPROVE.value).to_numpy()
    amount = frame["amount"].fillna(0.0).to_numpy(dtype=float)
    return Tally(
        model_tag=model_tag,
        role=role,
        labelled=len(frame),
        frauds=int(fraud.sum()),
        flagged=int(flagged.sum()),
        flagged_frauds=int((flagged & fraud).sum()),
        declined=int(declined.sum()),
        declined_frauds=int((declined & fraud).sum()),
        reviewed=int((decision == Decision.REVIEW.value).sum()),
        missed_fraud_amount=float(amount[approved & fraud].sum()),
    )


def latest_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """The latest log record of each transaction (a retried request is logged twice)."""
    logged = pd.to_datetime(predictions["logged_at"], utc=True, format="ISO8601")
    ordered = predictions.assign(logged_at=logged).sort_values("logged_at", kind="stable")
    latest = ordered.drop_duplicates("transaction_id", keep="last")
    return latest.assign(transaction_id=latest["transaction_id"].astype(str))


def label_predictions(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The logged predictions that have a label, with its `is_fraud`."""
    if predictions.empty:
        return predictions.assign(is_fraud=pd.Series(dtype="int64"))
    known = labels[["transaction_id", "is_fraud"]].astype({"transaction_id": str})
    return latest_predictions(predictions).merge(known, on="transaction_id", how="inner")


def tallies(labelled: pd.DataFrame) -> list[Tally]:
    """One tally per (role, model tag) of labelled predictions, champion first."""
    found: list[Tally] = []
    for role, (tag_column, decision_column) in ROLE_COLUMNS.items():
        if tag_column not in labelled.columns or decision_column not in labelled.columns:
            continue
        scored = labelled[labelled[tag_column].notna() & labelled[decision_column].notna()]
        for tag, rows in scored.groupby(tag_column, sort=True):
            found.append(
                tally(rows, decision_column=decision_column, model_tag=str(tag), role=role)
            )
    return found


def tallies_from_rows(frame: pd.DataFrame) -> list[Tally]:
    """Tallies from rows of `TALLY_COLUMNS` (what the BigQuery query returns)."""
    return [Tally.model_validate(row) for row in frame.to_dict("records")]


def read_source_labels(source: LogSource) -> pd.DataFrame:
    """The latest label of each transaction, from the BigQuery labels table or the local
    label store; raises InsufficientData when there are none."""
    if source.labels_table:
        from sproxxo.adapters.bigquery import read_label_table

        labels = read_label_table(source.labels_table)
        if labels.empty:
            raise InsufficientData(f"bigquery labels table {source.labels_table} is empty")
        return labels
    return read_labels(source.labels_dir)


def read_window(source: LogSource, *, since: datetime, until: datetime) -> pd.DataFrame:
    """Real (non-synthetic) predictions logged in [since, until), files or BigQuery."""
    return read_predictions(
        source="bigquery" if source.table else "file",
        log_dir=source.log_dir,
        since=since,
        until=until,
        table=source.table,
    )


def window_tallies(source: LogSource, *, since: datetime, until: datetime) -> list[Tally]:
    """Tallies of the window: SQL in BigQuery when log and labels are both there, else a
    pandas join; raises InsufficientData when no prediction of the window has a label."""
    if source.table and source.labels_table:
        from sproxxo.adapters.bigquery import quality_tallies

        frame = quality_tallies(source.table, source.labels_table, since=since, until=until)
        found = tallies_from_rows(frame)
    else:
        labels = read_source_labels(source)
        found = tallies(label_predictions(read_window(source, since=since, until=until), labels))
    if not found:
        raise InsufficientData(f"no labelled predictions logged in [{since}, {until})")
    return found


def gauge_points(report: QualityReport, *, now: float) -> list[GaugePoint]:
    """The `LIVE_METRICS` gauges of a report (an undefined ratio is left out) and the time
    of the run."""
    points = [GaugePoint(LAST_RUN_METRIC, "End of the last live-quality run", now)]
    for model in report.models:
        labels = {"model_tag": model.model_tag, "role": model.role}
        values = {
            "sproxxo_live_precision": model.precision,
            "sproxxo_live_recall": model.recall,
            "sproxxo_live_expected_cost": model.expected_cost_per_row,
            "sproxxo_live_labelled_total": float(model.labelled),
            "sproxxo_live_frauds_total": float(model.frauds),
        }
        points.extend(
            GaugePoint(name, LIVE_METRICS[name], value, labels)
            for name, value in values.items()
            if value is not None
        )
    return points


@dataclass(frozen=True)
class QualityRequest:
    """The window, where the data is, the costs, and where the results go."""

    source: LogSource
    since: datetime
    until: datetime
    out: Path
    costs: CostModel = field(default_factory=CostModel)
    textfile: Path | None = None
    pushgateway_url: str = ""
    gcp_project: str = ""


def export(points: Sequence[GaugePoint], request: QualityRequest) -> None:
    """Write the textfile(s); push to the Pushgateway and Cloud Monitoring when configured."""
    for path in (request.out / TEXTFILE, request.textfile):
        if path is not None:
            write_textfile(path, points)
    if request.pushgateway_url:
        push(request.pushgateway_url, points, job=PUSH_JOB)
    if request.gcp_project:
        from sproxxo.adapters.gcp_monitoring import publish_points

        publish_points(points, project=request.gcp_project, what="live-quality")


def live_quality(request: QualityRequest) -> QualityReport:
    """Compute the window's live quality per model tag and role, write `quality.json` and
    export the gauges."""
    found = window_tallies(request.source, since=request.since, until=request.until)
    report = QualityReport(
        since=request.since,
        until=request.until,
        costs=request.costs,
        models=[assess(t, request.costs) for t in found],
    )
    request.out.mkdir(parents=True, exist_ok=True)
    (request.out / JSON_FILE).write_text(report.model_dump_json(indent=2), encoding="utf-8")
    export(gauge_points(report, now=time.time()), request)
    return report


def summary_lines(report: QualityReport) -> str:
    """One line per model: role, tag, labelled rows, precision, recall, cost per row."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    return "\n".join(
        f"{m.role} {m.model_tag}: {m.labelled} labelled ({m.frauds} fraud), precision "
        f"{pct(m.precision)}, recall {pct(m.recall)}, expected cost "
        f"{m.expected_cost_per_row:.2f} USD/transaction"
        for m in report.models
    )
