"""Helpers for the first cells of every notebook: device choice and the run profile.

Every notebook has a visible settings cell with two profiles, ``"full"`` (what a
learner runs) and ``"fast"`` (what CI runs). The environment variable
``PPO_EDU_PROFILE`` overrides the choice so CI can force the fast one, and
``PPO_EDU_SEED`` replaces the profile's seed, to rerun a lesson on another seed (the
lessons' text quotes seed 0's run, and says where a claim was checked over other seeds).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ppo_edu._checks import require_device

PROFILE_ENV = "PPO_EDU_PROFILE"
SEED_ENV = "PPO_EDU_SEED"
PROFILES = ("full", "fast")


def pick_device(requested: str | None = None) -> torch.device:
    """Return ``cuda``, ``mps`` or ``cpu`` (the first available), or the requested one.

    Asking for a device that is not there is an error, never a silent fallback.
    """
    if requested is not None:
        return require_device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_profile(default: str = "full") -> str:
    """The run profile: ``$PPO_EDU_PROFILE`` if set, else ``default``."""
    # checked even when the variable is set: otherwise a typo passes in CI and fails for learners
    if default not in PROFILES:
        raise ValueError(f"default={default!r} is not a profile; use one of {PROFILES}")
    from_env = os.environ.get(PROFILE_ENV)
    if from_env is None:
        return default
    profile = from_env.strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={from_env!r} is not a profile; use one of {PROFILES}")
    return profile


def settings_for(profiles: dict[str, dict[str, Any]], default: str = "full") -> dict[str, Any]:
    """Pick one profile's settings and print them, so every run says what it uses."""
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:  # a typo ("fats") would surface only when CI asks for that profile
        raise ValueError(f"the settings cell has profile(s) {unknown}; the profiles are {PROFILES}")
    profile = choose_profile(default)
    if profile not in profiles:
        raise ValueError(f"profile {profile!r} missing from the settings cell: {sorted(profiles)}")
    settings = dict(profiles[profile])
    seed = os.environ.get(SEED_ENV)
    if seed is not None:
        if "seed" not in settings:
            raise ValueError(f"{SEED_ENV} is set, but the settings cell has no seed to replace")
        if not seed.strip().isdecimal() or not seed.strip().isascii():
            raise ValueError(f"{SEED_ENV}={seed!r} is not a seed; use a whole number >= 0")
        settings["seed"] = int(seed)
    print(f"profile: {profile}  (to change it in a running notebook: %env {PROFILE_ENV}=fast or =full, "
          "then run this cell and every cell below it again)")
    for key, value in settings.items():
        origin = (f"  (from {SEED_ENV}; the lesson's text quotes seed 0's run)"
                  if key == "seed" and seed is not None else "")
        print(f"  {key} = {value}{origin}")
    return settings


def expect(condition: Any, message: str, *, measured: bool = True) -> bool:
    """A lesson's check of a claim: an ``AssertionError`` if it fails where its threshold was measured.

    Some thresholds were measured on one setup only (lessons 5 and 6's, on the tiny offline
    models on a CPU: nobody has run GPT-2 through them yet, and a GPU draws other samples for
    the same seed). Elsewhere ``measured=False``: a failure is printed, with that caveat,
    instead of stopping "Run all" halfway through the lesson.
    Returns whether the claim held.
    """
    if not isinstance(measured, bool):
        raise TypeError(f"measured must be True or False, got {measured!r}")
    held = bool(condition)
    if held:
        return True
    if measured:
        raise AssertionError(message)
    print(f"NOT AS EXPECTED: {message}\n  (this check's threshold was measured with the tiny offline models "
          "on a CPU only, not on this setup: read it as a finding about your run, and the text's numbers "
          "as the offline run's)")
    return False
