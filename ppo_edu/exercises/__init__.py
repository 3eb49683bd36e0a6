"""Checkers for the notebook exercises.

Each exercise in a notebook is followed by one call, e.g. ``ratio_fn = check_ratio(ratio_fn)``.
A checker compares the learner's function with ``ppo_edu``'s reference on several cases
(edge cases included) and prints one clear line: a tick on success, or a specific hint
on failure. It returns the function the rest of the notebook should use: the learner's
own when it passed, else the reference (with a printed notice), so a learner who is
stuck can run every later cell.

The lesson modules (``ppo_edu.exercises.lesson1`` ...) hold the checkers; this module
holds the harness they share.
"""

from __future__ import annotations

from ppo_edu.exercises._harness import Check, checker

__all__ = ["Check", "checker"]
