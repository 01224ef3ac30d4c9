"""`python -m monitoring.quality`: live precision, recall and expected cost per model tag and
role, exported as a textfile, to a real Pushgateway and as Cloud Monitoring time series."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring import quality
from sproxxo.adapters.gcp_monitoring import points_time_series
from sproxxo.adapters.job_metrics import GaugePoint, push
from sproxxo.errors import EXIT_EMPTY, EXIT_OK, DataSourceError
from sproxxo.jobs import quality as quality_job
from sproxxo.jobs.cli import run as run_cli
from sproxxo.policy import CostModel
from tests.monitoring.shadow_log import CHALLENGER, CHAMPION, OLD_SHADOW, WINDOW, write_files

ROOT = Path(__file__).resolve().parents[2]
PUSHGATEWAY = shutil.which("prometheus-pushgateway")
STARTUP_TIMEOUT_SECONDS = 30.0
CHAMPION_LABELS = {"model_tag": CHAMPION, "role": "champion"}
SHADOW_LABELS = {"model_tag": CHALLENGER, "role": "shadow"}


@pytest.fixture
def shadow_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """The constructed day written as a file log and a label store."""
    log_dir, labels_dir = tmp_path / "predictions", tmp_path / "labels"
    write_files(log_dir, labels_dir)
    return log_dir, labels_dir


def cli(log_dir: Path, labels_dir: Path, out: Path, *extra: str) -> int:
    """Run the quality CLI in-process the way `python -m` does."""
    args = [*WINDOW, "--log-dir", str(log_dir), "--labels-dir", str(labels_dir)]
    return run_cli(quality.main, [*args, "--out", str(out), *extra])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted model_tag/role labels): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k in ("model_tag", "role")}
            found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


def key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The `samples` key of a labelled series."""
    return name, tuple(sorted(labels.items()))


