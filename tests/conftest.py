"""Test settings: hypothesis profiles "fast" (default, deterministic) and "thorough"
(HYPOTHESIS_PROFILE), single-threaded torch, and the shared helpers (tiny.py, synthetic.py,
strategies.py, shared_data.py in this folder) importable from tests/unit and
tests/integration."""

import os
import sys
from pathlib import Path

import torch
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("fast", max_examples=50, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# The models in the tests are tiny: extra threads cost more than they save, and on a busy
# machine they spin against each other.
torch.set_num_threads(1)
