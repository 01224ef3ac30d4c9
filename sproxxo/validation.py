"""Turn pydantic validation errors into field-naming, rule-naming messages."""

from __future__ import annotations

from typing import Any, Final

import orjson
from pydantic import ValidationError

from sproxxo.schemas import BatchItemError, FieldError, Transaction

#: Errors reported per transaction; the rest are counted (`more_errors`), so a body of
#: 60,000 unknown keys cannot turn into megabytes of error text.
MAX_ERRORS: Final = 5


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


def item_error(index: int, item: Any) -> BatchItemError:
    """Why batch item `index` was refused: its first `MAX_ERRORS` field errors and how
    many more there were."""
    errors = parse_item(item)
    if not isinstance(errors, list):  # validates alone: only a batch-level rule refused it
        errors = []
    tx_id = item.get("transaction_id") if isinstance(item, dict) else None
    return BatchItemError(
        index=index,
        transaction_id=tx_id if isinstance(tx_id, str) and len(tx_id) <= 64 else None,
        errors=errors[:MAX_ERRORS],
        more_errors=max(len(errors) - MAX_ERRORS, 0),
    )
