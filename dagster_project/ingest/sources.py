"""The input contract of DESIGN.md as data: what every raw source must and may carry.

One `SourceSpec` per landing folder under `$PZ_DATA_DIR/raw/`. The ingest code, the raw table
DDL, the data audit and the docs all read these specs, so the contract lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TimestampField:
    """A timestamp column parsed once, at ingest, into a typed UTC column `_<name>`."""

    name: str
    timezone_column: str | None = None  # naive values are local time in this column's zone
    required: bool = False
    source_column: str | None = None  # the raw column holding the text, when not `name`


@dataclass(frozen=True)
class SourceSpec:
    name: str
    description: str
    columns: tuple[str, ...]  # every contract column, in raw-table order
    required_columns: tuple[str, ...] = ()  # a file without one of these is quarantined whole
    # Groups of which at least one column must be present in the file (e.g. user_id / anonymous_id).
    required_any_of: tuple[tuple[str, ...], ...] = ()
    # Columns replaced by `<name>_token` on entry (plaintext goes to the PII zone only).
    pii_columns: dict[str, str] = field(default_factory=dict)  # column -> normalization kind
    timestamps: tuple[TimestampField, ...] = ()
    # Row rules: (reason, SQL predicate over the file's varchar columns that is TRUE for a bad row).
    row_rules: tuple[tuple[str, str], ...] = ()
    # Columns whose plaintext the PII zone keeps for identity matching.
    pii_zone_columns: tuple[str, ...] = ()

    @property
    def raw_columns(self) -> list[str]:
        """Contract columns as stored in `raw.<source>` (PII columns become tokens)."""
        return [f"{c}_token" if c in self.pii_columns else c for c in self.columns]

    @property
    def holds_pii(self) -> bool:
        return bool(self.pii_columns)


def _blank(column: str) -> str:
    # the frame's columns are trimmed and blank ones nulled already (loader._clean)
    return f"{column} is null"


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in [
        SourceSpec(
            name="events",
            description="Behavioral events: clicks, views, carts, purchases, ratings.",
            columns=(
                "event_id",
                "event_type",
                "timestamp",
                "timezone",
                "user_id",
                "anonymous_id",
                "session_id",
                "item_id",
                "value",
                "quantity",
                "page_url",
                "referrer",
                "properties",
            ),
            required_columns=("event_id", "event_type", "timestamp"),
            required_any_of=(("user_id", "anonymous_id"),),
            timestamps=(
                TimestampField("occurred_at", "timezone", required=True, source_column="timestamp"),
            ),
            row_rules=(
                ("missing event_id", _blank("event_id")),
                ("missing event_type", _blank("event_type")),
                (
                    "missing user_id and anonymous_id",
                    f"{_blank('user_id')} and {_blank('anonymous_id')}",
                ),
            ),
        ),
        SourceSpec(
            name="profiles",
            description="Demographic CRM exports, possibly from several source systems.",
            columns=(
                "record_id",
                "source_system",
                "user_id",
                "email",
                "phone",
                "first_name",
                "last_name",
                "birth_date",
                "age",
                "gender",
                "address",
                "city",
                "postcode",
                "region",
                "country",
                "signup_at",
                "updated_at",
            ),
            required_columns=("record_id",),
            pii_columns={
                "email": "email",
                "phone": "phone",
                "first_name": "name",
                "last_name": "name",
                "address": "name",
            },
            timestamps=(TimestampField("signup_at"), TimestampField("updated_at")),
            row_rules=(("missing record_id", _blank("record_id")),),
            pii_zone_columns=(
                "email",
                "phone",
                "first_name",
                "last_name",
                "address",
                "birth_date",
                "postcode",
                "city",
            ),
        ),
        SourceSpec(
            name="context",
            description="Context per event or session: device, OS, browser, IP, geolocation.",
            columns=(
                "event_id",
                "session_id",
                "device_type",
                "os",
                "browser",
                "user_agent",
                "ip",
                "geo_country",
                "geo_city",
                "latitude",
                "longitude",
                "timezone",
            ),
            required_any_of=(("event_id", "session_id"),),
            pii_columns={"ip": "ip"},
            row_rules=(
                (
                    "missing event_id and session_id",
                    f"{_blank('event_id')} and {_blank('session_id')}",
                ),
            ),
        ),
        SourceSpec(
            name="catalog",
            description="Item catalog.",
            columns=(
                "item_id",
                "title",
                "category",
                "subcategory",
                "brand",
                "price",
                "tags",
                "in_stock",
                "is_curated",
            ),
            required_columns=("item_id",),
            row_rules=(("missing item_id", _blank("item_id")),),
        ),
        SourceSpec(
            name="consent",
            description="Consent events per person and purpose.",
            columns=("user_id", "email", "purpose", "granted", "recorded_at", "source"),
            required_columns=("purpose", "granted", "recorded_at"),
            required_any_of=(("user_id", "email"),),
            pii_columns={"email": "email"},
            timestamps=(TimestampField("recorded_at", required=True),),
            row_rules=(
                ("missing user_id and email", f"{_blank('user_id')} and {_blank('email')}"),
                ("missing purpose", _blank("purpose")),
                (
                    "granted is not a boolean",
                    "coalesce(lower(trim(granted)) not in "
                    "('true','false','1','0','yes','no','t','f','y','n'), true)",
                ),
            ),
        ),
        SourceSpec(
            name="erasure",
            description="Right-to-erasure requests.",
            columns=("user_id", "email", "requested_at"),
            required_columns=("requested_at",),
            required_any_of=(("user_id", "email"),),
            pii_columns={"email": "email"},
            timestamps=(TimestampField("requested_at", required=True),),
            row_rules=(
                ("missing user_id and email", f"{_blank('user_id')} and {_blank('email')}"),
            ),
        ),
    ]
}

METADATA_COLUMNS: dict[str, str] = {
    "extra": "varchar",  # unknown columns of the file, as a JSON object
    "_file": "varchar",  # path relative to the raw directory
    "_line": "bigint",  # physical line (JSON lines, CSV rejects) or row ordinal (CSV, Parquet)
    "_file_sha256": "varchar",
    "_loaded_at": "timestamp",
}

SUPPORTED_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
