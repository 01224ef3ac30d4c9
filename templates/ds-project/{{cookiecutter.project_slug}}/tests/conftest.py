"""Tests train into a throw-away BentoML store, never the platform's.

The environment is set at import, before any test imports bentoml (it reads BENTOML_HOME
once, when imported).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

STATE = Path(tempfile.mkdtemp(prefix="{{ cookiecutter.package_name }}-tests-"))
os.environ.update(
    {
        "BENTOML_HOME": str(STATE / "bentoml"),
        "SPROXXO_STATE_DIR": str(STATE / "state"),
        "SPROXXO_ENV": "dev",
        "BENTOML_DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
    }
)
