"""Transaction and assessment schemas shared by training, serving and monitoring."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    field_validator,
)

#: 2: the card profile fields (home lat/long, card_age_days, customer_age, city_pop) are
#: optional (filled from the card's stored profile, else missing), and the model sees the
#: card's history (sproxxo.history).
SCHEMA_VERSION = "2"

#: Hard bounds: outside them a transaction is malformed (4xx), not merely suspicious.
MAX_AMOUNT = Decimal("1000000")
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)

_PAN_LIKE = re.compile(r"\d{13,19}")
#: Separators people put inside card numbers ("4111-1111 1111.1111"); a run of 13-19 digits
#: counts as a card number once they are taken out.
_PAN_SEPARATORS = re.compile(r"[ \-._]")


class MerchantCategory(StrEnum):
    """The 14 merchant categories of the Sparkov / Kaggle fraud data set."""

    ENTERTAINMENT = "entertainment"
    FOOD_DINING = "food_dining"
    GAS_TRANSPORT = "gas_transport"
    GROCERY_NET = "grocery_net"
    GROCERY_POS = "grocery_pos"
    HEALTH_FITNESS = "health_fitness"
    HOME = "home"
    KIDS_PETS = "kids_pets"
    MISC_NET = "misc_net"
    MISC_POS = "misc_pos"
    PERSONAL_CARE = "personal_care"
    SHOPPING_NET = "shopping_net"
    SHOPPING_POS = "shopping_pos"
    TRAVEL = "travel"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in MerchantCategory)
ONLINE_CATEGORIES: frozenset[str] = frozenset({"grocery_net", "misc_net", "shopping_net"})


class Decision(StrEnum):
    """What the gateway should do with the authorisation."""

    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


Coordinate = Annotated[float, Field(allow_inf_nan=False)]


def _whole_number(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; accept it losslessly, nothing else (no "5", no 5.5).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Count = Annotated[int, BeforeValidator(_whole_number)]

#: The JSON contract of `amount`: a number or a decimal string, > 0, <= 1,000,000, in cents.
_AMOUNT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000, "multipleOf": 0.01},
        {"type": "string", "pattern": r"^(?:[1-9]\d{0,5}(?:\.\d{1,2})?|0\.(?:0[1-9]|[1-9]\d?))$"},
    ],
    "description": "USD amount, > 0 and <= 1,000,000, at most 2 decimal places",
}

EXAMPLE_TRANSACTION: dict[str, Any] = {
    "transaction_id": "tx-2026-000001",
    "card_id": "card_5f2c9a1e7b",
    "amount": "42.50",
    "currency": "USD",
    "timestamp": "2026-11-28T14:05:00-06:00",
    "merchant_id": "m-000123",
    "merchant_category": "grocery_pos",
    "lat": 19.4326,
    "long": -99.1332,
    "merch_lat": 19.4400,
    "merch_long": -99.1400,
    "card_age_days": 420,
    "is_foreign": False,
    "customer_age": 34,
    "city_pop": 9209944,
}


class Transaction(BaseModel):
    """One card authorisation as the gateway sends it. Strict: no coercion, no extras."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        json_schema_extra={"example": EXAMPLE_TRANSACTION},
    )

    transaction_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    card_id: str = Field(
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Opaque card token from the vault; never a PAN (no run of 13 or more "
        "digits, spaces, dashes, dots and underscores between them not counting).",
        # Documented with the no-PAN rule; validated by the pattern plus `_card_id_is_not_a_pan`
        # (pydantic's regex engine has no look-ahead).
        json_schema_extra={"pattern": r"^(?!.*(?:[0-9][_\-]*){12}[0-9])[A-Za-z0-9_\-]+$"},
    )
    amount: Annotated[Decimal, WithJsonSchema(_AMOUNT_SCHEMA)] = Field(
        gt=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False
    )
    currency: Literal["USD"] = Field(
        description="Scoring contract currency; the gateway converts before calling."
    )
    timestamp: AwareDatetime = Field(
        description="Local time of the authorisation with its UTC offset, years 2000-2099.",
        json_schema_extra={"pattern": "^20[0-9]{2}-"},
    )
    merchant_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    merchant_category: MerchantCategory
    lat: Coordinate | None = Field(
        default=None, ge=-90, le=90, description="Cardholder's home latitude (profile)"
    )
    long: Coordinate | None = Field(
        default=None, ge=-180, le=180, description="Cardholder's home longitude (profile)"
    )
    merch_lat: Coordinate = Field(ge=-90, le=90)
    merch_long: Coordinate = Field(ge=-180, le=180)
    # Optional counts: the bounds go before the validator, inside the union's member; on
    # the field (or after it) pydantic documents them as non-standard `ge`/`le` keys.
    card_age_days: Annotated[int, Field(ge=0, le=36_500), BeforeValidator(_whole_number)] | None = (
        Field(default=None, description="Days since issue (profile)")
    )
    is_foreign: bool
    customer_age: Annotated[int, Field(ge=0, le=120), BeforeValidator(_whole_number)] | None = (
        Field(default=None, description="Cardholder's age in years (profile)")
    )
    city_pop: Annotated[int, Field(ge=0, le=50_000_000), BeforeValidator(_whole_number)] | None = (
        Field(default=None, description="Home city population (profile)")
    )

    @field_validator("card_id")
    @classmethod
    def _card_id_is_not_a_pan(cls, value: str) -> str:
        if _PAN_LIKE.search(_PAN_SEPARATORS.sub("", value)):
            raise ValueError(
                "card_id must be an opaque token, not a card number: it holds 13-19 digits "
                "once spaces, dashes, dots and underscores are removed (rule: no_pan)"
            )
        return value

    @field_validator("timestamp")
    @classmethod
    def _timestamp_not_absurd(cls, value: datetime) -> datetime:
        # The local year settles most values; only years up to 2000 need the (costlier)
        # comparison of instants across offsets.
        if value.year <= EARLIEST_TIMESTAMP.year and value < EARLIEST_TIMESTAMP:
            raise ValueError(
                f"timestamp {value.isoformat()} is before {EARLIEST_TIMESTAMP.date()} "
                "(rule: timestamp_range)"
            )
        if value.year >= 2100:
            raise ValueError(f"timestamp {value.isoformat()} is absurd (rule: timestamp_range)")
        return value


class RuleViolation(BaseModel):
    """A business rule the transaction breaks; it can still be scored."""

    model_config = ConfigDict(frozen=True)

    rule: str
    field: str
    message: str
    severity: Literal["review", "decline"]


class Indicator(BaseModel):
    """One risk indicator: whether it fired, its weight in the noisy-OR score and the
    quantity it looked at."""

    model_config = ConfigDict(frozen=True)

    name: str
    fired: bool
    weight: float
    value: float | None = Field(
        description="the measured quantity; null when unknown (no card history or profile)"
    )


class RiskBreakdown(BaseModel):
    """The 0-1 rule-based risk score and the indicators behind it."""

    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0, le=1)
    indicators: list[Indicator]


