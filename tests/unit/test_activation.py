"""Which model serves: start-up order, refusals, persisted activation and cross-worker refresh."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from sproxxo.errors import ModelUnavailable, StateNotPersisted
from sproxxo.ml.bundle import ModelBundle
from sproxxo.serving import activation
from sproxxo.serving.activation import (
    ActiveModel,
    WatchedChoice,
    read_active,
    startup_candidates,
    write_active,
)

GOOD = (
    "sproxxo-fraud:pinned",
    "sproxxo-fraud:persisted",
    "sproxxo-fraud:champ",
    "sproxxo-fraud:newest",
    "sproxxo-fraud:older",
)


class FakeLoader:
    """Loads fake bundles by tag; tags listed as bad raise ModelUnavailable."""

    def __init__(self, bad: set[str] | None = None) -> None:
        self.bad = bad or set()
        self.loaded: list[str] = []

    def __call__(self, tag: str) -> ModelBundle:
        self.loaded.append(tag)
        if tag in self.bad or tag not in GOOD:
            raise ModelUnavailable(f"model {tag} refused: pipeline.pkl does not match its sha256")
        return ModelBundle(pipeline=None, metadata=None, tag=tag)  # type: ignore[arg-type]


@pytest.fixture
def fake_store() -> SimpleNamespace:
    """A store whose champion and model list the test controls (the champion is given to
    the slot as a callable, as the service does with the BentoML store's)."""
    state = SimpleNamespace(
        champion="sproxxo-fraud:champ",
        models=["sproxxo-fraud:newest", "sproxxo-fraud:champ", "sproxxo-fraud:older"],
    )
    return state


@pytest.fixture
def active_file(tmp_path: Path) -> Path:
    """Where the active tag is persisted."""
    return tmp_path / "state" / activation.ACTIVE_FILE


def test_startup_candidates_are_only_pinned_persisted_shipped_champion(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """Candidates are pinned, persisted, shipped, champion, each once: never the rest of the
    store (an unevaluated candidate or a retired model must not serve by default)."""
    write_active(active_file, "sproxxo-fraud:persisted")
    assert startup_candidates(
        "sproxxo-fraud:pinned",
        active_file,
        shipped="sproxxo-fraud:champ",
        champion=fake_store.champion,
    ) == [
        "sproxxo-fraud:pinned",
        "sproxxo-fraud:persisted",
        "sproxxo-fraud:champ",
    ]
    fake_store.champion = None
    active_file.unlink()
    assert startup_candidates("", active_file, champion=fake_store.champion) == []


@pytest.mark.parametrize(
    ("pinned", "persisted", "expected"),
    [
        ("sproxxo-fraud:pinned", "sproxxo-fraud:persisted", "sproxxo-fraud:pinned"),
        ("", "sproxxo-fraud:persisted", "sproxxo-fraud:persisted"),
        ("", None, "sproxxo-fraud:champ"),
    ],
)
def test_active_model_start_prefers_pinned_then_persisted_then_champion(
    fake_store: SimpleNamespace,
    active_file: Path,
    pinned: str,
    persisted: str | None,
    expected: str,
) -> None:
    """start() serves the pinned tag, else the persisted one, else the champion."""
    if persisted:
        write_active(active_file, persisted)
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    bundle = model.start(pinned)
    assert bundle is not None
    assert bundle.tag == expected
    assert model.bundle is bundle
    assert model.refusals == []


def test_active_model_start_skips_bad_candidates_but_never_falls_back_to_the_store(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """Refused candidates are recorded; with every allowed one refused nothing serves,
    although the store holds other models that would verify."""
    write_active(active_file, "sproxxo-fraud:persisted")
    loader = FakeLoader(bad={"sproxxo-fraud:pinned", "sproxxo-fraud:persisted"})
    events: list[str] = []
    model = ActiveModel(
        active_file, champion=lambda: fake_store.champion, loader=loader, on_event=events.append
    )
    bundle = model.start("sproxxo-fraud:pinned")
    assert bundle is not None
    assert bundle.tag == "sproxxo-fraud:champ"
    assert [r.tag for r in model.refusals] == ["sproxxo-fraud:pinned", "sproxxo-fraud:persisted"]
    assert all("sha256" in r.reason for r in model.refusals)
    assert events == ["refused", "refused", "load"]
    loader.bad.add("sproxxo-fraud:champ")
    again = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=loader)
    assert again.start("sproxxo-fraud:pinned") is None
    assert "sproxxo-fraud:newest" not in loader.loaded
    assert "sproxxo-fraud:older" not in loader.loaded


def test_active_model_start_with_nothing_servable(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """When every allowed candidate is refused, start() returns None and records each
    refusal; with no candidate at all, the refusal says so."""
    model = ActiveModel(
        active_file, champion=lambda: fake_store.champion, loader=FakeLoader(bad=set(GOOD))
    )
    assert model.start("") is None
    assert model.bundle is None
    assert [r.tag for r in model.refusals] == ["sproxxo-fraud:champ"]
    fake_store.champion = None
    empty = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    assert empty.start("") is None
    assert "no pinned, persisted, shipped or champion model" in empty.refusals[0].reason


def test_active_model_activate_persists_and_swaps(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """activate() loads, swaps, persists the tag and returns the new and previous bundles."""
    events: list[str] = []
    model = ActiveModel(
        active_file,
        champion=lambda: fake_store.champion,
        loader=FakeLoader(),
        on_event=events.append,
    )
    old = model.start("")
    new, previous = model.activate("sproxxo-fraud:newest")
    assert previous is old
    assert model.bundle is new
    assert new.tag == "sproxxo-fraud:newest"
    assert read_active(active_file) == "sproxxo-fraud:newest"
    assert events[-1] == "swap"
    restarted = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    assert restarted.start("").tag == "sproxxo-fraud:newest"  # type: ignore[union-attr]


def test_active_model_refused_activation_keeps_old_bundle(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """A refused activation raises, keeps serving the old bundle and leaves the file alone."""
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    model.activate("sproxxo-fraud:champ")
    old = model.bundle
    with pytest.raises(ModelUnavailable, match="sha256"):
        model.activate("sproxxo-fraud:tampered")
    assert model.bundle is old
    assert read_active(active_file) == "sproxxo-fraud:champ"
    assert [r.tag for r in model.refusals] == ["sproxxo-fraud:tampered"]


def _followed(follower: threading.Thread | None) -> bool:
    """Wait for the follow-up load that refresh() started, if any (no sleeping)."""
    if follower is None:
        return False
    follower.join(30)
    return not follower.is_alive()


def test_active_model_refresh_follows_other_writer(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """refresh() notices another worker's activation in the shared file and swaps to it."""
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    model.start("")
    assert model.bundle.tag == "sproxxo-fraud:champ"  # type: ignore[union-attr]
    other = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    other.activate("sproxxo-fraud:older")
    assert _followed(model.refresh())
    assert model.bundle.tag == "sproxxo-fraud:older"  # type: ignore[union-attr]


def test_active_model_refresh_ignores_own_activation(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """A worker's own activation does not trigger a reload on refresh."""
    loader = FakeLoader()
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=loader)
    model.activate("sproxxo-fraud:newest")
    loads = len(loader.loaded)
    assert model.refresh() is None
    assert len(loader.loaded) == loads


def test_active_model_refresh_refused_tag_keeps_bundle(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """A persisted tag that fails verification is refused by refresh; the old bundle serves."""
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    model.start("")
    old = model.bundle
    write_active(active_file, "sproxxo-fraud:tampered")
    assert _followed(model.refresh())
    assert any(r.tag == "sproxxo-fraud:tampered" for r in model.refusals)
    assert model.bundle is old


def test_active_model_refresh_checks_at_most_once_per_second(
    fake_store: SimpleNamespace, active_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within a second of the last check, refresh does not look at the file again."""
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(activation.time, "monotonic", lambda: clock.now)
    loader = FakeLoader()
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=loader)
    model.start("")
    model.refresh()  # first check: nothing written yet
    write_active(active_file, "sproxxo-fraud:older")
    clock.now += 0.5
    assert model.refresh() is None
    assert "sproxxo-fraud:older" not in loader.loaded
    clock.now += 0.6
    assert _followed(model.refresh())
    assert model.bundle.tag == "sproxxo-fraud:older"  # type: ignore[union-attr]


@pytest.mark.parametrize("content", [b"", b"not json", b'{"other": 1}', b"[1, 2]"])
def test_read_active_unreadable_file_is_none(active_file: Path, content: bytes) -> None:
    """A missing, empty or malformed active file reads as no persisted tag."""
    assert read_active(active_file) is None
    active_file.parent.mkdir(parents=True)
    active_file.write_bytes(content)
    assert read_active(active_file) is None


def test_write_active_round_trip_leaves_no_temp_file(active_file: Path) -> None:
    """write_active persists atomically: the tag reads back and no temp file remains."""
    write_active(active_file, "sproxxo-fraud:abc")
    write_active(active_file, "sproxxo-fraud:def")
    assert read_active(active_file) == "sproxxo-fraud:def"
    assert [p.name for p in active_file.parent.iterdir()] == [activation.ACTIVE_FILE]


class BlockingLoader(FakeLoader):
    """A FakeLoader whose load of one tag waits until the test releases it."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, tag: str) -> ModelBundle:
        if tag == self.slow:
            self.entered.set()
            assert self.release.wait(30)
        return super().__call__(tag)


def test_follower_that_loaded_an_older_model_never_installs_it(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """A catch-up load that started before a newer activation does not install the older
    model afterwards: the worker stays on what the file names."""
    loader = BlockingLoader(slow="sproxxo-fraud:older")
    model = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=loader)
    model.start("")
    ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader()).activate(
        "sproxxo-fraud:older"
    )  # worker 2
    follower = model.refresh()
    assert follower is not None
    assert loader.entered.wait(30)  # the follower is inside its (slow) load of "older"
    model.activate("sproxxo-fraud:newest")  # meanwhile an operator activates here
    loader.release.set()
    follower.join(30)
    assert model.bundle.tag == "sproxxo-fraud:newest"  # type: ignore[union-attr]
    assert read_active(active_file) == "sproxxo-fraud:newest"


def test_activation_that_cannot_be_persisted_switches_nothing(
    fake_store: SimpleNamespace, tmp_path: Path
) -> None:
    """If the active file cannot be written, activate raises and the worker keeps its model
    (persist first, then switch)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state folder should be")
    model = ActiveModel(
        blocker / activation.ACTIVE_FILE, champion=lambda: fake_store.champion, loader=FakeLoader()
    )
    model.start("")
    before = model.bundle
    with pytest.raises(StateNotPersisted):
        model.activate("sproxxo-fraud:newest")
    assert model.bundle is before


def test_swap_callback_gets_new_and_previous_bundles(
    fake_store: SimpleNamespace, active_file: Path
) -> None:
    """on_swap runs after each switch with (new, previous): the service re-freezes the GC
    and republishes the model gauges there."""
    swaps: list[tuple[str, str | None]] = []
    model = ActiveModel(
        active_file,
        champion=lambda: fake_store.champion,
        loader=FakeLoader(),
        on_swap=lambda new, old: swaps.append((new.tag, old.tag if old else None)),
    )
    model.start("")
    model.activate("sproxxo-fraud:newest")
    other = ActiveModel(active_file, champion=lambda: fake_store.champion, loader=FakeLoader())
    other.activate("sproxxo-fraud:older")
    follower = model.refresh()
    assert follower is not None
    follower.join(30)
    assert swaps == [
        ("sproxxo-fraud:newest", "sproxxo-fraud:champ"),
        ("sproxxo-fraud:older", "sproxxo-fraud:newest"),
    ]


def test_watched_choice_reports_another_writers_change_once(tmp_path: Path) -> None:
    """A change written by another worker is reported once, as its tag ("" once cleared by
    removing the file); this worker's own writes are not reported back."""
    mine = WatchedChoice(tmp_path / "choice.json", interval=0.0)
    other = WatchedChoice(tmp_path / "choice.json", interval=0.0)
    assert mine.changed() is None
    other.write("m:b")
    assert mine.changed() == "m:b"
    assert mine.changed() is None
    mine.write("m:c")
    assert mine.changed() is None
    assert other.changed() == "m:c"
    (tmp_path / "choice.json").unlink()
    assert other.changed() == ""


def test_watched_choice_looks_no_more_than_once_per_interval(tmp_path: Path) -> None:
    """Within the interval a change is not seen yet (the file is not even looked at)."""
    mine = WatchedChoice(tmp_path / "choice.json", interval=3600.0)
    assert mine.changed() is None  # the first look starts the interval
    WatchedChoice(tmp_path / "choice.json").write("m:b")
    assert mine.changed() is None
