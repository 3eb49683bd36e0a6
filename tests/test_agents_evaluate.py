"""The CartPole actor-critic and deterministic evaluation."""

import gymnasium as gym
import pytest
import torch

from ppo_edu.agents import ActorCritic
from ppo_edu.evaluate import evaluate


def test_agent_sizes_itself_from_the_env():
    env = gym.make("CartPole-v1")
    agent = ActorCritic.for_env(env)
    assert (agent.obs_dim, agent.n_actions) == (4, 2)


def test_continuous_action_space_is_rejected_by_name():
    with pytest.raises(ValueError, match="Discrete action space, got Box"):
        ActorCritic.for_env(gym.make("Pendulum-v1"))


def test_act_returns_one_action_logprob_and_value_per_state():
    agent = ActorCritic(4, 2)
    obs = torch.randn(7, 4)
    actions, logprobs, values = agent.act(obs)
    assert actions.shape == logprobs.shape == values.shape == (7,)
    # the log-prob of the action it took, under its own policy, and the critic's value
    torch.testing.assert_close(logprobs, agent.distribution(obs).log_prob(actions))
    torch.testing.assert_close(values, agent.value(obs))
    assert (logprobs <= 0).all()


def test_deterministic_action_is_the_most_likely_one():
    agent = ActorCritic(4, 2)
    obs = torch.randn(50, 4)
    actions, _, _ = agent.act(obs, deterministic=True)
    assert torch.equal(actions, agent.logits(obs).argmax(-1))


def test_wrong_observation_size_is_rejected():
    with pytest.raises(ValueError, match="last dimension 3, expected 4"):
        ActorCritic(4, 2).value(torch.randn(2, 3))


def test_initial_policy_is_close_to_uniform():
    torch.manual_seed(0)
    probs = ActorCritic(4, 2).distribution(torch.randn(100, 4)).probs
    assert torch.allclose(probs, torch.full_like(probs, 0.5), atol=0.05)


class AlwaysLeft(ActorCritic):
    def logits(self, obs):
        return torch.tensor([5.0, -5.0]).expand(*obs.shape[:-1], 2)


def test_evaluation_of_a_bad_policy_gives_short_episodes():
    result = evaluate(AlwaysLeft(4, 2), episodes=10)
    assert len(result.returns) == 10
    assert 5 <= result.mean <= 15  # pushing left only: the pole falls within ~10 steps


