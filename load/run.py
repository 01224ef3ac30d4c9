"""Run the locust scenario headless as its own process, then judge it against the SLO.

    python -m load.run --host http://127.0.0.1:3000 --users 50 --spawn-rate 10 \
        --run-time 60s --shape steady --slo-p99-ms 50 --max-failure-rate 0.001

Writes `<out>/locust_stats.csv` (and the other locust CSVs), `<out>/report.html`,
`<out>/locust.log` and `<out>/summary.json`; exits 1 when the p99 or the failure rate
breaks the SLO, 2 when locust produced no statistics.

Against an IAM-only Cloud Run service, pass an ID token for its audience in an environment
variable, never in argv (where `ps` shows it): `--id-token-env NAME`, or `LOAD_ID_TOKEN`
(or `SPROXXO_LOAD_BEARER_TOKEN`) when no option names one. Every request is marked
`X-Sproxxo-Synthetic: 1` (see load/locustfile.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sproxxo.settings import get_settings

logger = logging.getLogger("load.run")
ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "load" / "locustfile.py"
SHAPES = ("steady", "spike", "soak")
#: Where an ID token is looked for when neither --bearer-token nor --id-token-env is given.
TOKEN_ENVS = ("LOAD_ID_TOKEN", "SPROXXO_LOAD_BEARER_TOKEN")


@dataclass(frozen=True)
class LoadSummary:
    """The aggregated row of locust's `_stats.csv` and the SLO verdict."""

    requests: int
    failures: int
    failure_rate: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    slo_p99_ms: float
    max_failure_rate: float

    @property
    def breaches(self) -> list[str]:
        """Human-readable SLO breaches (empty when the run passed)."""
        out = []
        if self.p99_ms > self.slo_p99_ms:
            out.append(f"p99 {self.p99_ms:.1f} ms > {self.slo_p99_ms:.1f} ms")
        if self.failure_rate > self.max_failure_rate:
            out.append(f"failure rate {self.failure_rate:.4%} > {self.max_failure_rate:.4%}")
        return out


def _float(value: str) -> float:
    return float(value) if value not in {"", "N/A"} else 0.0


def read_aggregated(stats_csv: Path, *, slo_p99_ms: float, max_failure_rate: float) -> LoadSummary:
    """Parse the `Aggregated` row of a locust `_stats.csv`."""
    with stats_csv.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("Name") == "Aggregated"]
    if not rows:
        raise ValueError(f"{stats_csv}: no Aggregated row")
    row = rows[0]
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return LoadSummary(
        requests=requests,
        failures=failures,
        failure_rate=failures / requests if requests else 1.0,
        requests_per_second=_float(row["Requests/s"]),
        p50_ms=_float(row["50%"]),
        p95_ms=_float(row["95%"]),
        p99_ms=_float(row["99%"]),
        max_ms=_float(row["Max Response Time"]),
        slo_p99_ms=slo_p99_ms,
        max_failure_rate=max_failure_rate,
    )


def locust_command(args: argparse.Namespace, out: Path) -> list[str]:
    """argv of the headless locust process."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        args.host,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.run_time,
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--stop-timeout",
        "5",
    ]


def run_locust(args: argparse.Namespace, out: Path) -> int:
    """Start locust in its own process (it monkey-patches with gevent); returns its code."""
    env = {
        **os.environ,
        "SPROXXO_LOAD_SHAPE": args.shape,
        "PYTHONPATH": str(ROOT),
        # The resolved token (possibly none), through the environment: argv shows in `ps`.
        "SPROXXO_LOAD_BEARER_TOKEN": args.bearer_token,
    }
    with (out / "locust.log").open("wb") as log:
        done = subprocess.run(  # noqa: S603 - fixed argv
            locust_command(args, out),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=_seconds(args.run_time) + 120,
        )
    return done.returncode


def _seconds(run_time: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for char in run_time.strip():
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total + (float(number) if number else 0.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m load.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="http://127.0.0.1:3000")
    parser.add_argument("--users", type=int, default=20, help="peak users")
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--run-time", default="60s", help="e.g. 30s, 5m, 1h30m")
    parser.add_argument("--shape", choices=SHAPES, default="steady")
    parser.add_argument("--slo-p99-ms", type=float, default=50.0)
    parser.add_argument("--max-failure-rate", type=float, default=0.001)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder (default .sproxxo/reports/load/<timestamp>)",
    )
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--bearer-token",
        default=None,
        help="Authorization bearer token (visible in `ps`: prefer --id-token-env)",
    )
    token.add_argument(
        "--id-token-env",
        metavar="NAME",
        default=None,
        help="environment variable holding the ID token to send as `Authorization: Bearer` "
        f"(default: the first set of {', '.join(TOKEN_ENVS)})",
    )
    args = parser.parse_args(argv)
    args.bearer_token = _bearer_token(args, parser)
    return args


def _bearer_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The token to send: --bearer-token, the variable --id-token-env names (which must be
    set: a release check without its token would only measure 401s), or the defaults."""
    if args.bearer_token is not None:
        return str(args.bearer_token)
    if args.id_token_env is not None:
        token = os.environ.get(args.id_token_env, "").strip()
        if not token:
            parser.error(f"--id-token-env {args.id_token_env}: that variable is unset or empty")
        return token
    return next((os.environ[n].strip() for n in TOKEN_ENVS if os.environ.get(n, "").strip()), "")


def main(argv: list[str] | None = None) -> int:
    """Run, summarise, judge. Exit 0 = SLO met, 1 = breached, 2 = no statistics."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or get_settings().reports_dir / "load" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logger.info(
        "locust %s shape, %d users for %s against %s -> %s",
        args.shape,
        args.users,
        args.run_time,
        args.host,
        out,
    )
    code = run_locust(args, out)
    stats = out / "locust_stats.csv"
    if not stats.is_file():
        logger.error("locust exited %d without %s; see %s", code, stats, out / "locust.log")
        return 2
    summary = read_aggregated(
        stats, slo_p99_ms=args.slo_p99_ms, max_failure_rate=args.max_failure_rate
    )
    verdict = {
        **asdict(summary),
        "breaches": summary.breaches,
        "locust_exit_code": code,
        "shape": args.shape,
        "host": args.host,
    }
    (out / "summary.json").write_text(json.dumps(verdict, indent=2), encoding="utf-8")
    print(
        f"requests={summary.requests} failures={summary.failures} "
        f"({summary.failure_rate:.4%}) rps={summary.requests_per_second:.1f} "
        f"p50={summary.p50_ms:.0f}ms p95={summary.p95_ms:.0f}ms p99={summary.p99_ms:.0f}ms "
        f"max={summary.max_ms:.0f}ms\nreports: {out}"
    )
    for breach in summary.breaches:
        print(f"SLO BREACHED: {breach}")
    return 1 if summary.breaches else 0


if __name__ == "__main__":
    sys.exit(main())
