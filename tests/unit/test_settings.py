"""Settings: local defaults only in dev; every deployed environment refuses them by name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sproxxo.settings import DEV_ADMIN_TOKEN, DEV_CARD_TOKEN_KEY, Settings

SECRET = "s" * 40
SAFE: dict[str, Any] = {
    "admin_token": SECRET,
    "card_token_key": SECRET,
    "predlog_sink": "bigquery",
    "model_verify_key": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n",
}


def _settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_dev_accepts_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A laptop runs with placeholders, the file sink and no signing key."""
    monkeypatch.delenv("SPROXXO_ADMIN_TOKEN", raising=False)
    settings = _settings(env="dev")
    assert settings.admin_token.get_secret_value() == DEV_ADMIN_TOKEN
    assert settings.predlog_sink == "file"
    assert not settings.signed_models_only


@pytest.mark.parametrize("env", ["staging", "production"])
def test_deployed_environments_accept_safe_values(env: str) -> None:
    """Long secrets, the BigQuery sink and a verify key pass; unsigned models are refused."""
    assert _settings(env=env, **SAFE).signed_models_only


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("admin_token", DEV_ADMIN_TOKEN, "SPROXXO_ADMIN_TOKEN"),
        ("admin_token", "x", "SPROXXO_ADMIN_TOKEN"),
        ("card_token_key", DEV_CARD_TOKEN_KEY, "SPROXXO_CARD_TOKEN_KEY"),
        ("card_token_key", "short-key", "SPROXXO_CARD_TOKEN_KEY"),
        ("predlog_sink", "file", "SPROXXO_PREDLOG_SINK"),
        ("model_verify_key", "", "SPROXXO_MODEL_VERIFY_KEY"),
        ("fault_answer_delay_seconds", 1.0, "SPROXXO_FAULT_ANSWER_DELAY_SECONDS"),
    ],
)
@pytest.mark.parametrize("env", ["staging", "production"])
def test_unsafe_values_are_refused_outside_dev(
    env: str, field: str, value: Any, named: str
) -> None:
    """Outside dev each laptop default is refused at start-up, naming the setting."""
    with pytest.raises(ValidationError, match=named):
        _settings(env=env, **{**SAFE, field: value})


def test_unknown_environment_is_refused() -> None:
    """Only dev, staging and production exist: a typo cannot select lax rules."""
    with pytest.raises(ValidationError, match="env"):
        _settings(env="test")


@pytest.mark.parametrize(
    ("drain", "timeout", "grace", "ok"),
    [(1.0, 2.0, 10.0, True), (5.0, 2.0, 10.0, True), (8.0, 2.0, 10.0, False), (1, 9.5, 10, False)],
)
def test_shutdown_must_fit_the_platform_grace_period(
    drain: float, timeout: float, grace: float, ok: bool
) -> None:
    """Drain + the last request's budget + at least a second of flush fit in the grace
    period; the flush gets what is left."""
    fields = {
        "drain_seconds": drain,
        "request_timeout_seconds": timeout,
        "shutdown_grace_seconds": grace,
    }
    if ok:
        settings = _settings(**fields)
        assert settings.flush_seconds_at_shutdown == pytest.approx(grace - drain - timeout - 1)
    else:
        with pytest.raises(ValidationError, match="SHUTDOWN_GRACE_SECONDS"):
            _settings(**fields)
