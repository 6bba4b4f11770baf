"""Small helpers that turn frames into Dagster metadata (Markdown tables, previews)."""

import pandas as pd
from dagster import MetadataValue


def markdown_table(frame: pd.DataFrame, max_rows: int = 20) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_no rows_")
    shown = frame.head(max_rows)
    text = shown.to_markdown(index=False)
    if len(frame) > max_rows:
        text += f"\n\n_{len(frame) - max_rows} more rows not shown_"
    return MetadataValue.md(text)
