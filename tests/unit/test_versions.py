"""The dependency contract between a model's recorded library versions and the runtime."""

from __future__ import annotations

import platform

import pytest

from sproxxo.ml.versions import TRACKED, check_contract, runtime_versions

RUNTIME = {
    "python": "3.11.9",
    "scikit-learn": "1.6.1",
    "numpy": "2.1.3",
    "scipy": "1.14.1",
    "pandas": "2.2.3",
    "pydantic": "2.10.4",
    "bentoml": "1.4.40",
    "pyarrow": "18.1.0",
    "numba": "0.68.1",
}


@pytest.mark.parametrize(
    ("changes", "refused", "tolerated"),
    [
        ({}, [], []),
        ({"scikit-learn": "1.5.2"}, ["scikit-learn"], []),
        ({"scikit-learn": "2.6.1"}, ["scikit-learn"], []),
        ({"scikit-learn": "1.6.0"}, [], ["scikit-learn"]),
        ({"numpy": "1.26.4"}, ["numpy"], []),
        ({"numpy": "2.1.0"}, [], ["numpy"]),
        ({"scipy": "1.13.1"}, ["scipy"], []),
        ({"python": "3.12.1"}, ["python"], []),
        ({"python": "3.11.2"}, [], ["python"]),
        ({"pandas": "1.5.3"}, [], ["pandas"]),
        ({"pydantic": "2.9.0"}, [], ["pydantic"]),
        ({"bentoml": "1.3.0"}, [], ["bentoml"]),
        ({"pyarrow": "17.0.0"}, [], ["pyarrow"]),
        ({"numba": "0.61.0"}, [], ["numba"]),
        ({"numba": None}, [], ["numba"]),
        ({"scikit-learn": None}, ["scikit-learn"], []),
        ({"python": None}, ["python"], []),
        ({"pandas": None}, [], ["pandas"]),
        (
            {"scikit-learn": "1.5.0", "pandas": "2.1.0", "numpy": "2.1.9"},
            ["scikit-learn"],
            ["numpy", "pandas"],
        ),
    ],
)
def test_check_contract_table(
    changes: dict[str, str | None], refused: list[str], tolerated: list[str]
) -> None:
    """Predictive libraries must agree on major.minor; patch and informative diffs are tolerated."""
    recorded = {**RUNTIME, **changes}
    recorded = {k: v for k, v in recorded.items() if v is not None}
    check = check_contract(recorded, RUNTIME)
    assert [note.split(":")[0] for note in check.refusals] == refused
    assert sorted(note.split(":")[0] for note in check.tolerated) == tolerated
    assert check.ok is (not refused)


def test_check_contract_refusal_names_library_and_versions() -> None:
    """A refusal names the library, the trained version and the runtime version."""
    check = check_contract({**RUNTIME, "scikit-learn": "1.5.2"}, RUNTIME)
    assert check.refusals == ["scikit-learn: trained with 1.5.2, runtime has 1.6.1"]


def test_check_contract_missing_record_is_refused() -> None:
    """A model without any recorded versions is refused for every predictive library."""
    check = check_contract({}, RUNTIME)
    assert not check.ok
    assert [n.split(":")[0] for n in check.refusals] == ["python", "scikit-learn", "numpy", "scipy"]
    assert all("unrecorded" in n for n in check.refusals)


def test_runtime_versions_covers_tracked_libraries() -> None:
    """runtime_versions reports every tracked library, with python's own version."""
    versions = runtime_versions()
    assert tuple(versions) == TRACKED
    assert versions["python"] == platform.python_version()
    assert check_contract(versions, versions).ok
