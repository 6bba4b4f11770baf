"""Where things live and which secrets the run has: read from the environment, in one place.

| variable | default | meaning |
|---|---|---|
| `PZ_DATA_DIR` | `data` | root of raw/, warehouse/, published/, reports/, truth/ |
| `PZ_PII_KEY` | (none) | HMAC key for PII tokens; required unless `PZ_DEMO_MODE=1` |
| `PZ_DEMO_MODE` | `0` | `1` makes (and keeps) a local key under warehouse/ and says so |
| `PZ_AS_OF` | newest event | the run's as-of time (ISO-8601, UTC) for windows and recency |
| `PZ_DUCKDB_MEMORY_LIMIT` | `5GB` | DuckDB memory (pipeline, dbt); it spills beyond |
| `PZ_DBT_THREADS` | `1` | dbt models built at once (each DuckDB query already uses every core) |
| `PZ_DBT_UNIT_TESTS` | `0` | `1` runs dbt's unit tests in the pipeline's builds, too |
| `PZ_GX_MAX_ROWS` | `1000000` | a bigger table's GX suite runs on a sample of this many rows |
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


# DuckDB's own default is 80% of the machine's memory per process: a 20M-event build then
# competes with everything else on the machine and gets OOM-killed instead of spilling. The
# limit is DuckDB's buffers; a process holds about 0.6 GB more, and the pipeline's worker holds
# up to 2.1 GB (at 1M people) while dbt runs beside it. At 1M people, dbt's heaviest models
# ran as fast at 5GB as at 6GB (int_events_deduplicated, int_interactions_weighted and
# user_profiles 54.2 -> 50.7 s; peak 6.57 -> 5.64 GB), which keeps the two under 8 GB.
DEFAULT_DUCKDB_MEMORY_LIMIT = "5GB"


def duckdb_memory_limit() -> str:
    return os.environ.get("PZ_DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT


# Great Expectations validates pandas frames: 20M rows of a raw table cost minutes and GBs in
# the Dagster process. Beyond this many rows a suite runs on a sample, and its key
# uniqueness expectations are re-counted over every row in DuckDB.
DEFAULT_GX_MAX_ROWS = 1_000_000


def gx_max_rows() -> int:
    text = os.environ.get("PZ_GX_MAX_ROWS") or str(DEFAULT_GX_MAX_ROWS)
    try:
        rows = int(text)
    except ValueError as error:
        raise SettingsError(f"PZ_GX_MAX_ROWS={text!r} is not a whole number of rows") from error
    if rows < 1:
        raise SettingsError(f"PZ_GX_MAX_ROWS={text!r} must be at least 1")
    return rows


class SettingsError(RuntimeError):
    """The environment does not describe a runnable pipeline."""


def parse_as_of(text: str | None) -> datetime | None:
    """An ISO-8601 as-of time as naive UTC (a value without offset is taken as UTC)."""
    if not text:
        return None
    try:
        as_of = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise SettingsError(f"PZ_AS_OF={text!r} is not an ISO-8601 time") from error
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    return as_of


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    as_of: datetime | None = None

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse_dir / "warehouse.duckdb"

    @property
    def spill_dir(self) -> Path:
        """Where DuckDB spills what does not fit its memory limit (the dbt profile agrees)."""
        return self.warehouse_dir / "warehouse.duckdb.tmp"

    @property
    def pii_zone_path(self) -> Path:
        return self.warehouse_dir / "pii.duckdb"

    @property
    def published_dir(self) -> Path:
        return self.data_dir / "published"

    @property
    def published_path(self) -> Path:
        return self.published_dir / "personalization.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @classmethod
    def from_env(cls, data_dir: str | None = None, as_of: str | None = None) -> Settings:
        """Settings from the environment; non-empty arguments take precedence."""
        path = Path(data_dir or os.environ.get("PZ_DATA_DIR") or "data")
        return cls(data_dir=path.resolve(), as_of=parse_as_of(as_of or os.environ.get("PZ_AS_OF")))

    def pii_key(self) -> bytes:
        """The PII tokenization key: from `PZ_PII_KEY`, or a local demo key in demo mode."""
        key = os.environ.get("PZ_PII_KEY")
        if key:
            return key.encode()
        if os.environ.get("PZ_DEMO_MODE") == "1":
            path = self.warehouse_dir / ".demo_pii_key"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(secrets.token_hex(32))
                path.chmod(0o600)
            return path.read_text().strip().encode()
        raise SettingsError(
            "PZ_PII_KEY is not set. PII (emails, phones, names, addresses, IPs) is tokenized "
            "with a keyed HMAC on entry and the key must come from the environment: "
            "`export PZ_PII_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')` "
            "and keep it safe (changing it changes every token). For a local demo, set "
            "PZ_DEMO_MODE=1 to make a local key."
        )
