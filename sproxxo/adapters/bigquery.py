"""BigQuery adapter: read labelled transactions for training, stream predictions out.

The transactions table holds the canonical columns, except that time is stored as a
TIMESTAMP column `event_time` (next to `utc_offset_minutes`) instead of `epoch_seconds`.
Rows are selected on the half-open range `since <= event_time < until`, passed as query
parameters. A table id cannot be a parameter, so it must match `TABLE_ID_PATTERN` before
it is quoted into SQL. `google.cloud` is imported inside functions only, so that
`import sproxxo` never pulls it in.

Live model quality (`quality_tallies`) is one query: the delayed-labels table
(`LABELS_TABLE_SCHEMA`) joined to the prediction log over a window of `logged_at`, counted
per model tag and role (the champion's `model_tag`/`decision`, the shadow's
`shadow_model_tag`/`shadow_decision`); `sproxxo.jobs.quality` turns the counts into
precision, recall and expected cost, the same way it does for the local files.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from sproxxo.errors import DataSourceError
from sproxxo.features import CANONICAL_COLUMNS, LABEL_COLUMN
from sproxxo.records import records_of
from sproxxo.schemas import Decision
from sproxxo.sources.files import check_frame

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import bigquery

logger = logging.getLogger(__name__)

#: `project.dataset.table`: GCP project ids, BigQuery dataset names, plain table names.
TABLE_ID_PATTERN: Final = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]\.[A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}$"
)
TIME_COLUMN: Final = "event_time"
DEFAULT_TIMEOUT_SECONDS: Final = 300.0
#: Columns read from the transactions table, in canonical order.
SOURCE_COLUMNS: Final = (
    *(TIME_COLUMN if c == "epoch_seconds" else c for c in CANONICAL_COLUMNS),
    LABEL_COLUMN,
)
_DTYPES: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("transaction_id", "card_id", "currency", "merchant_id", "merchant_category"), "object"
    ),
    **dict.fromkeys(("amount", "lat", "long", "merch_lat", "merch_long"), "float64"),
    **dict.fromkeys(
        ("epoch_seconds", "utc_offset_minutes", "card_age_days", "customer_age", "city_pop"),
        "int64",
    ),
    "is_foreign": "bool",
    LABEL_COLUMN: "int64",
}
_MAX_ERRORS_SHOWN: Final = 3
#: The delayed-labels table: one row per report (the latest `reported_at` of a transaction
#: wins), `is_fraud` 0 or 1, like the label files `monitoring.labels ingest` reads.
LABELS_TABLE_SCHEMA: Final = (
    ("transaction_id", "STRING", "REQUIRED"),
    ("is_fraud", "INT64", "REQUIRED"),
    ("reported_at", "TIMESTAMP", "REQUIRED"),
)
#: What `quality_tallies` returns per (model_tag, role): the counts behind precision, recall
#: and expected cost (`sproxxo.jobs.quality.Tally`).
TALLY_COLUMNS: Final = (
    "model_tag",
    "role",
    "labelled",
    "frauds",
    "flagged",
    "flagged_frauds",
    "declined",
    "declined_frauds",
    "reviewed",
    "missed_fraud_amount",
)
#: Labels joined to the predictions logged in [@since, @until), counted per model tag and
#: role. The latest log record and the latest label of a transaction count; synthetic
#: traffic does not. `quality_sql` fills in the table ids and the decision values.
QUALITY_SQL: Final = """
WITH predictions AS (
  SELECT transaction_id, model_tag, decision, shadow_model_tag, shadow_decision, amount
  FROM `{log}`
  WHERE logged_at >= @since AND logged_at < @until AND NOT IFNULL(synthetic, FALSE)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY logged_at DESC) = 1
),
labels AS (
  SELECT transaction_id, is_fraud
  FROM `{labels}`
  QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY reported_at DESC) = 1
),
judged AS (
  SELECT 'champion' AS role, p.model_tag, p.decision, p.amount, l.is_fraud
  FROM predictions AS p JOIN labels AS l USING (transaction_id)
  UNION ALL
  SELECT 'shadow' AS role, p.shadow_model_tag, p.shadow_decision, p.amount, l.is_fraud
  FROM predictions AS p JOIN labels AS l USING (transaction_id)
  WHERE p.shadow_model_tag IS NOT NULL AND p.shadow_decision IS NOT NULL
)
SELECT
  model_tag,
  role,
  COUNT(*) AS labelled,
  COUNTIF(is_fraud = 1) AS frauds,
  COUNTIF(decision IN ({flagged})) AS flagged,
  COUNTIF(decision IN ({flagged}) AND is_fraud = 1) AS flagged_frauds,
  COUNTIF(decision = {decline}) AS declined,
  COUNTIF(decision = {decline} AND is_fraud = 1) AS declined_frauds,
  COUNTIF(decision = {review}) AS reviewed,
  IFNULL(SUM(IF(decision = {approve} AND is_fraud = 1, IFNULL(amount, 0), 0)), 0)
    AS missed_fraud_amount
