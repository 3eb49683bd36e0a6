"""The course map: the one place that names the lessons and the GitHub repository.

``tools/build_notebooks.py`` writes the README's course map and every notebook's
Colab install line from here, so changing ``GITHUB_REPO`` is a one-line edit.
"""

from __future__ import annotations

from dataclasses import dataclass

GITHUB_REPO = "ORG/REPO"
BRANCH = "main"


@dataclass(frozen=True)
class Lesson:
    number: int
    notebook: str
    title: str
    summary: str

    @property
    def path(self) -> str:
        return f"notebooks/{self.notebook}"

    @property
    def exercise_path(self) -> str:
        return f"notebooks/exercises/{self.notebook}"

    @property
    def colab_url(self) -> str:
        return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{BRANCH}/{self.path}"

    @property
    def exercise_colab_url(self) -> str:
        """The exercise version on Colab, where learners do the exercises on a GPU runtime."""
        return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{BRANCH}/{self.exercise_path}"


LESSONS: list[Lesson] = [
    Lesson(1, "01_cpi_surrogate.ipynb", "Policy gradients and the CPI surrogate",
           "r_t(θ), L^CPI, why its gradient is the policy gradient, and how many epochs on one batch wreck a policy"),
    Lesson(2, "02_clipped_objective.ipynb", "The clipped surrogate objective",
           "L^CLIP, PPO paper Figures 1 and 2 on CartPole, the clip fraction, L^CPI vs L^CLIP side by side"),
    Lesson(3, "03_gae.ipynb", "Advantage estimation and GAE",
           "Monte-Carlo returns, TD residuals, GAE(γ, λ), a bias/variance sweep, terminated vs truncated"),
    Lesson(4, "04_ppo_cartpole.ipynb", "PPO on CartPole",
           "the full algorithm on vectorised envs, diagnostics, an animation of the agent, ablations"),
    Lesson(5, "05_sft_reward_model.ipynb", "SFT and the reward model",
           "a tiny GPT-2 on human-rated movie reviews, Bradley-Terry reward model vs the VADER lexicon"),
    Lesson(6, "06_rlhf_ppo.ipynb", "RLHF of GPT-2 with PPO",
           "value head, reference model, per-token KL (in the reward, not the loss), adaptive KL, PPO over tokens, "
           "rewards shaped by prefix scores, "
           "over-optimisation, best-of-n"),
]


def install_command() -> str:
    """The pip command the first notebook cell runs on Colab."""
    return f'pip install -q "ppo-edu[colab] @ git+https://github.com/{GITHUB_REPO}@{BRANCH}"'
