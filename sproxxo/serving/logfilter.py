"""Keep card data out of the framework's own logs."""

from __future__ import annotations

import logging

from pydantic import ValidationError


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs a traceback for every request that fails validation; pydantic's text
    echoes the input (card tokens included). Keep one line naming the fields, no values."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite validation-error records in place; let everything else through."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
            record.msg = "%s: rejected invalid request (fields: %s)"
            route = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.args = (route, ", ".join(fields[:10]))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