FROM judged
GROUP BY model_tag, role
ORDER BY role, model_tag
"""


def validate_table_id(table: str) -> str:
    """Return `table` if it is a fully qualified `project.dataset.table` id, else raise."""
    if not TABLE_ID_PATTERN.fullmatch(table):
        raise DataSourceError(
            f"bigquery table id {table!r} is not of the form project.dataset.table "
            "(lowercase project id; letters, digits and underscores in names)"
        )
    return table


def parse_bound(value: str, *, name: str) -> datetime:
    """An ISO date or datetime as an aware UTC datetime; naive values are read as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DataSourceError(f"{name}={value!r} is not an ISO date or datetime") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def make_client(
    project: str | None, *, api_endpoint: str | None = None, anonymous: bool = False
) -> bigquery.Client:
    """A BigQuery client; `anonymous` (for emulators) skips Application Default Credentials.

    Raises:
        DataSourceError: no credentials (or no project) could be found.
    """
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import bigquery

    options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
    credentials = AnonymousCredentials() if anonymous else None  # type: ignore[no-untyped-call]
    try:
        return bigquery.Client(project=project, credentials=credentials, client_options=options)
    except DefaultCredentialsError as exc:
        raise DataSourceError(
            "bigquery: no Google credentials found; set GOOGLE_APPLICATION_CREDENTIALS or run "
            f"`gcloud auth application-default login` ({exc})"
        ) from exc
    except OSError as exc:  # google-cloud-core raises EnvironmentError when no project is found
        raise DataSourceError(f"bigquery: cannot determine the project ({exc})") from exc


def load_bigquery(
    *,
    table: str,
    since: str,
    until: str,
    project: str | None = None,
    client: Any = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> pd.DataFrame:
    """Transactions with `since <= event_time < until` as canonical columns plus `is_fraud`.

    Args:
        table: `project.dataset.table` holding the transactions.
        since: inclusive lower bound, ISO date or datetime (naive means UTC).
        until: exclusive upper bound, same format.
        project: project that runs (and pays for) the query; defaults to the table's.
        client: a ready `bigquery.Client` (tests, emulators); built from ADC when omitted.
        timeout_seconds: overall deadline of each API call, retries included.

    Raises:
        DataSourceError: bad table id or range, missing credentials, table not found,
            unreachable service, missing columns, no rows, or rows out of bounds.
    """
    validate_table_id(table)
    start, end = parse_bound(since, name="since"), parse_bound(until, name="until")
    if start >= end:
        raise DataSourceError(f"since={since!r} must be earlier than until={until!r}")
    bq = client if client is not None else make_client(project or table.split(".", 1)[0])
    raw = query_range(bq, table, start, end, timeout_seconds=timeout_seconds)
    if raw.empty:
        raise DataSourceError(
            f"bigquery table {table}: no rows with {since} <= event_time < {until}"
        )
    frame = to_canonical(raw, origin=f"bigquery table {table}")
    logger.info(
        "bigquery rows loaded table=%s rows=%d since=%s until=%s", table, len(frame), since, until
    )
    return check_frame(frame, origin=f"bigquery table {table}")


def query_range(
    client: Any, table: str, start: datetime, end: datetime, *, timeout_seconds: float
) -> pd.DataFrame:
    """Run the parameterised range query; raw BigQuery dtypes, `event_time` still a timestamp."""
    from google.cloud import bigquery

    retry, job_retry = _retry(timeout_seconds), _job_retry(timeout_seconds)
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", start),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", end),
        ]
    )
    with _api_errors(table):
        require_columns(client.get_table(table, retry=retry, timeout=timeout_seconds), table)
        job = client.query(
            select_sql(table),
            job_config=config,
            retry=retry,
            job_retry=job_retry,
            timeout=timeout_seconds,
        )
        rows = job.result(retry=retry, job_retry=job_retry, timeout=timeout_seconds)
        frame: pd.DataFrame = rows.to_dataframe(create_bqstorage_client=False)
    return frame