def _play_alone(env_id: str, seed: int, policy: ActorCritic) -> float:
    """One episode on one plain env, the most likely action each step: its return."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = int(policy.logits(torch.as_tensor(obs, dtype=torch.float32)).argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + float(reward), terminated or truncated
    env.close()
    return total


def test_each_env_counts_its_first_episode_only_as_a_single_env_would():
    """Env i starts from seed + i and counts until its own first episode ends: the same
    returns as playing each start state alone (an env that finished early auto-resets, and
    its next episode's rewards must not be added)."""
    result = evaluate(AlwaysLeft(4, 2), episodes=10, seed=7)
    alone = [_play_alone("CartPole-v1", 7 + i, AlwaysLeft(4, 2)) for i in range(10)]
    assert result.returns == alone
    assert len(set(alone)) > 1  # the envs end at different steps, so some auto-reset early


class Balancer(ActorCritic):
    """Push the cart the way the pole leans: keeps it up for about 40-60 steps, until the
    cart drifts off the track."""

    def logits(self, obs):
        push_right = obs[..., 2] > 0
        return torch.stack([(~push_right).float(), push_right.float()], -1) * 10.0


def test_a_time_limit_ends_the_episode_that_evaluation_counts():
    """Truncation ends an episode too: under a 50-step limit the episodes that reach it score
    exactly 50, not 50 plus the steps of the episode after the auto-reset."""
    import gymnasium as gym

    if "CartPole50-v0" not in gym.registry:
        gym.register("CartPole50-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                     max_episode_steps=50)
    returns = evaluate(Balancer(4, 2), episodes=8, env_id="CartPole50-v0").returns
    assert returns == [_play_alone("CartPole50-v0", 10_000 + i, Balancer(4, 2)) for i in range(8)]
    assert 50.0 in returns and min(returns) < 50  # some truncated by the limit, some terminated


class SoftBalancer(ActorCritic):
    """Balancer's preferences, held loosely: the preferred action has probability
    e / (1 + e) = 0.73, so a policy that samples often takes the other one."""

    def logits(self, obs):
        push_right = obs[..., 2] > 0
        return torch.stack([(~push_right).float(), push_right.float()], -1)


def test_deterministic_evaluation_plays_the_most_likely_action():
    """deterministic=True must take the argmax: the same episodes as an argmax loop, which a
    sampled evaluation (of the same seed: the same start states) does not play."""
    agent = SoftBalancer(4, 2)
    greedy = [_play_alone("CartPole-v1", 5 + i, agent) for i in range(6)]
    assert evaluate(agent, episodes=6, seed=5).returns == greedy
    assert evaluate(agent, episodes=6, seed=5, deterministic=False).returns != greedy


def test_evaluation_is_reproducible_for_a_seed():
    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    a = evaluate(agent, episodes=8, seed=3, deterministic=False)
    torch.manual_seed(123)  # the global RNG must not matter: the seed fixes the sampled actions
    b = evaluate(agent, episodes=8, seed=3, deterministic=False)
    c = evaluate(agent, episodes=8, seed=4, deterministic=False)
    assert a.returns == b.returns
    assert a.returns != c.returns


def test_evaluation_needs_at_least_one_episode():
    with pytest.raises(ValueError, match="episodes must be an integer >= 1"):
        evaluate(ActorCritic(4, 2), episodes=0)


def test_evaluation_seeds_must_fit_torch():
    """torch.Generator takes seeds below 2**64: above, it failed with "Overflow when unpacking
    long long", which names no argument."""
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0 and < 2\*\*64.*got 18446744073709551616"):
        evaluate(ActorCritic(4, 2), episodes=2, seed=2**64)
    assert len(evaluate(ActorCritic(4, 2), episodes=2, seed=2**64 - 1).returns) == 2  # the largest


def test_numpy_policy_matches_act_on_the_same_random_stream():
    import numpy as np

    torch.manual_seed(3)
    agent = ActorCritic(4, 3, hidden=16)
    obs = torch.randn(64, 4)
    policy = agent.numpy_policy()
    torch.manual_seed(7)
    actions, logprobs, values = agent.act(obs)
    torch.manual_seed(7)
    np_actions, np_logprobs, np_values = policy.act(obs.numpy())
    assert np.array_equal(np_actions, actions.numpy())
    assert np.allclose(np_logprobs, logprobs.numpy(), atol=1e-5)
    assert np.allclose(np_values, values.numpy(), atol=1e-5)
    assert np.array_equal(policy.act(obs.numpy(), deterministic=True)[0],
                          agent.act(obs, deterministic=True)[0].numpy())
    # it reads the agent's weights: an update shows up without a new snapshot
    with torch.no_grad():
        agent.critic[-1].bias.add_(1.0)
    assert np.allclose(policy.value(obs.numpy()), agent.value(obs).detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        policy.act(np.zeros((2, 5), dtype=np.float32))


def test_recorded_episode_keeps_the_last_frame_when_max_steps_stops_it():
    from ppo_edu.animation import record_episode

    agent = ActorCritic(4, 2)
    episode = record_episode(agent, seed=0, max_steps=5, frame_every=2)
    assert episode.length == 5
    assert len(episode.frames) == 4  # the start, steps 2 and 4, and step 5 where it stopped


def test_a_sampled_episode_is_fixed_by_its_seed_and_leaves_the_global_rng_alone(monkeypatch):
    from ppo_edu.animation import record_episode

    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    state = torch.get_rng_state()

    def no_global_seeding(*args, **kwargs):  # it would reseed CUDA and MPS too, and fork_rng
        raise AssertionError("record_episode seeded the global RNG")  # restores only some
    monkeypatch.setattr(torch, "manual_seed", no_global_seeding)
    lengths = [record_episode(agent, seed=s, deterministic=False).length for s in (0, 0, 1)]
    assert lengths[0] == lengths[1] and lengths[0] != lengths[2]
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------- EvalTracker


def _scripted_tracker(monkeypatch, means, every=1000):
    """A tracker whose evaluations return ``means`` in order (no episodes played)."""
    import ppo_edu.evaluate as module
    from ppo_edu.evaluate import EvalResult, EvalTracker

    scripted = iter(means)
    monkeypatch.setattr(module, "evaluate",
                        lambda agent, episodes, seed, env_id: EvalResult(next(scripted), 0.0, []))
    return EvalTracker(every=every)


def test_tracker_evaluates_after_the_first_update_past_each_multiple(monkeypatch):
    tracker = _scripted_tracker(monkeypatch, [10.0, 20.0, 30.0])
    agent = ActorCritic(4, 2)
    stops = [tracker(agent, {"env_steps": steps}) for steps in range(256, 3073, 256)]
    # 1000 -> at 1024, 2000 -> at 2048, 3000 -> at 3072; never twice for one multiple
    assert tracker.evals == [(1024, 10.0), (2048, 20.0), (3072, 30.0)]
    assert not any(stops)


def test_tracker_keeps_a_copy_of_the_latest_of_the_best(monkeypatch):
    tracker = _scripted_tracker(monkeypatch, [100.0, 500.0, 300.0, 500.0, 200.0])
    agent = ActorCritic(4, 2)
    weights = {}
    for k in range(1, 6):
        with torch.no_grad():
            agent.actor[-1].bias.fill_(float(k))  # a different agent at each evaluation
        weights[k * 1000] = agent.actor[-1].bias.clone()
        tracker(agent, {"env_steps": k * 1000})
    assert (tracker.best_mean, tracker.best_steps) == (500.0, 4000)
    assert tracker.best_agent is not agent
    assert torch.equal(tracker.best_agent.actor[-1].bias, weights[4000])  # not the last (5000)
    assert tracker.first_at(475) == 2000 and tracker.first_at(501) is None
    assert tracker.first_at(500) == 2000  # a mean equal to the target has reached it


def test_tracker_changes_nothing_in_training_and_its_best_agent_evaluates_as_recorded():
    from ppo_edu.evaluate import EvalTracker
    from ppo_edu.ppo import PPOConfig, train_ppo

    config = PPOConfig(seed=3, total_timesteps=2048)
    _, plain = train_ppo(config, progress=False)
    tracker = EvalTracker(every=512, episodes=5)
    _, tracked = train_ppo(config, progress=False, callback=tracker)
    for a, b in zip(plain, tracked, strict=True):
        assert {k: v for k, v in a.items() if k != "wall_time"} == {
            k: v for k, v in b.items() if k != "wall_time"}
    assert [steps for steps, _ in tracker.evals] == [512, 1024, 1536, 2048]
    assert tracker.best_mean == max(mean for _, mean in tracker.evals)
    assert evaluate(tracker.best_agent, episodes=5).mean == tracker.best_mean


@pytest.mark.parametrize("kwargs, message", [
    ({"every": 0}, "every must be an integer >= 1"),
    ({"every": 2048.0}, "every must be an integer >= 1"),
    ({"episodes": 0}, "episodes must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"seed": 2**64}, r"seed must be an integer >= 0 and < 2\*\*64"),  # what torch seeds
])
def test_tracker_settings_are_checked(kwargs, message):
    from ppo_edu.evaluate import EvalTracker

    with pytest.raises(ValueError, match=message):
        EvalTracker(**kwargs)


def test_tracker_first_at_needs_a_number():
    from ppo_edu.evaluate import EvalTracker

    with pytest.raises(ValueError, match="target must be a number"):
        EvalTracker().first_at(float("nan"))


def test_the_evaluation_reports_the_mean_and_population_std_of_its_returns():
    import numpy as np

    torch.manual_seed(0)
    result = evaluate(ActorCritic(4, 2), episodes=6, seed=3, deterministic=False)
    assert len(set(result.returns)) > 1  # else any spread formula gives 0
    assert result.mean == pytest.approx(np.mean(result.returns))
    assert result.std == pytest.approx(np.std(result.returns))  # ddof 0: the spread of these episodes
