"""Data quality: the data audit, consistency checks, file reconciliation and the GX runner.

Everything here is cheap to import; Great Expectations is imported only inside
`expectations.validate_suites`, so loading the code location stays fast.
"""