def select_sql(table: str) -> str:
    """The range query over a validated table id (identifiers quoted, values as parameters)."""
    columns = ", ".join(f"`{c}`" for c in SOURCE_COLUMNS)
    return (
        f"SELECT {columns} FROM `{validate_table_id(table)}` "  # noqa: S608 - id validated
        f"WHERE `{TIME_COLUMN}` >= @since AND `{TIME_COLUMN}` < @until "
        f"ORDER BY `{TIME_COLUMN}`, `transaction_id`"
    )


def require_columns(table_info: Any, table: str) -> None:
    """Raise unless the table's schema has every source column and a TIMESTAMP `event_time`."""
    types = {field.name: field.field_type for field in table_info.schema}
    missing = [c for c in SOURCE_COLUMNS if c not in types]
    if missing:
        raise DataSourceError(
            f"bigquery table {table}: missing columns {missing} "
            f"(needs the canonical columns, with time as TIMESTAMP `{TIME_COLUMN}`)"
        )
    if types[TIME_COLUMN] != "TIMESTAMP":
        raise DataSourceError(
            f"bigquery table {table}: `{TIME_COLUMN}` is {types[TIME_COLUMN]}, expected TIMESTAMP"
        )


def to_canonical(raw: pd.DataFrame, *, origin: str) -> pd.DataFrame:
    """Convert `event_time` to `epoch_seconds` and cast every column to its canonical dtype."""
    missing = [c for c in SOURCE_COLUMNS if c not in raw.columns]
    if missing:
        raise DataSourceError(f"{origin}: missing columns {missing}")
    with_nulls = [c for c in SOURCE_COLUMNS if raw[c].isna().any()]
    if with_nulls:
        raise DataSourceError(f"{origin}: null values in columns {with_nulls}")
    times = pd.to_datetime(raw[TIME_COLUMN], utc=True)
    epoch = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    frame = raw.assign(epoch_seconds=epoch)[[*CANONICAL_COLUMNS, LABEL_COLUMN]]
    return frame.astype(_DTYPES).reset_index(drop=True)


def write_frame(
    frame: pd.DataFrame,
    table: str,
    *,
    replace: bool = False,
    client: Any = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> int:
    """Load a frame into `table` with one load job (a Parquet upload: no per-row streaming
    quota or cost); the table is created if missing, with the frame's column types
    (`_schema_of`). Returns the rows loaded.

    Raises:
        DataSourceError: bad table id, a table that already holds rows while `replace` is
            False (re-running a window must not double it), or any API failure.
    """
    from google.cloud import bigquery

    validate_table_id(table)
    bq = client if client is not None else make_client(table.split(".", 1)[0])
    body = io.BytesIO()
    frame.to_parquet(body, index=False)
    with _api_errors(table):
        rows = _row_count(bq, table, timeout_seconds=timeout_seconds)
        if rows and not replace:
            raise DataSourceError(
                f"bigquery table {table}: already holds rows; pass --replace to overwrite"
            )
        if rows is None:
            bq.create_table(bigquery.Table(table, schema=_schema_of(frame)), exists_ok=True)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            # WRITE_EMPTY: a concurrent writer since the check still cannot double the rows
            write_disposition=(
                bigquery.WriteDisposition.WRITE_TRUNCATE
                if replace
                else bigquery.WriteDisposition.WRITE_EMPTY
            ),
        )
        job = bq.load_table_from_file(
            body, table, job_config=config, rewind=True, timeout=timeout_seconds
        )
        job.result(timeout=timeout_seconds)
    loaded = int(job.output_rows or 0)
    logger.info("bigquery load job done table=%s rows=%d", table, loaded)
    return loaded


