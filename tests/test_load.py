"""Many users: the load test of bench/load_test.py, short (8 sessions x 20 s) in the suite.

The long run is `.venv/bin/python bench/load_test.py --sessions 8 --warmup 60 --duration 300` (or set
PCDVIZ_LOAD_SECONDS for this test).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

SECONDS = float(os.environ.get("PCDVIZ_LOAD_SECONDS", "20"))


def test_eight_sessions_no_failures_bounded_memory_uploads_cleaned():
    """8 concurrent gradio_client sessions upload and switch views: 0 failures, no RSS growth, uploads deleted,
    no traceback in the server's log."""
    pytest.importorskip("gradio_client")
    from load_test import format_result, run_load_test

    # the memory reference after a minute of the same load, as the long run takes it: the server's caches fill
    # over that first minute (800 -> 918 -> 972 MB at 5, 35, 65 s in a fresh clone), and a reference at 5 s
    # made this bounded filling fail the growth bound in some runs (+161 and +178 MB against ~155)
    r = run_load_test(sessions=8, duration=SECONDS, quiet=True, warmup=60.0)
    report = format_result(r)
    print("\n" + report)
    assert r["failed"] == 0, report
    assert r["requests"] >= 8 * 6 and set(r["events"]) >= {"/load_upload", "/view", "/select_checkpoint"}, report
    assert r["rss_end_mb"] - r["rss_warm_mb"] <= r["memory_bound_mb"], report
    assert r["uploads_left"] == 0 and r["server_alive"], report
    assert r["server_errors"] == 0, report   # no exception swallowed by the server either
