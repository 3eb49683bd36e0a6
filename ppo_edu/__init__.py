"""ppo_edu: the small tested package behind the ppo-edu notebook course.

Where to find things (one obvious place per idea):

- ``ppo_edu.objectives``  probability ratio, L^CPI, L^CLIP, KL estimators
- ``ppo_edu.agents``      the CartPole actor-critic
- ``ppo_edu.rollout``     rollout collection from a gymnasium 1.x vector env
- ``ppo_edu.evaluate``    deterministic evaluation (mean return over N episodes)
- ``ppo_edu.figures``     the figures the README and notebooks show
- ``ppo_edu.exercises``   checkers for the notebook exercises
- ``ppo_edu.notebook``    the notebooks' setup helpers (device, profile)
"""

__version__ = "0.1.0"