_BIGQUERY_TYPES: Final = {"f": "FLOAT64", "i": "INT64", "u": "INT64", "b": "BOOL", "M": "TIMESTAMP"}


def _schema_of(frame: pd.DataFrame) -> list[Any]:
    """A frame's columns as BigQuery fields: numbers, booleans and times as such, the rest
    STRING."""
    from google.cloud import bigquery

    return [
        bigquery.SchemaField(str(name), _BIGQUERY_TYPES.get(dtype.kind, "STRING"))
        for name, dtype in frame.dtypes.items()
    ]


def _row_count(bq: Any, table: str, *, timeout_seconds: float) -> int | None:
    """Rows in `table` (None: it does not exist)."""
    from google.api_core import exceptions as api

    try:
        return int(bq.get_table(table, timeout=timeout_seconds).num_rows or 0)
    except api.NotFound:
        return None


def read_predictions(
    table: str, *, since: datetime, until: datetime, client: Any = None
) -> pd.DataFrame:
    """Logged predictions in [since, until) from the BigQuery prediction log, without the
    synthetic traffic of load tests and canaries; `logged_at` as ISO text (like the file
    log)."""
    from google.cloud import bigquery

    validate_table_id(table)
    client = client if client is not None else make_client(table.split(".", 1)[0])
    sql = (
        f"SELECT * FROM `{table}` WHERE logged_at >= @since AND logged_at < @until"  # noqa: S608 - id validated
        " AND NOT IFNULL(synthetic, FALSE) ORDER BY logged_at"
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", until),
        ]
    )
    with _api_errors(table):
        frame: pd.DataFrame = client.query(sql, job_config=config).to_dataframe(
            create_bqstorage_client=False
        )
    if "logged_at" in frame.columns:
        frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True).map(
            lambda t: t.isoformat()
        )
    return frame


def _window_config(since: datetime, until: datetime) -> Any:
    from google.cloud import bigquery

    return bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", until),
        ]
    )


def quality_sql(log_table: str, labels_table: str) -> str:
    """`QUALITY_SQL` over two validated table ids (identifiers quoted, values parameters)."""
    review, decline = _quoted(Decision.REVIEW), _quoted(Decision.DECLINE)
    return QUALITY_SQL.format(
        log=validate_table_id(log_table),
        labels=validate_table_id(labels_table),
        flagged=f"{review}, {decline}",
        approve=_quoted(Decision.APPROVE),
        review=review,
        decline=decline,
    )


def _quoted(decision: Decision) -> str:
    return f"'{decision.value}'"


def quality_tallies(
    log_table: str, labels_table: str, *, since: datetime, until: datetime, client: Any = None
) -> pd.DataFrame:
    """`TALLY_COLUMNS` per (model_tag, role) of the labelled predictions logged in
    [since, until), computed in BigQuery (`quality_sql`); raises DataSourceError."""
    sql = quality_sql(log_table, labels_table)
    client = client if client is not None else make_client(log_table.split(".", 1)[0])
    with _api_errors(f"{log_table} joined to {labels_table}"):
        job = client.query(sql, job_config=_window_config(since, until))
        frame: pd.DataFrame = job.to_dataframe(create_bqstorage_client=False)
    return frame.reindex(columns=list(TALLY_COLUMNS))


def read_label_table(table: str, *, client: Any = None) -> pd.DataFrame:
    """The latest label of every transaction in a labels table (`LABELS_TABLE_SCHEMA`), with
    a UTC `reported_at`, like `sproxxo.jobs.labels.read_labels` gives for the local files."""
    validate_table_id(table)
    client = client if client is not None else make_client(table.split(".", 1)[0])
    sql = (
        f"SELECT transaction_id, is_fraud, reported_at FROM `{table}` "  # noqa: S608 - id validated
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY transaction_id ORDER BY reported_at DESC) = 1"
    )
    with _api_errors(table):
        frame: pd.DataFrame = client.query(sql).to_dataframe(create_bqstorage_client=False)
    return frame.assign(
        is_fraud=frame["is_fraud"].astype("int64"),
        reported_at=pd.to_datetime(frame["reported_at"], utc=True),
    )


