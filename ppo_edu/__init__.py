"""ppo_edu: the small tested package behind the ppo-edu notebook course.

Where to find things (one obvious place per idea):

- ``ppo_edu.objectives``  probability ratio, L^CPI, L^CLIP, KL estimators (lessons 1-2)
- ``ppo_edu.agents``      the CartPole actor-critic
- ``ppo_edu.rollout``     rollout collection from a gymnasium 1.x vector env (SAME_STEP autoreset)
- ``ppo_edu.evaluate``    evaluation: mean return over N episodes; EvalTracker keeps the best agent of a run
- ``ppo_edu.experiments`` the many-epochs-on-one-batch experiments of lessons 1-2
- ``ppo_edu.advantages``  returns, TD residuals, GAE with terminated/truncated (lesson 3)
- ``ppo_edu.ppo``         PPOConfig and the CartPole trainer (lesson 4); ``python -m ppo_edu.cartpole``
- ``ppo_edu.lm``          data bundle, tiny GPT-2, reward model, Bradley-Terry, VADER judge (lesson 5)
- ``ppo_edu.rlhf``        PPO for language models: generation, logprobs, KL, value head, trainer (lesson 6)
- ``ppo_edu.figures``, ``ppo_edu.plots``, ``ppo_edu.animation``   what the notebooks show
- ``ppo_edu.exercises``   checkers for the notebook exercises
- ``ppo_edu.notebook``    the notebooks' setup helpers (device, profile)
"""

__version__ = "0.1.0"
