"""Deployment settings: the only place that reads the environment."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_TOKEN = "dev-admin-token-change-me"  # noqa: S105 - documented local placeholder


class Settings(BaseSettings):
    """Everything that changes the deployment, not the model (STYLE §4)."""

    model_config = SettingsConfigDict(
        env_prefix="SPROXXO_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["dev", "test", "staging", "production"] = "dev"
    state_dir: Path = Path(".sproxxo")
    model_name: str = "sproxxo-fraud"
    model_tag: str = Field(default="", description="Pin a model version; empty = the champion.")
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    log_level: str = "INFO"
    card_token_key: SecretStr = Field(
        default=SecretStr("sproxxo-local-card-token-key"),
        description="HMAC key that turns card numbers into tokens when importing files.",
    )

    predlog_sink: Literal["file", "bigquery", "none"] = "file"
    predlog_dir: Path | None = None
    predlog_queue_size: int = Field(default=50_000, ge=1)
    predlog_flush_seconds: float = Field(default=1.0, gt=0)
    bigquery_project: str = ""
    bigquery_predictions_table: str = ""

    workers: int = Field(default=1, ge=1, le=8, description="BentoML worker processes")
    access_log: bool = Field(
        default=True,
        description="BentoML's per-request access log (Cloud Run logs every request itself)",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_items: int = Field(default=1000, ge=1)
    max_concurrency: int = Field(
        default=64,
        ge=1,
        description="In flight per instance (each worker admits this many; Cloud Run's "
        "containerConcurrency caps the instance); 429 past it",
    )
    request_timeout_seconds: float = Field(default=2.0, gt=0, description="504 past it")
    drain_seconds: float = Field(default=1.0, ge=0, le=8)
    fault_answer_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        le=30,
        description="Fault injection for tests (dev/test only): wait this long between "
        "scoring and answering, so that a request is slow by construction on any machine",
    )

    @model_validator(mode="after")
    def _no_placeholder_token_outside_dev(self) -> Settings:
        if self.env in {"staging", "production"} and (
            self.admin_token.get_secret_value() == DEV_ADMIN_TOKEN
        ):
            raise ValueError(
                "SPROXXO_ADMIN_TOKEN must be set (from Secret Manager) outside dev/test"
            )
        if self.env not in {"dev", "test"} and self.fault_answer_delay_seconds:
            raise ValueError("SPROXXO_FAULT_ANSWER_DELAY_SECONDS is for dev/test only")
        return self

    @property
    def bentoml_home(self) -> Path:
        """BentoML store location used when BENTOML_HOME is not set."""
        return self.state_dir / "bentoml"

    @property
    def mlflow_uri(self) -> str:
        """Default MLflow tracking URI: a sqlite file under the state folder."""
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def predictions_dir(self) -> Path:
        """Folder of the local prediction log."""
        return self.predlog_dir or self.state_dir / "predictions"

    @property
    def reports_dir(self) -> Path:
        """Folder for drift, performance and load reports."""
        return self.state_dir / "reports"


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
