"""Compliance report per run: consent, erasures, where PII lives, encryption at rest."""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from dagster_project.encryption import encryption_key
from dagster_project.ingest.sources import SOURCES
from dagster_project.publish import PUBLISHED_TABLES
from dagster_project.resources import WarehouseResource
from dagster_project.warehouse_io import read_frame

CONSENT_SQL = """
    with latest as (
        select purpose, granted,
               row_number() over (
                   partition by coalesce(user_id, email_token), lower(purpose)
                   order by _recorded_at desc
               ) as recency
        from raw.consent
    )
    select lower(purpose) as purpose,
           count(*) filter (where lower(granted) in ('true', '1', 'yes', 't', 'y')) as granted,
           count(*) filter (where lower(granted) not in ('true', '1', 'yes', 't', 'y')) as denied
    from latest where recency = 1
    group by 1 order by 1
"""
ERASURE_SQL = """
    select count(*) as runs_with_requests, coalesce(sum(requests_processed), 0) as requests,
           coalesce(sum(identifiers_registered), 0) as identifiers_registered,
           coalesce(sum(rows_removed), 0) as rows_removed
    from audit.erasure_log where requests_processed > 0 or rows_removed > 0
"""


def pii_inventory() -> str:
    rows = [
        f"| `{source}.{column}` | token `raw.{source}.{column}_token` (HMAC-SHA256) | "
        + ("plaintext in PII zone `pii.profiles`" if column in spec.pii_zone_columns else "-")
        + " |"
        for source, spec in SOURCES.items()
        for column in spec.pii_columns
    ]
    return "| input column | warehouse | PII zone |\n|---|---|---|\n" + "\n".join(rows)


@asset(
    key=AssetKey(["audit", "compliance_report"]),
    deps=[AssetKey(["raw", source]) for source in SOURCES],
    group_name="privacy",
    kinds={"duckdb"},
    owners=["team:data-platform"],
    description=(
        "Per run: current consent by purpose, erasure requests processed (counts only, no "
        "identifiers), which PII columns exist and where each lives, and whether the warehouse "
        "and PII zone are encrypted at rest. Also written to $PZ_DATA_DIR/reports/compliance.md."
    ),
)
def compliance_report(context: AssetExecutionContext, warehouse: WarehouseResource):
    settings = warehouse.settings()
    with warehouse.connect() as con:
        consent = read_frame(con, CONSENT_SQL)
        con.execute(
            "create table if not exists audit.erasure_log (processed_at timestamp, "
            "trigger_source varchar, requests_processed bigint, identifiers_registered bigint, "
            "rows_removed bigint, detail varchar)"
        )
        erasure = read_frame(con, ERASURE_SQL)
    encrypted = encryption_key() is not None
    report = "\n\n".join(
        [
            f"# Compliance report ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
            "## Consent (latest record per person and purpose)\n"
            + (consent.to_markdown(index=False) if len(consent) else "_no consent records_"),
            "## Erasure\n" + erasure.to_markdown(index=False),
            "## PII: where it lives\n" + pii_inventory(),
            "Published snapshot tables (no plaintext PII): "
            + ", ".join(f"`{t}`" for t in PUBLISHED_TABLES),
            "## Encryption at rest\n"
            + (
                "**on**: warehouse and PII zone encrypted with DuckDB encryption (key from "
                "`PZ_ENCRYPTION_KEY`)."
                if encrypted
                else "**off**: set `PZ_ENCRYPTION_KEY` to encrypt the warehouse and PII zone."
            ),
        ]
    )
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / "compliance.md").write_text(report + "\n")
    return MaterializeResult(
        metadata={
            "report": MetadataValue.md(report),
            "encryption_at_rest": encrypted,
            "erasure_requests_processed": int(erasure["requests"].iloc[0]),
        }
    )
