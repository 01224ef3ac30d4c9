"""`python -m training.promote TAG --shadow-report compare.json`: the gate weighs the live
champion/challenger evidence and records it.

The CLI cases run as subprocesses against a throw-away store holding a champion and a
candidate trained identically (so the offline gate passes and only the shadow evidence
decides); the reports come from the compare job over a constructed shadow log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sproxxo.errors import EXIT_DATA, EXIT_GATE, EXIT_OK
from sproxxo.jobs.compare import CompareReport, CompareRequest, compare
from sproxxo.jobs.promote import read_shadow_evidence
from sproxxo.jobs.quality import LogSource
from sproxxo.ml.promotion import (
    GATE_COST_TOLERANCE,
    SHADOW_MIN_LABELLED_FRAUDS,
    SHADOW_MIN_LABELLED_ROWS,
    ShadowEvidence,
    shadow_gate,
)
from tests.monitoring.shadow_log import CHALLENGER, CHAMPION, DAY, write_files

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 240
TRAIN = ("training.train", "--rows", "20000", "--max-iter", "30", "--seed", "5")
ROWS = ("--rows", "20000")


def _env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BENTOML_HOME": str(state / "bentoml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "SPROXXO_STATE_DIR": str(state),
        "SPROXXO_LOG_LEVEL": "WARNING",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_ENABLE_TELEMETRY": "false",
    }


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _tag(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def _good_report(folder: Path, **kw: Any) -> CompareReport:
    """The compare job's report over the constructed shadow log (scaled, tags given)."""
    source = LogSource(log_dir=folder / "log", labels_dir=folder / "labels")
    write_files(source.log_dir, source.labels_dir, **kw)
    return compare(CompareRequest(source, DAY, DAY.replace(day=2), folder / "out"))


