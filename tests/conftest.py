"""Shared test set-up: a known PII key, UTC, and the repo root on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

TEST_PII_KEY = "test-pii-key-not-secret"
os.environ["PZ_PII_KEY"] = TEST_PII_KEY
os.environ.pop("PZ_DEMO_MODE", None)
os.environ.pop("PZ_AS_OF", None)
