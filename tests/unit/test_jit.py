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
    monkeypatch.setattr(jit, "_deferred", False)
    monkeypatch.setattr(jit, "_ready", set())
    monkeypatch.setattr(jit, "_worker", None)


def test_nothing_is_pending_unless_deferred() -> None:
    assert not jit.pending("trees")
    jit.wait("trees")  # returns at once


def test_deferred_kernels_are_pending_until_their_step_has_run() -> None:
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


def test_wait_blocks_until_the_kernel_is_ready() -> None:
    jit.defer()
    gate, done = threading.Event(), threading.Event()
    worker = jit.compile_in_background({"explanations": gate.wait})
    waiter = threading.Thread(target=lambda: (jit.wait("explanations"), done.set()))
    waiter.start()
    assert not done.is_set()
    gate.set()
    waiter.join()
    worker.join()
    assert done.is_set()
    assert not jit.pending("explanations")


def test_a_failing_step_is_logged_and_left_to_its_first_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jit.defer()

    def broken() -> None:
        raise RuntimeError("no LLVM today")

    with caplog.at_level(logging.ERROR, logger="sproxxo.jit"):
        jit.compile_in_background({"trees": broken, "history": lambda: None}).join()
    assert "loading numba kernel trees failed" in caplog.text
    assert not jit.pending("trees")
    assert not jit.pending("history")
