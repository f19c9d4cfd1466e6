"""Hypothesis profiles: "fast" (default, deterministic) and "thorough" (HYPOTHESIS_PROFILE)."""

import os

from hypothesis import settings

settings.register_profile("fast", max_examples=50, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
