"""The SQLite store's decoded-state memory: used only while the row holds exactly what this
store wrote, never serving a state another writer has changed, and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from sproxxo import history
from sproxxo.adapters import history_sqlite
from sproxxo.adapters.history_sqlite import SqliteHistory
from sproxxo.history import HISTORY_FEATURES, Event

TX_24H = HISTORY_FEATURES.index("card_tx_24h")
T0 = 1_780_000_000_000


def ev(i: int, key: str) -> Event:
    return Event(T0 + i * 60_000, 1_000 + i, 2, 40.0, -74.0, key)


def test_sqlite_decoded_state_never_hides_another_writers_events(tmp_path: Path) -> None:
    """Two stores on one file (two workers) alternate on one card: each sees every event
    the other wrote, as a single store would."""
    a = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    b = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    seen = []
    for i in range(12):
        store = a if i % 3 else b
        (view,) = store.observe(["card"], [ev(i, f"k{i}")])
        seen.append(view.features[TX_24H])
    a.close()
    b.close()
    assert seen == [float(i) for i in range(12)]


def test_sqlite_decoded_state_is_reused_while_the_row_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card this store wrote last is not decoded again; after another store's write it is."""
    decoded: list[int] = []
    real = history_sqlite.state_from_parts

    def counting(events: list[str], aggregates: dict[str, str]) -> history.CardState:
        decoded.append(len(events))
        return real(events, aggregates)

    monkeypatch.setattr(history_sqlite, "state_from_parts", counting)
    a = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    b = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    for i in range(5):
        a.observe(["card"], [ev(i, f"a{i}")])
    assert decoded == []  # a's own rows: never decoded
    b.observe(["card"], [ev(5, "b5")])
    a.observe(["card"], [ev(6, "a6")])
    assert decoded == [5, 6]  # b decoded a's row, then a decoded b's
    a.close()
    b.close()


def test_sqlite_decoded_state_memory_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoded states held never exceed the event budget (least recently used out)."""
    monkeypatch.setattr(history_sqlite, "DECODED_EVENTS", 50)
    store = SqliteHistory(tmp_path / "h.sqlite", timeout_seconds=5.0)
    for i in range(40):
        store.observe([f"c{i % 13}"] * 3, [ev(i * 3 + j, f"k{i}-{j}") for j in range(3)])
        assert store._decoded_events <= 50
        assert store._decoded_events == sum(len(s.events) for _, _, s in store._decoded.values())
    store.close()