def _reports(folder: Path, champion: str, candidate: str) -> dict[str, Path]:
    """compare.json files: the candidate cheaper on 1,200 labelled rows, then the same
    report about another challenger, with too few labels, and with the costs swapped."""
    good = _good_report(folder, scale=50, champion=champion, challenger=candidate)
    other = good.challenger.model_copy(update={"model_tag": "sproxxo-fraud:someoneelse"})
    worse = good.model_copy(
        update={
            "champion": good.champion.model_copy(update={"labelled": good.challenger.labelled}),
            "challenger": good.challenger.model_copy(update={"labelled": good.champion.labelled}),
        }
    )
    variants = {
        "good": good,
        "other": good.model_copy(update={"challenger": other}),
        "few": good.model_copy(update={"labelled_rows": 100, "labelled_frauds": 5}),
        "worse": worse,
    }
    paths = {}
    for name, report in variants.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(report.model_dump_json(), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A champion, an identical candidate, and promote runs with each shadow report."""
    state = tmp_path_factory.mktemp("shadow-state")
    env = _env(state)
    champion = _tag(_finish(_start(env, *TRAIN, "--bootstrap")))
    candidate = _tag(_finish(_start(env, *TRAIN, "--stage", "candidate")))
    paths = _reports(state / "reports", champion, candidate)
    paths["missing"] = state / "reports" / "absent.json"
    promote = ("training.promote", candidate, *ROWS, "--shadow-report")
    refused = {
        name: _start(env, *promote, str(paths[name]))
        for name in ("other", "few", "worse", "missing")
    }
    results: dict[str, Any] = {name: _finish(proc) for name, proc in refused.items()}
    results["good"] = _finish(_start(env, *promote, str(paths["good"])))
    return {**results, "state": state, "champion": champion, "candidate": candidate}


def _model_yaml(runs: dict[str, Any], tag: str) -> dict[str, Any]:
    name, version = tag.split(":")
    path = runs["state"] / "bentoml" / "models" / name / version / "model.yaml"
    return dict(yaml.safe_load(path.read_text()))


def _refusal(runs: dict[str, Any], case: str) -> list[str]:
    result = runs[case]
    assert result.returncode == EXIT_GATE, result.stderr[-2000:]
    assert "not promoted" in result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["gate"]["failures"] == []  # identical models: only the evidence refuses
    return list(report["shadow"]["failures"])


def test_promote_shadow_report_of_another_challenger_is_refused(runs: dict[str, Any]) -> None:
    """A report about a different challenger tag than TAG refuses the promotion."""
    assert _refusal(runs, "other") == [
        f"shadow report challenger sproxxo-fraud:someoneelse vs candidate {runs['candidate']}"
    ]


def test_promote_shadow_report_with_too_few_labels_says_so(runs: dict[str, Any]) -> None:
    """Too few labelled shadow rows refuse, saying the cost cannot be judged."""
    (failure,) = _refusal(runs, "few")
    assert failure.startswith("shadow labelled transactions 100 (5 fraud) vs floor")
    assert failure.endswith("too few to judge the expected cost")


def test_promote_shadow_report_with_a_costlier_challenger_is_refused(
    runs: dict[str, Any],
) -> None:
    """A challenger whose live expected cost exceeds the champion's (+2%) is refused."""
    (failure,) = _refusal(runs, "worse")
    assert failure.startswith("shadow expected cost 15.2083 vs champion 5.9583 USD/transaction")
    stage = _model_yaml(runs, runs["champion"])["labels"]["stage"]
    assert stage in {"champion", "retired"}  # "retired" once the good case has run


def test_promote_unreadable_shadow_report_exits_data(runs: dict[str, Any]) -> None:
    """A missing report is a one-line data error (exit 3), no traceback, nothing promoted."""
    result = runs["missing"]
    assert result.returncode == EXIT_DATA, result.stderr[-2000:]
    assert "error: shadow report" in result.stderr
    assert "cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_promote_with_good_shadow_evidence_records_it(runs: dict[str, Any]) -> None:
    """A cheaper challenger on enough labelled traffic is promoted; its labels and metadata
    record the evidence (shadow_gate label, shadow_* notes)."""
    result = runs["good"]
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["promoted"] is True
    assert report["shadow"]["failures"] == []
    info = _model_yaml(runs, runs["candidate"])
    assert info["labels"]["stage"] == "champion"
    assert info["labels"]["promoted_by"] == "gate"
    assert info["labels"]["shadow_gate"] == "passed"
    notes = info["metadata"]["notes"]
    assert notes["shadow_challenger_tag"] == runs["candidate"]
    assert notes["shadow_champion_tag"] == runs["champion"]
    assert (notes["shadow_labelled_rows"], notes["shadow_labelled_frauds"]) == ("1200", "400")
    assert notes["shadow_report"].endswith("good.json")
    assert notes["shadow_window"].startswith("2026-03-01T00:00:00+00:00/")
    assert _model_yaml(runs, runs["champion"])["labels"]["stage"] == "retired"


def _evidence(**overrides: Any) -> ShadowEvidence:
    values: dict[str, Any] = {
        "challenger_tag": "m:new",
        "champion_tag": "m:old",
        "labelled_rows": SHADOW_MIN_LABELLED_ROWS,
        "labelled_frauds": SHADOW_MIN_LABELLED_FRAUDS,
        "champion_cost": 10.0,
        "challenger_cost": 9.0,
    }
    return ShadowEvidence(**{**values, **overrides})


def test_shadow_gate_passes_a_cheaper_challenger_on_enough_labels() -> None:
    """At the labelled-rows and frauds floors, a cheaper challenger passes every check."""
    verdict = shadow_gate(_evidence(), candidate="m:new", champion="m:old")
    assert verdict["failures"] == []
    assert len(verdict["passed"]) == 4


@pytest.mark.parametrize(
    ("ratio", "passes"), [(1.0, True), (1 + GATE_COST_TOLERANCE, True), (1.03, False)]
)
def test_shadow_gate_cost_tolerance_is_relative(ratio: float, passes: bool) -> None:
    """The challenger may cost up to GATE_COST_TOLERANCE (2%) more than the champion."""
    evidence = _evidence(champion_cost=10.0, challenger_cost=10.0 * ratio)
    verdict = shadow_gate(evidence, candidate="m:new", champion="m:old")
    assert (verdict["failures"] == []) is passes


@pytest.mark.parametrize(
    "overrides",
    [
        {"labelled_rows": SHADOW_MIN_LABELLED_ROWS - 1},
        {"labelled_frauds": SHADOW_MIN_LABELLED_FRAUDS - 1},
    ],
)
def test_shadow_gate_too_few_labels_skips_the_cost(overrides: dict[str, int]) -> None:
    """Below either floor the verdict says so and does not compare costs at all."""
    evidence = _evidence(challenger_cost=99.0, **overrides)
    verdict = shadow_gate(evidence, candidate="m:new", champion="m:old")
    (failure,) = verdict["failures"]
    assert failure.endswith("too few to judge the expected cost")
    assert not any("expected cost" in p and "USD" in p for p in verdict["passed"])


def test_shadow_gate_refuses_a_report_about_another_champion() -> None:
    """Evidence gathered against a champion that is no longer the champion is refused."""
    verdict = shadow_gate(_evidence(), candidate="m:new", champion="m:newer")
    assert verdict["failures"] == ["shadow report champion m:old vs current champion m:newer"]


def test_read_shadow_evidence_takes_the_pair_counts_and_costs(tmp_path: Path) -> None:
    """The gate reads the pair, the labelled counts, each model's cost per labelled
    transaction and the window from a compare.json."""
    path = tmp_path / "compare.json"
    path.write_text(_good_report(tmp_path).model_dump_json(), encoding="utf-8")
    assert read_shadow_evidence(path) == ShadowEvidence(
        challenger_tag=CHALLENGER,
        champion_tag=CHAMPION,
        labelled_rows=24,
        labelled_frauds=8,
        champion_cost=365 / 24,
        challenger_cost=143 / 24,
        window="2026-03-01T00:00:00+00:00/2026-03-02T00:00:00+00:00",
    )
