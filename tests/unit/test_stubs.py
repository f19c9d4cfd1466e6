"""The hand-written stubs `siit/_core.pyi` match the compiled extension (mypy.stubtest)."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_stubtest_finds_no_mismatch():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "siit._core"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"stubtest failed:\n{result.stdout}\n{result.stderr}"