def test_quality_cli_reports_each_model_tag_and_role(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The champion is judged on its 29 labelled rows (9 frauds), each shadow on the rows it
    scored: exact precision, recall and expected cost (100 USD amounts, 3/25 USD costs)."""
    assert cli(*shadow_dirs, tmp_path) == EXIT_OK
    models = json.loads((tmp_path / quality_job.JSON_FILE).read_text())["models"]
    by_key = {(m["role"], m["model_tag"]): m for m in models}
    assert list(by_key) == [("champion", CHAMPION), ("shadow", CHALLENGER), ("shadow", OLD_SHADOW)]
    champion = by_key["champion", CHAMPION]
    assert (champion["labelled"], champion["frauds"]) == (29, 9)
    assert champion["precision"] == pytest.approx(6 / 11)
    assert champion["recall"] == pytest.approx(6 / 9)
    assert champion["decline_recall"] == pytest.approx(4 / 9)
    assert champion["expected_cost"] == 3 * 100 + 5 * 3 + 2 * 25
    shadow = by_key["shadow", CHALLENGER]
    assert (shadow["labelled"], shadow["frauds"], shadow["precision"]) == (24, 8, 0.7)
    assert (shadow["recall"], shadow["expected_cost"]) == (0.875, 143.0)
    old = by_key["shadow", OLD_SHADOW]
    assert (old["labelled"], old["precision"], old["recall"], old["expected_cost"]) == (
        1,
        None,
        None,
        0.0,
    )


def test_quality_textfile_holds_the_live_gauges(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """quality.prom (and --textfile) hold every LIVE_METRIC_NAMES gauge, per tag and role."""
    extra = tmp_path / "node_exporter" / "sproxxo_quality.prom"
    assert cli(*shadow_dirs, tmp_path / "out", "--textfile", str(extra)) == EXIT_OK
    text = (tmp_path / "out" / quality_job.TEXTFILE).read_text()
    assert extra.read_text() == text
    types = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert types == set(quality_job.LIVE_METRIC_NAMES)
    found = samples(text)
    assert found[key("sproxxo_live_recall", CHAMPION_LABELS)] == pytest.approx(6 / 9)
    assert found[key("sproxxo_live_precision", SHADOW_LABELS)] == pytest.approx(0.7)
    assert found[key("sproxxo_live_expected_cost", SHADOW_LABELS)] == pytest.approx(143 / 24)
    assert found[key("sproxxo_live_labelled_total", CHAMPION_LABELS)] == 29
    assert found[key("sproxxo_live_frauds_total", SHADOW_LABELS)] == 8


def test_quality_leaves_an_undefined_ratio_out(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A shadow with no flagged row and no fraud exports no precision or recall (not 0)."""
    assert cli(*shadow_dirs, tmp_path) == EXIT_OK
    found = samples((tmp_path / quality_job.TEXTFILE).read_text())
    old = {"model_tag": OLD_SHADOW, "role": "shadow"}
    assert key("sproxxo_live_labelled_total", old) in found
    assert key("sproxxo_live_precision", old) not in found
    assert key("sproxxo_live_recall", old) not in found


def test_quality_exits_empty_without_labels(
    shadow_dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No stored label exits EXIT_EMPTY with a one-line message."""
    log_dir, _ = shadow_dirs
    assert cli(log_dir, tmp_path / "none", tmp_path / "out") == EXIT_EMPTY
    assert "no labels stored" in capsys.readouterr().err


def test_quality_exits_empty_when_no_labelled_prediction_is_in_the_window(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Labels exist, but none for a prediction logged in the window: EXIT_EMPTY."""
    window = ["--since", "2026-04-01", "--until", "2026-04-02"]
    assert cli(*shadow_dirs, tmp_path, *window) == EXIT_EMPTY


def test_quality_expected_cost_adds_missed_amounts_reviews_and_false_declines() -> None:
    """Cost = approved frauds' amounts + reviews x review cost + false declines x its cost."""
    tally = quality_job.Tally(
        model_tag="m:1",
        role="champion",
        labelled=100,
        frauds=10,
        flagged=20,
        flagged_frauds=8,
        declined=5,
        declined_frauds=4,
        reviewed=15,
        missed_fraud_amount=250.0,
    )
    costs = CostModel(review_cost=2.0, false_decline_cost=30.0)
    assert quality_job.expected_cost(tally, costs) == 250.0 + 15 * 2.0 + 1 * 30.0
    assert quality_job.assess(tally, costs).expected_cost_per_row == pytest.approx(3.1)


def test_quality_gcp_time_series_carry_tag_and_role(
    shadow_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The Cloud Monitoring points are custom gauges with the same labels and values."""
    assert cli(*shadow_dirs, tmp_path) == EXIT_OK
    report = quality_job.QualityReport.model_validate_json(
        (tmp_path / quality_job.JSON_FILE).read_text()
    )
    series = points_time_series(quality_job.gauge_points(report, now=1.0))
    recall = [
        s for s in series if s["metric"]["type"] == "custom.googleapis.com/sproxxo/live_recall"
    ]
    assert [s["metric"]["labels"] for s in recall] == [CHAMPION_LABELS, SHADOW_LABELS]
    assert recall[1]["points"][0]["value"]["doubleValue"] == 0.875
    assert {s["metricKind"] for s in series} == {"GAUGE"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """URL of a Pushgateway (Debian package prometheus-pushgateway) on loopback."""
    if PUSHGATEWAY is None:
        pytest.skip("prometheus-pushgateway not installed")
    url = f"http://127.0.0.1:{_free_port()}"
    log = tmp_path / "pushgateway.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address={url.removeprefix('http://')}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pushgateway did not start:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(subprocess.TimeoutExpired):  # poll interval, ends on exit
                process.wait(timeout=0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _run_module(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitoring.quality", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _pushed(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    jobs = [line for line in text.splitlines() if line.startswith("sproxxo_live_")]
    assert all('job="sproxxo-quality"' in line for line in jobs)
    return samples("\n".join(jobs) + "\n")


def test_quality_pushes_to_the_pushgateway_and_replaces_its_group(
    pushgateway: str, tmp_path: Path
) -> None:
    """With SPROXXO_PUSHGATEWAY_URL the gauges land in the Pushgateway under job
    sproxxo-quality; the next run replaces them (a shadow gone from the window disappears)."""
    env = {**os.environ, "SPROXXO_PUSHGATEWAY_URL": pushgateway}
    first, second = tmp_path / "first", tmp_path / "second"
    write_files(first / "log", first / "labels")
    write_files(second / "log", second / "labels", challenger=OLD_SHADOW)
    for folder, shadows in ((first, {CHALLENGER, OLD_SHADOW}), (second, {OLD_SHADOW})):
        result = _run_module(
            env,
            *WINDOW,
            "--log-dir",
            str(folder / "log"),
            "--labels-dir",
            str(folder / "labels"),
            "--out",
            str(folder / "out"),
        )
        assert result.returncode == EXIT_OK, result.stderr[-2000:]
        pushed = _pushed(pushgateway)
        tags = {dict(labels)["model_tag"] for (name, labels) in pushed if name.endswith("_total")}
        assert tags == {CHAMPION} | shadows
    assert pushed[key("sproxxo_live_recall", CHAMPION_LABELS)] == pytest.approx(6 / 9)


def test_quality_push_to_an_unreachable_pushgateway_names_it() -> None:
    """A refused push is a DataSourceError naming the URL (the CLI exits EXIT_DATA)."""
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(DataSourceError, match=f"pushgateway {url} refused"):
        push(url, [GaugePoint("sproxxo_live_recall", "recall", 0.5)], job="sproxxo-quality")
