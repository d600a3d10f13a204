from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NDPI = Path(os.environ.get("NTG_NDPI", ROOT.parent / "shared" / "data" / "ndpi"))


@pytest.fixture(scope="session")
def ndpi() -> Path:
    """The nDPI capture corpus beside the checkout (never copied into the project)."""
    if not (NDPI / "pcaps").is_dir():
        pytest.skip(f"real corpus not found at {NDPI} (set NTG_NDPI)")
    return NDPI