class HistorySummary(BaseModel):
    """What the card did before this transaction (sproxxo.history), for a reviewer."""

    model_config = ConfigDict(frozen=True)

    tx_1h: int = Field(description="the card's transactions in the hour before")
    tx_24h: int
    amount_24h: float = Field(description="their amount, USD")
    seconds_since_last: float | None = Field(description="null: the card's first")
    amount_to_card_mean: float | None = Field(
        description="this amount over the card's mean amount so far (null: no history)"
    )


class FeatureContribution(BaseModel):
    """How much one feature moved the model's raw score for this transaction."""

    model_config = ConfigDict(frozen=True)

    feature: str = Field(description="a model feature (`sproxxo.features.FEATURE_NAMES`)")
    value: float | None = Field(description="its value for this transaction; null when unknown")
    contribution: float = Field(
        description="log-odds it added to the raw score (positive: towards fraud)"
    )


class Explanation(BaseModel):
    """Why the model scored the transaction as it did, exactly (TreeSHAP over the trees,
    `sproxxo.explanations`): base_value + the listed contributions + other_contributions =
    raw_score."""

    model_config = ConfigDict(frozen=True)

    base_value: float = Field(description="the raw score expected over the training data")
    raw_score: float = Field(description="this transaction's raw score (log-odds, uncalibrated)")
    contributions: list[FeatureContribution] = Field(
        description="the largest contributions by magnitude, largest first"
    )
    other_contributions: float = Field(description="the sum of the other features' contributions")


class ExplainQuery(BaseModel):
    """The scoring routes' query string: `?explain=true` explains every answer, approves
    included (reviews and declines always carry their explanation)."""

    model_config = ConfigDict(frozen=True)

    explain: bool = False


class Assessment(BaseModel):
    """Everything the core concludes about one transaction."""

    model_config = ConfigDict(frozen=True)

    transaction_id: str
    valid: bool
    violations: list[RuleViolation]
    risk: RiskBreakdown
    fraud_probability: float = Field(ge=0, le=1)
    decision: Decision
    reason_codes: list[str]
    model_tag: str
    history: HistorySummary | Literal["unavailable"] = Field(
        description="the card's history, or `unavailable` when the store could not answer "
        "(the model then scored with the history features missing)"
    )
    explanation: Explanation | None = Field(
        default=None,
        description="the features behind the model's score: every review and decline, and "
        "any answer with `?explain=true`; absent otherwise (or when the model cannot explain)",
    )


class Prediction(Assessment):
    """The /predict answer: the assessment plus the server-side latency."""

    latency_ms: float


class FieldError(BaseModel):
    """One schema error: where, which rule, and a message naming the field."""

    field: str
    rule: str
    message: str


class BatchItemError(BaseModel):
    """A batch item refused by the schema; the other items are still scored."""

    index: int
    transaction_id: str | None
    valid: Literal[False] = False
    errors: list[FieldError]
    more_errors: int = Field(default=0, ge=0, description="errors beyond those listed")


class BatchResponse(BaseModel):
    """The /predict_batch answer: one entry per input item, in input order."""

    model_tag: str
    count: int
    scored: int
    refused: int
    latency_ms: float
    results: list[Assessment | BatchItemError]


#: Transactions per batch request (the gateway's contract).
MAX_BATCH_ITEMS: Final = 1000
BatchItem = Annotated[Transaction | JsonValue, Field(union_mode="left_to_right")]


class BatchRequest(BaseModel):
    """A batch of 1 to `MAX_BATCH_ITEMS` transactions. An item is a `Transaction` when it
    validates, else kept raw (left to right) and refused on its own: one bad item never
    fails the batch."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"transactions": [EXAMPLE_TRANSACTION]}}
    )

    transactions: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
