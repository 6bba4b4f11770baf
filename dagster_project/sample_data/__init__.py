"""Sample-data generator: messy raw landing files plus the ground truth behind them.

`generate(out_dir, ...)` writes `out_dir/raw/<source>/` (what the pipeline ingests) and
`out_dir/truth/` (what tests compare against; the pipeline never reads it). Run it from the
shell with `python -m dagster_project.sample_data --out DIR`.
"""

from dagster_project.sample_data.generator import generate

__all__ = ["generate"]
