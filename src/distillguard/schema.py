"""The input log schema of CONTRACT §1, as data.

Everything that reads, writes or simulates exchange logs takes its column names and
types from here, so the contract lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

Kind = Literal["string", "int", "float", "bool", "timestamp"]

TS_TYPE = pa.timestamp("us", tz="UTC")

_ARROW: dict[Kind, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TS_TYPE,
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    non_negative: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW[self.kind]


EXCHANGE_COLUMNS: tuple[Column, ...] = (
    Column("exchange_id", "string", required=True),
    Column("ts", "timestamp", required=True),
    Column("account_id", "string", required=True),
    Column("model", "string", required=True),
    Column("prompt", "string", required=True),
    Column("input_tokens", "int", required=True, non_negative=True),
    Column("output_tokens", "int", required=True, non_negative=True),
    Column("api_key_id", "string"),
    Column("org_id", "string"),
    Column("endpoint", "string"),
    Column("ip", "string"),
    Column("asn", "int"),
    Column("country", "string"),
    Column("user_agent", "string"),
    Column("payment_fingerprint", "string"),
    Column("system_prompt", "string"),
    Column("conversation_id", "string"),
    Column("turn_index", "int", non_negative=True),
    Column("messages_count", "int", non_negative=True),
    Column("reasoning_tokens", "int", non_negative=True),
    Column("max_tokens", "int", non_negative=True),
    Column("temperature", "float"),
    Column("top_p", "float"),
    Column("n", "int", non_negative=True),
    Column("logprobs", "bool"),
    Column("top_logprobs", "int", non_negative=True),
    Column("tools_count", "int", non_negative=True),
    Column("stream", "bool"),
    Column("status", "int"),
    Column("latency_ms", "float"),
    Column("response_text", "string"),
)

ACCOUNT_COLUMNS: tuple[Column, ...] = (
    Column("account_id", "string", required=True),
    Column("created_at", "timestamp"),
    Column("email_domain", "string"),
    Column("payment_fingerprint", "string"),
    Column("signup_ip", "string"),
    Column("country", "string"),
    Column("tier", "string"),
    Column("verified", "bool"),
)

ENDPOINTS = ("chat.completions", "messages", "responses", "completions")

REQUIRED = tuple(c.name for c in EXCHANGE_COLUMNS if c.required)
EXCHANGE_COLUMN_NAMES = tuple(c.name for c in EXCHANGE_COLUMNS)

# Where every valid row came from, kept beside the contract columns so evidence can
# always be traced back to a file and line.
PROVENANCE_FIELDS = (
    pa.field("_source", pa.string()),
    pa.field("_line", pa.int64()),
    pa.field("_extra", pa.string()),  # unknown columns, as one JSON object (carried through)
)


def arrow_schema(columns: tuple[Column, ...] = EXCHANGE_COLUMNS) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type, nullable=not c.required) for c in columns])


def staged_schema() -> pa.Schema:
    """Schema of validated exchanges as staged for the engine (contract columns + provenance)."""
    fields = [pa.field(c.name, c.arrow_type) for c in EXCHANGE_COLUMNS]
    return pa.schema([*fields, *PROVENANCE_FIELDS])


def truth_account_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("account_id", pa.string()),
            pa.field("label", pa.string()),
            pa.field("population", pa.string()),
            pa.field("campaign_id", pa.string()),
        ]
    )


def truth_exchange_schema() -> pa.Schema:
    return pa.schema([pa.field("exchange_id", pa.string()), pa.field("is_attack", pa.bool_())])
