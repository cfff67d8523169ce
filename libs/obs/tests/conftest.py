"""Shared fixtures of the obs tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the backend the Mycelium app uses)."""
    return "asyncio"
