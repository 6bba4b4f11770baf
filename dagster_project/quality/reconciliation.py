"""Per file: rows read = rows loaded + rows quarantined, and the tables agree with the manifest.

Right-to-erasure deletes rows from `raw.<source>` after they loaded (dagster_project/ingest/
erasure.py), so a file may hold fewer rows than it loaded once erasures exist: that shortfall
is reported as `rows_erased`, never accepted without an erasure, and a file never holds more.
"""

from __future__ import annotations

import duckdb


def unreconciled_files_sql(source: str, erasures_exist: bool = False) -> str:
    """Current manifest rows of `source` whose counts do not balance or do not match what
    `raw.<source>` and `audit.quarantine` actually hold for that file."""
    fewer_rows_allowed = "true" if erasures_exist else "false"
    return f"""
        with loaded as (
            select _file as file, count(*) as n from raw.{source} group by 1
        ),
        quarantined as (
            select file, count(*) filter (where line is not null) as n_rows,
                   count(*) filter (where line is null) as n_files
            from audit.quarantine where source = '{source}' group by 1
        )
        select m.file, m.status, m.rows_read, m.rows_loaded, m.rows_quarantined,
               coalesce(l.n, 0) as rows_in_raw, coalesce(q.n_rows, 0) as rows_in_quarantine
        from audit.load_manifest as m
        left join loaded as l on l.file = m.file
        left join quarantined as q on q.file = m.file
        where m.is_current and m.source = '{source}'
          and m.status in ('loaded', 'replaced', 'quarantined')
          and (m.rows_read <> m.rows_loaded + m.rows_quarantined
               or coalesce(l.n, 0) > m.rows_loaded
               or (coalesce(l.n, 0) < m.rows_loaded and not {fewer_rows_allowed})
               or m.rows_quarantined <> coalesce(q.n_rows, 0)
               or (m.status = 'quarantined' and m.rows_read = 0 and coalesce(q.n_files, 0) = 0))
        order by m.file
    """


def reconcile_source(con: duckdb.DuckDBPyConnection, source: str) -> dict:
    """Counts for the check's metadata plus the files that do not reconcile."""
    totals = con.execute(
        """
        select count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0),
               coalesce(sum(rows_quarantined), 0)
        from audit.load_manifest where is_current and source = $source
        """,
        {"source": source},
    ).fetchall()[0]
    erasures_exist = bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'audit' and table_name = 'erasure_registry'"
        ).fetchall()[0][0]
    ) and bool(con.execute("select count(*) from audit.erasure_registry").fetchall()[0][0])
    bad = con.execute(unreconciled_files_sql(source, erasures_exist)).df()
    in_raw = con.execute(f"select count(*) from raw.{source}").fetchall()[0][0]
    return {
        "files": int(totals[0]),
        "rows_erased": int(totals[2]) - int(in_raw),
        "rows_read": int(totals[1]),
        "rows_loaded": int(totals[2]),
        "rows_quarantined": int(totals[3]),
        "unreconciled": bad,
    }