class BigQueryPredictionSink:
    """Streams prediction records into a BigQuery table (streaming inserts, `insertAll`).

    By default a batch is all-or-nothing: one invalid row rejects the whole request. With
    `skip_invalid_rows` the valid rows are kept and only the invalid ones are reported.
    """

    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        project: str | None = None,
        timeout_seconds: float = 30.0,
        skip_invalid_rows: bool = False,
    ) -> None:
        self.table = validate_table_id(table)
        self.timeout_seconds = timeout_seconds
        self.skip_invalid_rows = skip_invalid_rows
        self._client = client if client is not None else make_client(project or table.split(".")[0])

    def write(self, chunks: Sequence[Mapping[str, Any]]) -> None:
        """Insert every record of the prediction-log chunks; raises `DataSourceError`
        summarising any rejected rows."""
        rows = [
            {key: to_json_value(value) for key, value in record.items()}
            for chunk in chunks
            for record in records_of(dict(chunk))
        ]
        if not rows:
            return
        with _api_errors(self.table):
            errors = self._client.insert_rows_json(
                self.table,
                rows,
                skip_invalid_rows=self.skip_invalid_rows,
                retry=_retry(self.timeout_seconds),
                timeout=self.timeout_seconds,
            )
        if errors:
            raise DataSourceError(summarize_insert_errors(self.table, errors, total=len(rows)))
        logger.info("bigquery predictions written table=%s rows=%d", self.table, len(rows))

    def ensure_table(self, schema_fields: Sequence[tuple[str, ...]]) -> None:
        """Create the table with `(name, BigQuery type[, mode])` fields unless it exists."""
        from google.cloud import bigquery

        schema = [
            bigquery.SchemaField(
                field[0], field[1], mode=field[2] if len(field) > 2 else "NULLABLE"
            )
            for field in schema_fields
        ]
        with _api_errors(self.table):
            self._client.create_table(
                bigquery.Table(self.table, schema=schema),
                exists_ok=True,
                retry=_retry(self.timeout_seconds),
                timeout=self.timeout_seconds,
            )


def to_json_value(value: Any) -> Any:
    """A JSON-ready value for streaming inserts (timestamps as ISO text, NUMERIC as text)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def summarize_insert_errors(table: str, errors: Sequence[Mapping[str, Any]], *, total: int) -> str:
    """One line naming the table, how many rows failed and the first few reasons."""
    shown = []
    for entry in errors[:_MAX_ERRORS_SHOWN]:
        reasons = "; ".join(
            f"{e.get('reason', '?')} {e.get('location', '')}: {e.get('message', '')}".strip()
            for e in entry.get("errors", [])
        )
        shown.append(f"row {entry.get('index', '?')}: {reasons}")
    return f"bigquery table {table}: {len(errors)} of {total} rows rejected ({' | '.join(shown)})"


def _retry(timeout_seconds: float) -> Retry:
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(timeout_seconds)


def _job_retry(timeout_seconds: float) -> Retry:
    from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

    # A re-issued job gets its own API deadline, so give the job retry a multiple of it.
    return DEFAULT_JOB_RETRY.with_deadline(2 * timeout_seconds)


@contextmanager
def _api_errors(table: str) -> Iterator[None]:
    """Translate Google API / auth / transport failures into `DataSourceError`."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except api.NotFound as exc:
        raise DataSourceError(f"bigquery table {table}: not found ({exc.message})") from exc
    except api.Forbidden as exc:
        raise DataSourceError(f"bigquery table {table}: permission denied ({exc.message})") from exc
    except auth.GoogleAuthError as exc:
        raise DataSourceError(
            f"bigquery table {table}: credentials missing or rejected ({exc})"
        ) from exc
    except (api.GoogleAPIError, requests.RequestException, TimeoutError) as exc:
        raise DataSourceError(
            f"bigquery table {table}: request failed ({type(exc).__name__}: {exc})"
        ) from exc
