"""Champion and challenger on the same live traffic, end to end (the deck's measured slide).

    uv run python -m load.challenger_demo [--live-rows 60000] [--keep]

Trains three models on synthetic files (`training.train --source file`): the champion;
a challenger trained on four times the data (expected to be better) and one trained
without card history (expected to be worse). Then, once per challenger, on a fresh state
folder: warms the card history with the traffic's previous week (`training.history
warm`), serves the champion with the challenger as the shadow, sends the traffic's last
22 hours in time order through /predict_batch, ingests the labels
(`monitoring.labels ingest`) and runs `python -m monitoring.compare`. Prints one table
of what each compare.json says. Every step is a real process (the `make run` commands).

The synthetic generator puts ~60 transactions on a card over the days it is given: the
training files and the traffic use the same density (`DAYS_PER_60` days per 60), so the
history features mean the same at training and on the traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load import procs  # noqa: E402 - after the path, when run as a file

#: Days over which the generator spreads a card's ~60 transactions (training and traffic).
DAYS_PER_60 = 8
LIVE_HOURS = 22


def run(module: str, *args: str, env: dict[str, str]) -> str:
    """`python -m module args` with `env`; its stdout (raises with stderr on failure)."""
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def write_data(work: Path, *, live_rows: int) -> dict[str, Path]:
    """Training files (seeds 1 and 2, ending 10 days ago) and the traffic (seed 99, ending
    now): its last 22 hours are the live window, the rest warms the history."""
    from sproxxo.sources.synthetic import generate

    now = datetime.now(UTC).replace(microsecond=0)
    files = {}
    for name, rows, seed in (("train_small", 60_000, 1), ("train_large", 240_000, 2)):
        end = now - timedelta(days=10)
        frame = generate(rows, seed=seed, start=end - timedelta(days=DAYS_PER_60), days=DAYS_PER_60)
        files[name] = work / f"{name}.parquet"
        frame.to_parquet(files[name], index=False)
    traffic = generate(
        live_rows, seed=99, start=now - timedelta(days=DAYS_PER_60), days=DAYS_PER_60
    )
    # The generator's daily rhythm spills past its span: the last transaction one minute ago.
    traffic["epoch_seconds"] += int(now.timestamp()) - 60 - int(traffic["epoch_seconds"].max())
    cut = (now - timedelta(hours=LIVE_HOURS)).timestamp()
    traffic["card_id"] = "live_" + traffic["card_id"]
    files["warm"] = work / "warm.parquet"
    traffic[traffic["epoch_seconds"] < cut].to_parquet(files["warm"], index=False)
    files["live"] = work / "live.parquet"
    traffic[traffic["epoch_seconds"] >= cut].to_parquet(files["live"], index=False)
    return files


def train(env: dict[str, str], files: dict[str, Path]) -> dict[str, str]:
    """The champion (bootstrapped) and the two challengers; their tags."""

    def tag(path: Path, *flags: str) -> str:
        out = run("training.train", "--source", "file", "--path", str(path), *flags, env=env)
        return out.strip().splitlines()[-1]

    return {
        "champion": tag(files["train_small"], "--bootstrap"),
        "better": tag(files["train_large"], "--stage", "challenger"),
        "worse": tag(files["train_small"], "--no-card-history", "--stage", "challenger"),
    }


def serve_and_compare(
    work: Path, env: dict[str, str], files: dict[str, Path], champion: str, challenger: str
) -> dict[str, Any]:
    """One live run with `challenger` as the shadow; the compare.json it produced."""
    import httpx
    import pandas as pd

    from sproxxo.features import transaction_body

    state = work / f"state-{challenger.split(':')[1]}"
    run_env = {**env, "SPROXXO_STATE_DIR": str(state), "SPROXXO_PREDLOG_FLUSH_SECONDS": "0.2"}
    run("training.history", "warm", "--source", "file", "--path", str(files["warm"]), env=run_env)
    live = pd.read_parquet(files["live"])
    bodies = [
        transaction_body({str(k): v for k, v in row.items()}) for row in live.to_dict("records")
    ]
    srv = procs.Server.bentoml(
        env={**run_env, "SPROXXO_MODEL_TAG": champion, "SPROXXO_SHADOW_MODEL_TAG": challenger},
        log_path=work / "server.log",
    ).start(timeout=120)
    since = datetime.now(UTC) - timedelta(minutes=1)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            for i in range(0, len(bodies), 500):
                r = http.post("/predict_batch", json={"transactions": bodies[i : i + 500]})
                r.raise_for_status()
        _wait_for_log(state / "predictions", len(bodies))
    finally:
        srv.stop()
    labels = work / f"labels-{challenger.split(':')[1]}.csv"
    live.assign(reported_at=datetime.now(UTC).isoformat())[
        ["transaction_id", "is_fraud", "reported_at"]
    ].to_csv(labels, index=False)
    run("monitoring.labels", "ingest", str(labels), env=run_env)
    out = state / "compare"
    until = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    run(
        "monitoring.compare",
        "--since",
        since.isoformat(),
        "--until",
        until,
        "--out",
        str(out),
        env=run_env,
    )
    report: dict[str, Any] = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    return report


def _wait_for_log(folder: Path, n: int) -> None:
    from sproxxo.adapters.logfiles import read_log

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if list(folder.rglob("*.jsonl")) and len(read_log(folder)) >= n:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the prediction log did not reach {n} records")


def table(reports: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per (run, model)."""
    lines = [
        "| run | model | role | decision mix (approve/review/decline) | precision | recall "
        "| expected cost (USD) | agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run_name, report in reports.items():
        for role in ("champion", "challenger"):
            side = report[role]
            q = side["labelled"] or {}
            mix = side["decision_mix"]["counts"]
            lines.append(
                f"| {run_name} | {side['model_tag'].split(':')[1]} | {role} | "
                f"{mix.get('approve', 0)}/{mix.get('review', 0)}/{mix.get('decline', 0)} | "
                f"{_pct(q.get('precision'))} | {_pct(q.get('recall'))} | "
                f"{q.get('expected_cost', float('nan')):,.0f} | "
                f"{report['agreement']['agreement_rate']:.1%} |"
            )
    first = next(iter(reports.values()))
    lines.append(
        f"\n{first['rows']:,} live transactions per run, {first['labelled_frauds']} frauds "
        f"labelled; costs: review {first['costs']['review_cost']} USD, false decline "
        f"{first['costs']['false_decline_cost']} USD, a missed fraud its amount."
    )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    """Train, serve with each shadow, compare; print the table."""
    parser = argparse.ArgumentParser(prog="python -m load.challenger_demo", description=__doc__)
    parser.add_argument("--live-rows", type=int, default=60_000, help="traffic rows (8 days)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sproxxo-challenger-"))
    env = {
        "BENTOML_HOME": str(work / "bentoml"),
        "SPROXXO_STATE_DIR": str(work / "train"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "SPROXXO_ACCESS_LOG": "false",
    }
    try:
        files = write_data(work, live_rows=args.live_rows)
        print("training the champion and two challengers ...", flush=True)
        tags = train(env, files)
        reports = {}
        for name in ("better", "worse"):
            print(f"live run with the {name} challenger {tags[name]} as the shadow ...", flush=True)
            reports[name] = serve_and_compare(work, env, files, tags["champion"], tags[name])
        print("\n" + table(reports))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
