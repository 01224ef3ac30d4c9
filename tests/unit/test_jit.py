"""Tiered kernels (`sproxxo.jit`): deferred kernels are pending (their callers run the
interpreted twins) until the background load has run their step, in order; the loading
thread itself always gets the kernel; nothing deferred means nothing pending."""

from __future__ import annotations

import logging
import threading

import pytest

from sproxxo import jit


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing deferred, loaded or loading (a load a service test
    started is let finish first: it would otherwise set events of the test's own)."""
    if jit._worker is not None:
        jit._worker.join(timeout=120)
    monkeypatch.setattr(jit, "_deferred", False)
    monkeypatch.setattr(jit, "_ready", set())
    monkeypatch.setattr(jit, "_worker", None)
    monkeypatch.setattr(jit, "_done", {})


def test_nothing_is_pending_unless_deferred() -> None:
    """Outside a serving worker every kernel compiles on first use."""
    assert not jit.pending("trees")
    jit.wait("trees")  # returns at once


def test_deferred_kernels_are_pending_until_their_step_has_run() -> None:
    """Deferred kernels run their twins until their step has run, in order."""
    jit.defer()
    assert jit.pending("trees")
    assert jit.pending("history")
    gate, seen = threading.Event(), []

    def first() -> None:
        seen.append(("first", jit.pending("trees")))  # the loading thread: never pending
        gate.wait()

    worker = jit.compile_in_background({"trees": first, "history": lambda: seen.append("2")})
    assert jit.pending("history")  # its step cannot run before the gate opens
    assert jit.compile_in_background({}) is worker  # one load at a time
    gate.set()
    worker.join()
    assert seen == [("first", False), "2"]
    assert not jit.pending("trees")
    assert not jit.pending("history")


def test_wait_returns_only_once_the_kernels_step_has_run() -> None:
    """A caller without a twin waits for its own kernel's step, not for the later ones."""
    jit.defer()
    gate, finished, later = threading.Event(), [], threading.Event()
    steps = {
        "explanations": lambda: (gate.wait(), finished.append(True)),
        "after": later.wait,  # still running when the waiter returns
    }
    worker = jit.compile_in_background(steps)
    seen: list[bool] = []
    waiter = threading.Thread(
        target=lambda: (jit.wait("explanations"), seen.append(bool(finished)))
    )
    waiter.start()
    gate.set()
    waiter.join()
    assert seen == [True]
    assert jit.pending("after")
    later.set()
    worker.join()
    assert not jit.pending("after")


def test_wait_gives_up_after_its_timeout() -> None:
    """A step that never ends does not hold its callers for ever: they compile themselves."""
    jit.defer()
    gate = threading.Event()
    jit.compile_in_background({"explanations": gate.wait})
    jit.wait("explanations", timeout=0.0)  # returns: the caller would compile now
    assert jit.pending("explanations")
    gate.set()


def test_a_failing_step_is_logged_and_left_to_its_first_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A step that raises is logged, and its kernel compiles on first use instead."""
    jit.defer()

    def broken() -> None:
        raise RuntimeError("no LLVM today")

    with caplog.at_level(logging.ERROR, logger="sproxxo.jit"):
        jit.compile_in_background({"trees": broken, "history": lambda: None}).join()
    assert "loading numba kernel trees failed" in caplog.text
    assert not jit.pending("trees")
    assert not jit.pending("history")


def test_a_load_finishes_on_its_own_events_when_the_registry_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loading thread sets the events it was started with, not whatever `_done` holds
    by then (a KeyError in the thread, seen when a test reset the module mid-load)."""
    release = threading.Event()
    jit.defer()
    worker = jit.compile_in_background({"trees": release.wait, "explanations": lambda: None})
    monkeypatch.setattr(jit, "_done", {})
    release.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert {"trees", "explanations"} <= jit._ready
