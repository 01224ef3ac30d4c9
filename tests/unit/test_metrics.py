"""Bulk histogram updates give the samples of one observe per value."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from sproxxo.adapters.prometheus import PROBABILITY_BUCKETS, observe_many


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_observe_many_equals_observe_loop() -> None:
    """Same buckets and count, same sum (to float rounding), values on bounds included."""
    values = [*np.random.default_rng(5).random(500).tolist(), 0.0, 0.01, 0.5, 1.0, 0.7]
    one_reg, bulk_reg = CollectorRegistry(), CollectorRegistry()
    one = Histogram("h", "h", buckets=PROBABILITY_BUCKETS, registry=one_reg)
    bulk = Histogram("h", "h", buckets=PROBABILITY_BUCKETS, registry=bulk_reg)
    for v in values:
        one.observe(v)
    observe_many(bulk, values)
    observe_many(bulk, [])
    expected, got = _samples(one_reg), _samples(bulk_reg)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got[("h_count", "")] == len(values)
