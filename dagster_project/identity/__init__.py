"""Identity resolution steps that need DuckDB: Splink matching and the evaluation command."""
