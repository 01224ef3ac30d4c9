"""The model-bundle format: a fitted pipeline plus everything needed to trust it.

A bundle directory holds `pipeline.pkl` (the sklearn Pipeline), `bundle.json` (its
`BundleMetadata`), `reference.parquet` (a sample of training features and scores for
drift monitoring) and `compiled.npz` (the trees as flat arrays, `CompiledModel`). Every
file's SHA-256 is recorded in the metadata at save time and the pickle is verified against
it *before* it is unpickled.

Loading serves from `compiled.npz` after checking it against the probabilities sklearn gave
the reference sample at training, so a worker starts without importing scikit-learn
(~1 s of a cold start); the verified pickle is unpickled on first use (the sklearn
fallback, benchmarks). A bundle without `compiled.npz`, or whose arrays disagree with the
reference, is unpickled at load and compiled and checked against sklearn as before; so is a
bundle written before the arrays carried the node covers that explanations need (it then
explains like a new one, at the cost of the sklearn import on start-up).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from sproxxo.errors import ModelRefused, ModelUnavailable
from sproxxo.explanations import Contributions
from sproxxo.features import FEATURE_NAMES
from sproxxo.ml import explain
from sproxxo.ml.compiled_trees import PARITY_TOLERANCE, CompiledModel, compile_model, parity_gap
from sproxxo.ml.versions import check_contract, runtime_versions
from sproxxo.policy import Policy
from sproxxo.schemas import SCHEMA_VERSION

if TYPE_CHECKING:  # pandas is imported where bundles are written or checked by sklearn
    import pandas as pd

logger = logging.getLogger(__name__)
#: Rows of the reference sample stored beside the compiled trees for the load-time check.
PARITY_ROWS: Final = 256

#: 2: the pipeline pickles `sproxxo.ml.training.FeatureBuilder` (format 1 had it at
#: `sproxxo.model`, gone since the layered layout): older bundles are refused, retrain them.
BUNDLE_FORMAT: Final = 2
#: The model's name in the BentoML store and in the MLflow registry (one name, STYLE §3).
MODEL_NAME: Final = "sproxxo-fraud"
PIPELINE_FILE: Final = "pipeline.pkl"
MANIFEST_FILE: Final = "bundle.json"
REFERENCE_FILE: Final = "reference.parquet"
COMPILED_FILE: Final = "compiled.npz"


class DataFingerprint(BaseModel):
    """What the model was trained on, precisely enough to recognise it again."""

    model_config = ConfigDict(frozen=True)

    source: str
    sha256: str
    rows: int
    fraud_rate: float
    start: str
    end: str


class BundleMetadata(BaseModel):
    """Audit trail of one trained model (also stored as the BentoML model's metadata)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    bundle_format: int = BUNDLE_FORMAT
    schema_version: str = SCHEMA_VERSION
    feature_names: list[str] = Field(default_factory=lambda: list(FEATURE_NAMES))
    policy: Policy
    metrics: dict[str, float]
    params: dict[str, Any] = Field(default_factory=dict)
    data: DataFingerprint
    libraries: dict[str, str] = Field(default_factory=runtime_versions)
    mlflow_run_id: str = ""
    mlflow_version: str = ""
    trained_at: str
    checksums: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelBundle:
    """A loaded, verified model ready to score canonical columns."""

    pipeline: Any
    metadata: BundleMetadata
    tag: str = ""
    compiled: CompiledModel | None = None

    @property
    def policy(self) -> Policy:
        """The decision thresholds chosen at training."""
        return self.metadata.policy

    @property
    def version(self) -> str:
        """The store version (the part of the tag after the colon)."""
        return self.tag.rpartition(":")[2]

    def predict_matrix(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated P(fraud) for a feature matrix built by `build_features`: the compiled
        trees (sklearn's values without its per-tree overhead), else sklearn itself."""
        if self.compiled is None:
            return np.asarray(self.pipeline[-1].predict_proba(matrix)[:, 1], dtype=np.float64)
        return self.compiled.predict(matrix)

    def explain_matrix(self, matrix: npt.NDArray[np.float64]) -> Contributions | None:
        """Each row's exact feature contributions to its raw score (TreeSHAP over the
        compiled trees); None when the model serves through sklearn (no compiled trees)."""
        if self.compiled is None or not explain.can_explain(self.compiled):
            return None
        return Contributions(
            base_value=self._base_value,
            raw_scores=self.compiled.raw(matrix),
            by_feature=explain.shap_values(self.compiled, matrix, prepared=self._explain_tables),
        )

    @cached_property
    def _explain_tables(self) -> explain.Tables:
        assert self.compiled is not None  # noqa: S101 - only reached with compiled trees
        return explain.tables(self.compiled)

    @cached_property
    def _base_value(self) -> float:
        assert self.compiled is not None  # noqa: S101 - only explain_matrix asks, after checking
        return explain.base_value(self.compiled)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(
    directory: Path, pipeline: Any, metadata: BundleMetadata, reference: pd.DataFrame
) -> BundleMetadata:
    """Write the bundle files; returns the metadata completed with their checksums."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / PIPELINE_FILE).open("wb") as handle:
        pickle.dump(pipeline, handle, protocol=pickle.HIGHEST_PROTOCOL)
    reference.to_parquet(directory / REFERENCE_FILE, index=False)
    names = [PIPELINE_FILE, REFERENCE_FILE]
    try:
        compiled = compile_model(pipeline[-1])
    except (ValueError, AttributeError, TypeError) as exc:  # not a compilable ensemble
        logger.warning("no compiled trees for this model (%s): it will load through sklearn", exc)
    else:
        arrays = compiled.to_arrays()
        if "fraud_probability" in reference.columns:  # sklearn's answers, checked at load
            sample = reference.head(PARITY_ROWS)
            arrays["parity_x"] = sample[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
            arrays["parity_p"] = sample["fraud_probability"].to_numpy(dtype=np.float64)
        with (directory / COMPILED_FILE).open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # stub: **kwds
        names.append(COMPILED_FILE)
    checksums = {name: sha256_file(directory / name) for name in names}
    done = metadata.model_copy(update={"checksums": checksums})
    (directory / MANIFEST_FILE).write_text(done.model_dump_json(indent=2), encoding="utf-8")
    return done


def read_metadata(directory: Path) -> BundleMetadata:
    """The bundle's own manifest (use the store's copy when there is one)."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelUnavailable(f"{directory}: no {MANIFEST_FILE} (not a sproxxo bundle)")
    return BundleMetadata.model_validate_json(path.read_text(encoding="utf-8"))


def verify_bundle(directory: Path, metadata: BundleMetadata) -> list[str]:
    """Reasons not to load this bundle: checksum, schema or dependency-contract failures."""
    problems: list[str] = []
    if metadata.bundle_format != BUNDLE_FORMAT:
        problems.append(
            f"bundle_format {metadata.bundle_format} != {BUNDLE_FORMAT} served here (retrain it)"
        )
    if not metadata.checksums.get(PIPELINE_FILE):
        problems.append(f"no checksum recorded for {PIPELINE_FILE}")
    for name, expected in metadata.checksums.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name} does not match its recorded sha256 (corrupt or tampered)")
    if metadata.schema_version != SCHEMA_VERSION:
        problems.append(
            f"schema_version {metadata.schema_version} != runtime schema {SCHEMA_VERSION}"
        )
    if tuple(metadata.feature_names) != FEATURE_NAMES:
        problems.append("feature_names differ from the runtime's build_features")
    contract = check_contract(metadata.libraries, runtime_versions())
    problems.extend(f"dependency contract: {r}" for r in contract.refusals)
    for note in contract.tolerated:
        logger.warning("dependency difference tolerated: %s", note)
    return problems


def load_bundle(directory: Path, metadata: BundleMetadata, *, tag: str = "") -> ModelBundle:
    """Verify, then unpickle. Raises `ModelRefused` listing every problem found."""
    problems = verify_bundle(directory, metadata)
    if problems:
        raise ModelRefused(f"model {tag or directory} refused: " + "; ".join(problems))
    raw = (directory / PIPELINE_FILE).read_bytes()
    if hashlib.sha256(raw).hexdigest() != metadata.checksums[PIPELINE_FILE]:  # swapped since
        raise ModelRefused(f"model {tag or directory} refused: {PIPELINE_FILE} changed")
    pipeline = LazyPipeline(raw, name=tag or str(directory))
    compiled = _stored_compiled(directory, metadata)
    if compiled is None:
        compiled = _checked_compile(directory, pipeline.load())
    return ModelBundle(pipeline=pipeline, metadata=metadata, tag=tag, compiled=compiled)


class LazyPipeline:
    """The verified pickle's sklearn pipeline, unpickled on first use (which imports
    scikit-learn); indexing and attributes reach the pipeline itself."""

    def __init__(self, raw: bytes, *, name: str) -> None:
        self._raw = raw
        self._name = name
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The pipeline (unpickled once). Raises `ModelRefused` if it cannot be."""
        with self._lock:
            if self._pipeline is None:
                try:
                    self._pipeline = pickle.loads(self._raw)  # noqa: S301 - sha256 verified
                except (pickle.UnpicklingError, ImportError, AttributeError, EOFError) as exc:
                    raise ModelRefused(
                        f"model {self._name} refused: cannot unpickle ({exc})"
                    ) from exc
            return self._pipeline

    def __getitem__(self, index: Any) -> Any:
        return self.load()[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)


def _stored_compiled(directory: Path, metadata: BundleMetadata) -> CompiledModel | None:
    """The bundle's compiled trees, if it has them and they give the stored reference rows
    the probabilities sklearn gave them at training (to the parity tolerance); else None.
    Reads one .npz: no pandas, no parquet, no scikit-learn on a worker's start-up."""
    if COMPILED_FILE not in metadata.checksums:
        return None
    with np.load(directory / COMPILED_FILE, allow_pickle=False) as arrays:
        if "parity_x" not in arrays.files:  # nothing to check the arrays against
            return None
        if "cover" not in arrays.files:  # written before the covers: explanations need them
            logger.warning("stored compiled trees have no node covers: recompiling")
            return None
        compiled = CompiledModel.from_arrays(arrays)
        matrix, expected = arrays["parity_x"], arrays["parity_p"]
    gap = float(np.abs(compiled.predict(matrix) - expected).max(initial=0.0))
    if gap > PARITY_TOLERANCE:
        logger.warning(
            "stored compiled trees disagree with the reference by %.2e: recompiling", gap
        )
        return None
    return compiled


def _checked_compile(directory: Path, pipeline: Any) -> CompiledModel | None:
    """The compiled trees, re-checked against sklearn on the reference sample in *this*
    runtime (numba, CPU); on a disagreement the model serves through sklearn instead."""
    import pandas as pd

    compiled = compile_model(pipeline[-1])
    path = directory / REFERENCE_FILE
    if not path.is_file():
        return compiled
    matrix = pd.read_parquet(path, columns=list(FEATURE_NAMES)).to_numpy(dtype=np.float64)
    gap = parity_gap(pipeline[-1], compiled, matrix)
    if gap > PARITY_TOLERANCE:
        logger.warning(
            "compiled trees disagree with sklearn by %.2e on %d reference rows: "
            "serving through sklearn",
            gap,
            len(matrix),
        )
        return None
    return compiled


def read_reference(directory: Path) -> pd.DataFrame:
    """The reference sample (features, risk score, probability, decision) of a bundle."""
    import pandas as pd

    path = directory / REFERENCE_FILE
    if not path.is_file():
        raise ModelUnavailable(f"{directory}: no reference sample ({REFERENCE_FILE})")
    return pd.read_parquet(path)
