"""Deployment settings: the only place that reads the environment."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_TOKEN = "dev-admin-token-change-me"  # noqa: S105 - documented local placeholder
DEV_CARD_TOKEN_KEY = "sproxxo-local-card-token-key"  # noqa: S105 - documented local placeholder
MIN_SECRET_CHARS = 32
SHUTDOWN_MARGIN_SECONDS = 1.0
#: The SQLite store's checkpoint thread runs at most this often (each run opens no more
#: than a handful of statements, but 1,000 a second would be a busy loop).
MIN_CHECKPOINT_SECONDS = 0.05
#: The only environment that accepts local defaults (placeholder secrets, file sink, unsigned
#: models, fault injection). Every deployed environment is strict.
DEV = "dev"


#: The card-history SQLite store's `PRAGMA synchronous` (sproxxo.adapters.history_sqlite).
SqliteSynchronous = Literal["normal", "off"]


class Settings(BaseSettings):
    """Everything that changes the deployment, not the model (STYLE §4)."""

    model_config = SettingsConfigDict(
        env_prefix="SPROXXO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    env: Literal["dev", "staging", "production"] = "dev"
    state_dir: Path = Path(".sproxxo")
    # The two tools' own variables, read here like every other setting.
    bentoml_home_dir: Path | None = Field(default=None, validation_alias="BENTOML_HOME")
    mlflow_tracking_uri: str = Field(default="", validation_alias="MLFLOW_TRACKING_URI")
    model_tag: str = Field(default="", description="Pin a model version; empty = the champion.")
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    log_level: str = "INFO"
    card_token_key: SecretStr = Field(
        default=SecretStr(DEV_CARD_TOKEN_KEY),
        description="HMAC key that turns card numbers into tokens when importing files.",
    )

    predlog_sink: Literal["file", "bigquery", "none"] = "file"
    predlog_dir: Path | None = None
    predlog_queue_size: int = Field(default=50_000, ge=1)
    predlog_flush_seconds: float = Field(default=1.0, gt=0)
    predlog_retry_seconds: tuple[float, ...] = Field(
        default=(0.1, 0.5, 2.0),
        description="Backoff between retries of a failing prediction-log sink (JSON list); "
        "what still fails goes to the dead-letter folder",
    )
    bigquery_project: str = ""
    bigquery_predictions_table: str = ""
    bigquery_labels_table: str = Field(
        default="",
        description="Delayed labels in BigQuery (transaction_id, is_fraud, reported_at) that "
        "the live-quality job joins to the prediction log",
    )
    pushgateway_url: str = Field(
        default="",
        description="Prometheus Pushgateway the batch jobs push their gauges to "
        "(e.g. http://127.0.0.1:9091); empty = no push",
    )

    history_url: str = Field(
        default="",
        description="Card-history store: empty = SQLite under the state folder, "
        "sqlite:///file, redis://host:port/db, or none",
    )
    history_sqlite_synchronous: SqliteSynchronous = Field(
        default="normal",
        description="SQLite store only: `normal` fsyncs at WAL checkpoints (12-30 ms on a "
        "slow disk, on the checkpoint thread), `off` never does (a power cut can corrupt "
        "the file: rebuild it)",
    )
    history_sqlite_checkpoint_seconds: float = Field(
        default=0.2,
        ge=0,
        le=60,
        description="SQLite store only: a background thread checkpoints the WAL this often, "
        "so that a scoring call does not wait for a checkpoint's copy and fsyncs; 0 = no "
        "thread (SQLite's own, in the commit that takes the log past 1,000 pages)",
    )
    history_timeout_seconds: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Budget of a card-history store call, one per 100 of its transactions "
        "(a batch waits for another worker's SQLite lock, or for Redis to run its script); "
        "past it the transactions are scored without history (never failed)",
    )
    shadow_model_tag: str = Field(
        default="",
        description="A stored model that scores the same traffic off the request path "
        "(champion/challenger); an operator's POST /models/{version}/shadow or DELETE "
        "/models/shadow, persisted in the state folder, takes precedence",
    )
    shadow_queue_size: int = Field(
        default=64,
        ge=1,
        description="Scored batches waiting for the shadow model; past it batches are "
        "logged without a shadow score (counted), never delaying an answer",
    )
    workers: int = Field(default=1, ge=1, le=8, description="BentoML worker processes")
    connection_max_age_seconds: float = Field(
        default=5.0,
        ge=0,
        description="With several workers, a keep-alive connection older than this is "
        "closed after its answer (Connection: close) so that connections re-spread over "
        "the workers, which share one listening socket; 0: never",
    )
    access_log: bool = Field(
        default=True,
        description="BentoML's per-request access log (Cloud Run logs every request itself)",
    )
    trace_requests: bool = Field(
        default=False,
        description="Run BentoML's OpenTelemetry middleware on every request (its exporter "
        "and sample rate go under services.sproxxo_fraud.tracing in BENTOML_CONFIG); off, "
        "every URL is excluded from it: unsampled it still cost ~0.15-0.2 ms a request",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_concurrency: int = Field(
        default=64,
        ge=1,
        description="In flight per instance (each worker admits this many; Cloud Run's "
        "containerConcurrency caps the instance); 429 past it",
    )
    request_timeout_seconds: float = Field(default=2.0, gt=0, description="504 past it")
    drain_seconds: float = Field(default=1.0, ge=0, le=8)
    shutdown_grace_seconds: float = Field(
        default=10.0,
        gt=0,
        description="What the platform allows between SIGTERM and SIGKILL (Cloud Run: 10 s); "
        "drain, in-flight requests and the prediction-log flush must fit in it",
    )
    model_signing_key: str = Field(
        default="",
        description="Promotion's signing key: kms://projects/.../cryptoKeyVersions/N, or a "
        "folder with a local key pair; empty = <state>/keys (dev)",
    )
    model_verify_key: str = Field(
        default="",
        description="PEM public key (Ed25519) that verifies promoted models' signatures; "
        "dev falls back to the local key pair under <state>/keys",
    )
    fault_answer_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        le=30,
        description="Fault injection for tests (dev only): wait this long between "
        "scoring and answering, so that a request is slow by construction on any machine",
    )

    @property
    def connection_recycle_seconds(self) -> float:
        """`connection_max_age_seconds` with several workers; 0 (off) with one."""
        return self.connection_max_age_seconds if self.workers > 1 else 0.0

    @field_validator("history_sqlite_checkpoint_seconds")
    @classmethod
    def _checkpoint_period(cls, seconds: float) -> float:
        if 0 < seconds < MIN_CHECKPOINT_SECONDS:
            raise ValueError(f"0 (no thread) or at least {MIN_CHECKPOINT_SECONDS} s")
        return seconds

    @model_validator(mode="after")
    def _strict_outside_dev(self) -> Settings:
        """Outside dev, refuse at start-up every value that is only fit for a laptop, with a
        message naming the setting."""
        if self.env == DEV:
            return self
        problems = []
        token = self.admin_token.get_secret_value()
        if token == DEV_ADMIN_TOKEN or len(token) < MIN_SECRET_CHARS:
            problems.append(
                f"SPROXXO_ADMIN_TOKEN must be a secret of at least {MIN_SECRET_CHARS} "
                "characters (from Secret Manager)"
            )
        key = self.card_token_key.get_secret_value()
        if key == DEV_CARD_TOKEN_KEY or len(key) < MIN_SECRET_CHARS:
            problems.append(
                f"SPROXXO_CARD_TOKEN_KEY must be a secret of at least {MIN_SECRET_CHARS} "
                "characters, not the local default"
            )
        if self.predlog_sink == "file":
            problems.append(
                "SPROXXO_PREDLOG_SINK=file keeps predictions on an instance's disk: use bigquery"
            )
        if not self.model_verify_key:
            problems.append(
                "SPROXXO_MODEL_VERIFY_KEY must hold the public key that signs promoted models"
            )
        if self.fault_answer_delay_seconds:
            problems.append("SPROXXO_FAULT_ANSWER_DELAY_SECONDS is for dev only")
        if problems:
            raise ValueError(f"unsafe settings for SPROXXO_ENV={self.env}: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _shutdown_fits_the_grace_period(self) -> Settings:
        if self.flush_seconds_at_shutdown < SHUTDOWN_MARGIN_SECONDS:
            raise ValueError(
                "SPROXXO_DRAIN_SECONDS + SPROXXO_REQUEST_TIMEOUT_SECONDS leave less than "
                f"{SHUTDOWN_MARGIN_SECONDS} s of SPROXXO_SHUTDOWN_GRACE_SECONDS to flush the "
                "prediction log"
            )
        return self

    @property
    def signed_models_only(self) -> bool:
        """Whether a model without a valid signature is refused (everywhere but dev)."""
        return self.env != DEV

    @property
    def flush_seconds_at_shutdown(self) -> float:
        """Time left to flush the prediction log after the drain and the last in-flight
        request, with a margin before the platform's SIGKILL."""
        return (
            self.shutdown_grace_seconds
            - self.drain_seconds
            - self.request_timeout_seconds
            - SHUTDOWN_MARGIN_SECONDS
        )

    @property
    def keys_dir(self) -> Path:
        """Folder of the dev signing key pair."""
        return self.state_dir / "keys"

    @property
    def dead_letter_dir(self) -> Path:
        """Where prediction-log records the sink refused wait for a replay."""
        return self.state_dir / "predlog-dead-letter"

    @property
    def bentoml_home(self) -> Path:
        """The BentoML model store: BENTOML_HOME, else under the state folder."""
        return self.bentoml_home_dir or self.state_dir / "bentoml"

    @property
    def tracking_uri(self) -> str:
        """MLflow's tracking URI: MLFLOW_TRACKING_URI, else a sqlite file under the state
        folder (no server needed)."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path | None:
        """Where a local (sqlite) tracker keeps artifacts instead of `./mlruns`."""
        return self.state_dir / "mlartifacts" if self.tracking_uri.startswith("sqlite") else None

    @property
    def predictions_dir(self) -> Path:
        """Folder of the local prediction log."""
        return self.predlog_dir or self.state_dir / "predictions"

    @property
    def labels_dir(self) -> Path:
        """Folder of the ingested delayed labels."""
        return self.state_dir / "labels"

    @property
    def reports_dir(self) -> Path:
        """Folder for drift, performance and load reports."""
        return self.state_dir / "reports"


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
