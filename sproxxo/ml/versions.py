"""The dependency contract between the training and the serving runtime.

Each model records the exact versions it was trained with. At load and activation the
serving runtime compares them with its own:

* libraries that can change predictions or unpickling (python, scikit-learn, numpy, scipy)
  must agree on major.minor; a different patch release is tolerated and logged;
* the others (pandas, pydantic, bentoml, pyarrow, numba) are informative: any difference
  is logged. numba compiles the serving path's tree walk; its output is re-checked
  against scikit-learn at every model load (`sproxxo.ml.bundle`), so a version change
  cannot silently change a score.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Final

PREDICTIVE: Final = ("python", "scikit-learn", "numpy", "scipy")
INFORMATIVE: Final = ("pandas", "pydantic", "bentoml", "pyarrow", "numba")
TRACKED: Final = PREDICTIVE + INFORMATIVE


def runtime_versions() -> dict[str, str]:
    """Exact versions of the tracked libraries in this process (no imports needed)."""
    versions = {"python": platform.python_version()}
    for name in TRACKED[1:]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@dataclass(frozen=True)
class ContractCheck:
    """Outcome of comparing recorded versions with the runtime's."""

    refusals: list[str] = field(default_factory=list)
    tolerated: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing forbids serving the model here."""
        return not self.refusals


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_contract(recorded: dict[str, str], runtime: dict[str, str]) -> ContractCheck:
    """Compare a model's recorded library versions with the runtime's (rule: module doc)."""
    check = ContractCheck()
    for name in TRACKED:
        want, have = recorded.get(name), runtime.get(name)
        if want == have:
            continue
        note = f"{name}: trained with {want or 'unrecorded'}, runtime has {have}"
        if name in PREDICTIVE and (want is None or _minor(want) != _minor(have or "")):
            check.refusals.append(note)
        else:
            check.tolerated.append(note)
    return check
