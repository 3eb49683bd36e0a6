"""Test configuration: the fast profile and a headless matplotlib for everything pytest starts.

nbval starts notebook kernels from this process, so they inherit these variables.
"""

import os

os.environ.setdefault("PPO_EDU_PROFILE", "fast")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
