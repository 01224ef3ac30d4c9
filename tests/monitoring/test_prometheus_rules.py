"""alerts.yml passes `promtool check rules` and every case in rules_test.yml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


@needs_promtool
def test_promtool_check_rules_accepts_alerts() -> None:
    """`promtool check rules` accepts alerts.yml."""
    result = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules_passes_every_case() -> None:
    """`promtool test rules` passes every firing and non-firing case."""
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_test_covers_every_alert_firing_and_silent() -> None:
    """Each alert has at least one firing and one non-firing case in rules_test.yml."""
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule  # recording rules are checked by promql_expr_test cases
    }
    cases = [
        case
        for test in yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == alerts
    assert silent == alerts


def test_prometheus_config_loads_alerts() -> None:
    """prometheus.yml lists alerts.yml in rule_files."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert "alerts.yml" in config["rule_files"]


@needs_promtool
def test_promtool_check_config_accepts_prometheus_yml(tmp_path: Path) -> None:
    """`promtool check config` accepts prometheus.yml with its rule file beside it."""
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    result = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
