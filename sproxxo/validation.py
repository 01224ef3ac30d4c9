"""Turn pydantic validation errors into field-naming, rule-naming messages."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from sproxxo.schemas import FieldError, Transaction


def field_errors(exc: ValidationError) -> list[FieldError]:
    """One `FieldError` per pydantic error; the rule is pydantic's error type."""
    out = []
    for err in exc.errors(include_input=False, include_context=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        out.append(FieldError(field=field, rule=err["type"], message=f"{field}: {err['msg']}"))
    return out


def parse_item(item: Any) -> Transaction | list[FieldError]:
    """Validate one batch item in JSON mode (same strictness as /predict)."""
    if not isinstance(item, dict):
        return [FieldError(field="body", rule="object_type", message="item must be an object")]
    try:
        return Transaction.model_validate_json(orjson.dumps(item))
    except ValidationError as exc:
        return field_errors(exc)
    except (TypeError, orjson.JSONEncodeError) as exc:  # e.g. integers beyond 64 bits
        return [FieldError(field="body", rule="json_invalid", message=f"body: {exc}")]
