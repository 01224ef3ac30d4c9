"""`python -m training.history`: profiles and warm-up written into the store the settings
name (here a SQLite file and the session's real Redis), read back as the service reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sproxxo.adapters.history import history_for
from sproxxo.features import history_events
from sproxxo.settings import Settings
from sproxxo.sources.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]


def run(url: str, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPROXXO_STATE_DIR": str(state), "SPROXXO_HISTORY_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "training.history", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_profiles_and_warm_fill_the_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Profiles of every card and the last 7 days replayed: the next transaction of a
    card sees its profile and its recent history."""
    url = (
        f"sqlite:///{tmp_path / 'cards.sqlite'}"
        if kind == "sqlite"
        else request.getfixturevalue("redis_url").replace("/0", "/3")
    )
    frame = generate(3_000, seed=5)
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    cards = frame["card_id"].nunique()

    profiles = run(url, tmp_path, "profiles", "--source", "file", "--path", str(path))
    assert profiles.returncode == 0, profiles.stderr
    assert profiles.stdout.strip().endswith(f"profiles: {cards} cards from 3000 rows")
    warm = run(url, tmp_path, "warm", "--source", "file", "--path", str(path), "--days", "7")
    assert warm.returncode == 0, warm.stderr
    assert "warm:" in warm.stdout

    last = frame.sort_values("epoch_seconds").iloc[[-1]].copy()
    last["transaction_id"] = "tx-after-warm"
    last["epoch_seconds"] += 60
    card = str(last["card_id"].iloc[0])
    recent = frame[
        (frame["card_id"] == card)
        & (frame["epoch_seconds"] >= last["epoch_seconds"].iloc[0] - 86_400)
    ]
    store = history_for(Settings(history_url=url, state_dir=tmp_path))  # type: ignore[call-arg]
    assert store is not None
    columns = {c: last[c].tolist() for c in last.columns}
    (view,) = store.observe([card], history_events(columns))
    store.close()
    assert view.profile is not None
    assert view.profile.lat == pytest.approx(float(last["lat"].iloc[0]))
    assert view.features[1] == len(recent)  # card_tx_24h


def test_history_needs_a_store(tmp_path: Path) -> None:
    """SPROXXO_HISTORY_URL=none: a clear error and the data exit code, not a traceback."""
    generate(100, seed=1).to_parquet(tmp_path / "tx.parquet")
    done = run(
        "none", tmp_path, "profiles", "--source", "file", "--path", str(tmp_path / "tx.parquet")
    )
    assert done.returncode != 0
    assert "no card store" in done.stderr
    assert "Traceback" not in done.stderr


def test_forget_deletes_only_idle_cards(tmp_path: Path) -> None:
    """Cards written just now are not idle for a day, and are idle for zero days."""
    url = f"sqlite:///{tmp_path / 'cards.sqlite'}"
    frame = generate(500, seed=2)
    frame.to_parquet(tmp_path / "tx.parquet")
    warm = run(url, tmp_path, "warm", "--source", "file", "--path", str(tmp_path / "tx.parquet"))
    assert warm.returncode == 0, warm.stderr
    cards = int(warm.stdout.split("warm: ")[1].split()[0])
    kept = run(url, tmp_path, "forget", "--idle-days", "1")
    assert kept.stdout.strip().endswith("forget: 0 cards"), kept.stderr
    gone = run(url, tmp_path, "forget", "--idle-days", "0")
    assert gone.stdout.strip().endswith(f"forget: {cards} cards"), gone.stderr


def test_forget_refuses_redis(redis_url: str, tmp_path: Path) -> None:
    done = run(redis_url, tmp_path, "forget", "--idle-days", "1")
    assert done.returncode != 0
    assert "Redis keys expire" in done.stderr
