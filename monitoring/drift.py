"""Drift report: logged predictions of a time window against the model's reference sample.

    python -m monitoring.drift --model sproxxo-fraud:abc --since 2026-03-01 --until 2026-03-02 \
        --out reports/drift

Writes `drift_report.html` (Evidently, self-contained), `drift_summary.json` and `drift.prom`
(Prometheus textfile with the sproxxo_drift_* metrics) to --out. Exit codes: 0 no drift,
7 drift, 8 empty or too small window, 3 unreadable data or missing columns, 4 no model or no
reference sample (monitoring/README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from monitoring.common import read_predictions, run_cli, use_store_home, window
from sproxxo.bundle import read_reference
from sproxxo.cli import EXIT_DRIFT, EXIT_OK, configure_logging
from sproxxo.drift import DriftSummary, DriftThresholds, InsufficientData, drift_report
from sproxxo.errors import ModelUnavailable
from sproxxo.settings import get_settings

logger = logging.getLogger("monitoring.drift")

HTML_FILE: Final = "drift_report.html"
SUMMARY_FILE: Final = "drift_summary.json"
TEXTFILE: Final = "drift.prom"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.drift",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", default="", help="store tag (default: the champion)")
    model.add_argument("--model-dir", type=Path, help="a bundle folder instead of a store tag")
    p.add_argument("--since", help="ISO start, inclusive (default: --until minus 24h)")
    p.add_argument("--until", help="ISO end, exclusive (default: now)")
    p.add_argument("--out", type=Path, help="report folder (default: <reports>/drift/<until>)")
    p.add_argument("--log-dir", type=Path, help="local prediction log (default: settings)")
    p.add_argument("--source", choices=("file", "bigquery"), default="file")
    p.add_argument(
        "--all-models", action="store_true", help="keep rows scored by other model versions too"
    )
    p.add_argument("--textfile", type=Path, help="also write the metrics here (node_exporter)")
    p.add_argument("--gcp-project", default="", help="publish the metrics to Cloud Monitoring")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 on drift (scheduled jobs: the metrics carry the result)",
    )
    defaults = DriftThresholds()
    p.add_argument("--p-value", type=float, default=defaults.column_p_value)
    p.add_argument("--drift-share", type=float, default=defaults.drift_share)
    p.add_argument("--min-rows", type=int, default=defaults.min_rows)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Compare the window with the reference, write the reports, exit 7 on drift."""
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    since, until = window(args.since, args.until)
    tag, reference = load_reference(args.model, args.model_dir, settings.bentoml_home)
    current = read_predictions(
        source=args.source,
        log_dir=args.log_dir or settings.predictions_dir,
        since=since,
        until=until,
        table=settings.bigquery_predictions_table,
    )
    if tag and not args.all_models:
        current = only_model(current, tag)
    thresholds = DriftThresholds(
        column_p_value=args.p_value, drift_share=args.drift_share, min_rows=args.min_rows
    )
    report = drift_report(reference, current, thresholds=thresholds)
    out = args.out or settings.reports_dir / "drift" / f"{until:%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    report.save_html(out / HTML_FILE)
    write_summary(out / SUMMARY_FILE, report.summary, model=tag, since=since, until=until)
    version = tag.rpartition(":")[2] if tag else "unknown"
    for path in (out / TEXTFILE, args.textfile):
        if path is not None:
            write_textfile(path, report.summary, model_version=version)
    if args.gcp_project:
        from monitoring.gcp_metrics import publish

        publish(report.summary, project=args.gcp_project, model_version=version)
    print(verdict(report.summary, out))
    return EXIT_DRIFT if report.summary.drift_detected and not args.report_only else EXIT_OK


def load_reference(
    tag: str, model_dir: Path | None, bentoml_home: Path
) -> tuple[str, pd.DataFrame]:
    """(full tag or "", reference sample) of a bundle folder, a store tag or the champion."""
    if model_dir is not None:
        if not model_dir.is_dir():
            raise ModelUnavailable(f"--model-dir {model_dir} is not a folder")
        return "", read_reference(model_dir)
    use_store_home(bentoml_home)
    from sproxxo import store

    chosen = tag or store.champion_tag()
    if not chosen:
        raise ModelUnavailable("no --model given and the store has no champion")
    full = store.full_tag(chosen)
    return full, read_reference(store.model_path(full))


def only_model(current: pd.DataFrame, tag: str) -> pd.DataFrame:
    """Rows scored by `tag`; an empty window names the versions that were seen."""
    if current.empty or "model_tag" not in current.columns:
        return current
    kept = current[current["model_tag"] == tag].reset_index(drop=True)
    if kept.empty:
        seen = ", ".join(sorted(map(str, current["model_tag"].unique()))[:5])
        raise InsufficientData(
            f"no rows scored by {tag} in the window (seen: {seen}); "
            "pass --all-models to compare them anyway"
        )
    return kept


def write_summary(
    path: Path, summary: DriftSummary, *, model: str, since: object, until: object
) -> None:
    """The JSON summary, with the window and model it describes."""
    payload = {
        "model": model,
        "since": str(since),
        "until": str(until),
        **summary.model_dump(mode="json"),
    }
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def write_textfile(path: Path, summary: DriftSummary, *, model_version: str) -> None:
    """Prometheus textfile with the names listed in monitoring/exported_metrics.txt."""
    registry = CollectorRegistry()
    labels = ["model_version"]

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, labels, registry=registry).labels(model_version).set(value)

    gauge("sproxxo_drift_share", "Share of monitored features drifted", summary.drift_share)
    gauge(
        "sproxxo_drift_detected",
        "1 when the last drift run crossed a threshold",
        float(summary.drift_detected),
    )
    gauge(
        "sproxxo_drift_prediction_detected",
        "1 when the score or decision mix drifted",
        float(summary.prediction_drift),
    )
    gauge("sproxxo_drift_current_rows", "Rows in the window", summary.current_rows)
    gauge("sproxxo_drift_last_run_timestamp_seconds", "End of the last drift run", time.time())
    per_feature = Gauge(
        "sproxxo_drift_feature_detected",
        "1 when the feature drifted",
        [*labels, "feature"],
        registry=registry,
    )
    for column in summary.columns:
        if column.role == "feature":
            per_feature.labels(model_version, column.column).set(float(column.drifted))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def verdict(summary: DriftSummary, out: Path) -> str:
    """One line for humans and logs."""
    state = "DRIFT" if summary.drift_detected else "no drift"
    drifted = ", ".join(summary.drifted_features) or "none"
    return (
        f"{state}: share={summary.drift_share:.2f} "
        f"(alert at {summary.thresholds.drift_share:g}) features=[{drifted}] "
        f"prediction_drift={summary.prediction_drift} rows={summary.current_rows} -> {out}"
    )


if __name__ == "__main__":
    raise SystemExit(run_cli(main, None))
