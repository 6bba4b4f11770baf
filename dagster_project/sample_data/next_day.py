"""Land one more day of generated events and context on top of an existing sample.

Used by the incremental benchmark (`make bench`) and the incremental-equals-full test: the same
people (user ids) come back, but with new event, session and device ids, as a real next day
would bring. The generator derives ids from row positions, so a second generation would reuse
the first one's ids; here they are moved into their own namespace (the uuid's second group,
which no generated id spells, becomes `nxtd`).
"""

from __future__ import annotations

import gzip
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

from dagster_project.sample_data.generator import generate

# Event ids: the `event_id` JSON field, or the first CSV column (event and context exports).
_JSON_EVENT_ID = re.compile(r'("event_id"\s*:\s*")([0-9a-fA-F]{8})-[0-9a-fA-F]{4}-')
_CSV_EVENT_ID = re.compile(r'^("?)([0-9a-fA-F]{8})-[0-9a-fA-F]{4}-', re.MULTILINE)
_SESSION = re.compile(r"\bsess_[0-9a-fA-F]{4}")
TEXT_SUFFIXES = (".jsonl", ".csv", ".jsonl.gz", ".csv.gz")


def _namespaced(text: str) -> str:
    """New event and session ids; user and device (anonymous) ids stay, so returning people
    and devices (and their logins) are the same as the day before."""
    text = _JSON_EVENT_ID.sub(r"\1\2-nxtd-", text)
    text = _CSV_EVENT_ID.sub(r"\1\2-nxtd-", text)
    return _SESSION.sub("sess_nxtd", text)


def land_next_day(
    data_dir: Path,
    users: int,
    items: int,
    last_day: date,
    seed: int = 4242,
    prefix: str = "next_day",
) -> list[Path]:
    """Generate the day after `last_day` and copy its event and context files into
    `data_dir/raw/<source>/` under new names (`<prefix>_<name>`); return the landed paths.
    Parquet exports are left out (their ids cannot be rewritten as text)."""
    scratch = data_dir.parent / f".{data_dir.name}_{prefix}"
    shutil.rmtree(scratch, ignore_errors=True)
    generate(
        scratch,
        users=users,
        items=items,
        days=1,
        seed=seed,
        end_date=(last_day + timedelta(days=1)).isoformat(),
    )
    landed = []
    for source in ("events", "context"):
        for path in sorted((scratch / "raw" / source).iterdir()):
            if not path.name.endswith(TEXT_SUFFIXES):
                continue
            target = data_dir / "raw" / source / f"{prefix}_{path.name}"
            if path.name.endswith(".gz"):
                try:
                    text = gzip.decompress(path.read_bytes()).decode()
                except (OSError, EOFError, UnicodeDecodeError):
                    continue  # a deliberately broken archive: the base sample has its own
                target.write_bytes(gzip.compress(_namespaced(text).encode(), mtime=0))
            else:
                target.write_text(_namespaced(path.read_text()))
            landed.append(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return landed
