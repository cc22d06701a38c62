"""Shared test settings: where the real sample files live, and a quiet, offline Gradio."""

import os
import statistics
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture
def samples_dir() -> Path:
    """../shared/samples beside the checkout (real files nobody on this project made); skip where absent."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real sample files not found at {SAMPLES} (they live in ../shared/samples beside the checkout)")
    return SAMPLES


def median_seconds(fn, n: int = 30) -> float:
    """Median wall time of n calls of fn (speed tests on a shared, noisy machine use medians)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
