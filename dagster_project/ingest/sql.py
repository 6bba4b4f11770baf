"""SQL building blocks for ingest: quoting, temporary macros (HMAC, timestamp parsing).

Everything row-level runs inside DuckDB. The HMAC key is baked into TEMP macros only, so it
lives in the connection's memory and never in the warehouse file's catalog.
"""

from __future__ import annotations

import duckdb


def quote_identifier(name: str) -> str:
    """Quote a column or table name taken from a file, so it is data and never SQL."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def hmac_pads(key: bytes) -> tuple[str, str]:
    """The inner and outer HMAC-SHA256 pads of `key`, as hex (RFC 2104)."""
    import hashlib

    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = bytes(b ^ 0x36 for b in key).hex()
    outer = bytes(b ^ 0x5C for b in key).hex()
    return inner, outer


def install_macros(con: duckdb.DuckDBPyConnection, pii_key: bytes) -> None:
    """Create the TEMP macros ingest uses on this connection.

    `pz_token(kind, value)` normalizes a PII value by kind and returns its keyed HMAC-SHA256
    (lowercase hex, identical to Python's `hmac.new(key, value, sha256).hexdigest()`), or null
    for a blank value. `pz_parse_ts(text, tz, zone_offset, zone_known)` turns any accepted
    timestamp form into a UTC `timestamp`, or null when it cannot; `zone_offset` is the UTC
    offset of `tz` throughout the local hour of `text` when known, else null, and `zone_known`
    whether DuckDB knows the zone `tz` names (both from `ZONE_HOURS_SQL`).
    """
    inner, outer = hmac_pads(pii_key)
    con.execute(
        f"""
        create or replace temp macro pz_hmac(m) as
            sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || encode(m))));

        create or replace temp macro pz_normalize_pii(kind, v) as (
            case kind
                when 'email' then nullif(lower(trim(v)), '')
                when 'phone' then nullif(right(regexp_replace(v, '[^0-9]', '', 'g'), 10), '')
                when 'name' then nullif(lower(trim(regexp_replace(v, '\\s+', ' ', 'g'))), '')
                else nullif(trim(v), '')
            end
        );

        create or replace temp macro pz_token(kind, v) as pz_hmac(pz_normalize_pii(kind, v));

        create or replace temp table pz_timezones as
            select name from pg_timezone_names();

        create or replace temp macro pz_has_offset(ts) as
            regexp_matches(
                trim(ts),
                '\\d{{2}}:\\d{{2}}(:\\d{{2}}(\\.\\d+)?)?\\s*'
                || '(Z|z|UTC|[+-]\\d{{2}}(:?\\d{{2}})?)$'
            );

        create or replace temp macro pz_parse_ts(ts, tz, zone_offset, zone_known) as (
            case
                -- fast paths, the common forms: ISO-8601 with an offset, and without one (what
                -- the branches with pz_has_offset and with a zone below give them, without
                -- their trims and regexes: a local time took all five regexes)
                when regexp_full_match(
                    ts, '\\d{{4}}-\\d{{2}}-\\d{{2}}[T ]\\d{{2}}:\\d{{2}}:\\d{{2}}(\\.\\d{{1,9}})?'
                    || '(Z|[+-]\\d{{2}}:\\d{{2}})'
                ) then timezone('UTC', try_cast(ts as timestamptz))
                when regexp_full_match(
                    ts, '\\d{{4}}-\\d{{2}}-\\d{{2}}[T ]\\d{{2}}:\\d{{2}}:\\d{{2}}(\\.\\d{{1,9}})?'
                ) then (
                    case
                        when nullif(trim(tz), '') is null then try_cast(ts as timestamp)
                        when zone_known then coalesce(
                            try_cast(ts as timestamp) + zone_offset,
                            timezone('UTC', timezone(trim(tz), try_cast(ts as timestamp)))
                        )
                    end
                )
                when nullif(trim(ts), '') is null then null
                when regexp_full_match(trim(ts), '-?\\d{{13}}')
                    then make_timestamp(trim(ts)::bigint * 1000)
                when regexp_full_match(trim(ts), '-?\\d{{9,10}}(\\.\\d+)?')
                    then make_timestamp((trim(ts)::double * 1000000)::bigint)
                when pz_has_offset(ts)
                    then timezone('UTC', try_cast(trim(ts) as timestamptz))
                when nullif(trim(tz), '') is null
                    then try_cast(trim(ts) as timestamp)
                -- a named zone: the hour's offset when it holds for the whole local hour
                -- (converting with the zone's rules costs ~4 s per million rows); else the
                -- rules, value by value
                when zone_known
                    then coalesce(
                        try_cast(trim(ts) as timestamp) + zone_offset,
                        timezone('UTC', timezone(trim(tz), try_cast(trim(ts) as timestamp)))
                    )
            end
        );
        """
    )


# Each (zone, local hour) of a frame's zoned timestamps: whether DuckDB knows the zone, and the
# UTC offset `pz_parse_ts` may convert the hour with, where one offset holds for the whole local
# hour: it is the offset at the hour's first and last microsecond, and a zone changes its offset
# at most once an hour. An hour with a change in it, or of a zone DuckDB does not know, has a
# null offset (its values are converted one by one, or not at all); a value that is not a local
# time has a null hour. Format with `ts`, `tz` (SQL expressions over `source`) and `source`.
ZONE_HOURS_SQL = """
    with local_hours as (
        select distinct
            trim({tz}) as zone,
            date_trunc('hour', try_cast(trim({ts}) as timestamp)) as hour
        from {source}
        where {tz} is not null
    ),
    known as (
        select zone, hour, zone in (select name from pz_timezones) as is_known
        from local_hours
    ),
    offsets as (
        -- CASE, not a filter: an unknown zone must never reach timezone(), which throws
        select
            zone,
            hour,
            is_known,
            case
                when is_known and hour is not null
                    then timezone('UTC', timezone(zone, hour)) - hour
            end as offset_at_start,
            case
                when is_known and hour is not null
                    then timezone('UTC', timezone(zone, hour + interval '3599.999999 seconds'))
                        - (hour + interval '3599.999999 seconds')
            end as offset_at_end
        from known
    )
    select
        zone,
        hour,
        is_known,
        case when offset_at_start = offset_at_end then offset_at_start end as zone_offset
    from offsets
"""
