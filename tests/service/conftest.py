"""In-process service client: the BentoML ASGI app under Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def client(model_tags: list[str]) -> Iterator[TestClient]:
    """A client of the real service app (startup runs FraudScorer.__init__). One per
    session: BentoML registers its request metrics in the process-wide registry once per
    app, so a second app in the same process would collide."""
    import service

    with TestClient(service.FraudScorer.to_asgi()) as test_client:
        yield test_client
