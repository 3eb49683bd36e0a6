"""Bad input gets a clear error naming the problem, across the package (each case here used
to fail deep inside torch, transformers or gymnasium, or to run on silently)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppo_edu.agents import ActorCritic
from ppo_edu.lm import load_lm, load_reward_model
from ppo_edu.lm.reward import reward_fn_from_model
from ppo_edu.lm.testing import save_random_gpt2, small_tokenizer
from ppo_edu.lm.tokenizer import train_tokenizer
from ppo_edu.lm.training import generate, perplexity, text_nll, train_reward_model
from ppo_edu.ppo import (
    PPOConfig,
    clipped_value_loss,
    explained_variance,
    make_optimizer,
    ppo_update,
)
from ppo_edu.rollout import RolloutCollector, make_cartpole_envs

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is there")


# --------------------------------------------------------------------------- a GPU that is not there


@no_cuda
def test_asking_for_a_missing_gpu_names_it_everywhere(tmp_path):
    from ppo_edu.ppo import load_checkpoint, save_checkpoint, train_ppo

    tiny = PPOConfig(num_envs=2, num_steps=16, total_timesteps=32, minibatch_size=16)
    with pytest.raises(RuntimeError, match="'cuda' was requested but no CUDA GPU is available"):
        train_ppo(tiny, device="cuda", progress=False)
    envs = make_cartpole_envs(1, seed=0)
    try:
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            RolloutCollector(envs, ActorCritic.for_env(envs), seed=0, device="cuda")
    finally:
        envs.close()
    path = save_checkpoint(tmp_path / "agent.safetensors", ActorCritic(4, 2), tiny)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        load_checkpoint(path, device="cuda:0")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        load_lm("tiny", device="cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        load_reward_model("tiny", device="cuda")
    model, tok = load_reward_model("tiny")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        reward_fn_from_model(model, tok, device="cuda")


def test_a_gpu_index_past_the_last_gpu_is_named(monkeypatch):
    """On a one-GPU machine "cuda:1" is refused (indices run 0 .. count - 1); "cuda:0" is fine.
    The GPUs are faked, so this runs on any machine."""
    from ppo_edu._checks import require_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match=r"'cuda:1' was requested but there are only 1 CUDA GPU\(s\)"):
        require_device("cuda:1")
    assert require_device("cuda:0") == torch.device("cuda", 0)
    assert require_device("cuda") == torch.device("cuda")


# --------------------------------------------------------------------------- shapes that broadcast


def test_a_critic_output_of_shape_b_1_is_refused_not_broadcast():
    column, flat = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 3.0])
    # broadcast, a perfect critic read -1 and its loss was 0.67
    with pytest.raises(ValueError, match=r"shape mismatch: targets has shape \(3,\)"):
        explained_variance(column, flat)
    with pytest.raises(ValueError, match=r"shape mismatch: returns has shape \(3,\)"):
        clipped_value_loss(column, column, flat)
    assert explained_variance(flat, flat) == 1.0 and clipped_value_loss(flat, flat, flat).item() == 0.0


def test_explained_variance_wants_float_tensors():
    with pytest.raises(TypeError, match="predictions must be a torch.Tensor, got ndarray"):
        explained_variance(np.ones(3), torch.ones(3))
    with pytest.raises(TypeError, match="targets must be a floating-point tensor, got torch.int64"):
        explained_variance(torch.ones(3), torch.tensor([1, 2, 3]))


def test_ppo_update_refuses_a_minibatch_size_that_does_not_divide_the_rollout():
    config = PPOConfig(num_envs=2, num_steps=8, total_timesteps=16, minibatch_size=16)
    envs = make_cartpole_envs(2, seed=0)
    try:
        agent = ActorCritic.for_env(envs)
        rollout = RolloutCollector(envs, agent, seed=0).collect(8)  # 16 transitions
    finally:
        envs.close()
    zeros = torch.zeros_like(rollout.rewards)
    for size in (5, 32):  # a remainder minibatch of 1; one larger than the batch (used to be cut to 16)
        wrong = PPOConfig(num_envs=1, num_steps=size, total_timesteps=size, minibatch_size=size)
        with pytest.raises(ValueError, match=f"minibatch_size = {size} must divide the rollout's 16 transitions"):
            ppo_update(agent, make_optimizer(agent, wrong), rollout, zeros, zeros, wrong)
    stats = ppo_update(agent, make_optimizer(agent, config), rollout, zeros, zeros, config)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-7)  # runs; zero advantages leave pi alone


# --------------------------------------------------------------------------- PPOConfig and the CLI


@pytest.mark.parametrize("change, message", [
    (dict(gamma="0.99"), "gamma must be a real number, got '0.99'"),
    (dict(clip_epsilon=torch.tensor(0.2)), "clip_epsilon must be a real number"),
    (dict(learning_rate=True), "learning_rate must be a real number, got True"),
    (dict(lam=float("nan")), "lam must be a number, not NaN"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(env_id=None), "env_id must be a gymnasium environment id"),
])
def test_ppo_config_names_a_value_of_the_wrong_kind(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PPOConfig(**change)


def test_ppo_config_takes_numpy_numbers_as_floats():
    config = PPOConfig(clip_epsilon=np.float32(0.25), gamma=1)
    assert type(config.clip_epsilon) is float and config.gamma == 1.0 and type(config.gamma) is float


def test_the_cli_checks_its_output_folder_before_training(tmp_path, capsys):
    from ppo_edu.cartpole import main

    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    assert main(["--steps", "256", "--no-progress", "--output", str(a_file)]) == 2
    out = capsys.readouterr()
    assert f"error: cannot write to --output {a_file}" in out.err
    assert "trained" not in out.out  # refused before, not after, the training
    assert main(["--steps", "256", "--seed", "-1", "--no-progress", "--output", str(tmp_path)]) == 2
    assert "seed must be >= 0" in capsys.readouterr().err


# --------------------------------------------------------------------------- language models


def test_a_model_directory_without_tokenizer_files_is_refused(tmp_path):
    model, _ = load_lm("tiny")
    model.save_pretrained(tmp_path / "no-tokenizer")  # the tokenizer was not saved
    # transformers built an empty tokenizer from config.json: every text became [], without an error
    with pytest.raises(FileNotFoundError, match=r"no tokenizer files .* tokenizer.save_pretrained"):
        load_lm(tmp_path / "no-tokenizer")


def test_a_single_string_is_not_read_as_a_list_of_characters():
    model, tok = load_lm("tiny")
    with pytest.raises(TypeError, match="got a single str"):
        generate(model, tok, "This movie", max_new_tokens=2)
    with pytest.raises(TypeError, match="got a single str"):
        train_tokenizer("a good movie")


def test_generation_and_tokenizer_settings_out_of_range():
    model, tok = load_lm("tiny")
    for top_p in (0, 1.5):
        with pytest.raises(ValueError, match="top_p must be in"):
            generate(model, tok, ["A"], max_new_tokens=2, top_p=top_p)
    with pytest.raises(ValueError, match=r"vocab_size must be an integer >= 258"):
        train_tokenizer(["a good movie", "a bad movie"], vocab_size=10)
    for temperature in (0, -1.0, float("inf"), float("nan"), True):  # inf sampled uniformly
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            generate(model, tok, ["A"], max_new_tokens=2, temperature=temperature)
    # numpy numbers are numbers: the same sample as the Python float
    same = generate(model, tok, ["A"], max_new_tokens=3, temperature=0.75, top_p=0.875)  # exact in float32
    assert generate(model, tok, ["A"], max_new_tokens=3, temperature=np.float32(0.75), top_p=np.float32(0.875)) == same


@pytest.mark.parametrize("seed", [True, 1.5, -1, 2**64, np.float64(3.0)])
def test_the_language_model_helpers_name_a_bad_seed(tmp_path, seed):
    # generate() gave seed=1.5 and seed=True the sample of seed=1; the others failed inside numpy
    # with a message that named no argument, or (seed=True) ran as seed 1
    from ppo_edu.lm.bradley_terry import make_preference_pairs
    from ppo_edu.lm.training import sft_train
    from ppo_edu.rlhf import RLHFConfig
    from ppo_edu.rlhf.best_of_n import sample_and_score
    from ppo_edu.rlhf.evaluation import evaluate_policy, opening_prompts
    from ppo_edu.rlhf.setups import shuffled_reviews

    model, tok = load_lm("tiny")
    rm, rtok = load_reward_model(save_random_gpt2(tmp_path / "rm", small_tokenizer(), kind="rm"))
    texts, ratings = ["a good movie", "a bad movie"] * 4, [2.0, -2.0] * 4
    calls = [
        lambda: generate(model, tok, ["A"], max_new_tokens=2, seed=seed),
        lambda: sft_train(model, tok, texts, steps=1, batch_size=2, block=4, seed=seed),
        lambda: train_reward_model(rm, rtok, texts, ratings, epochs=0.5, batch_size=4, seed=seed),
        lambda: make_preference_pairs(ratings, margin=1.0, max_pairs=2, seed=seed),
        lambda: opening_prompts(["a good movie indeed"], seed=seed),
        lambda: evaluate_policy(model, model, tok, ["A good"], lambda t: torch.zeros(len(t)),
                                max_new_tokens=2, seed=seed),
        lambda: shuffled_reviews("snippets", "test", limit=2, seed=seed),
        lambda: sample_and_score(model, tok, ["A good"], lambda t: torch.zeros(len(t)), num_samples=1,
                                 max_new_tokens=2, seed=seed),
        lambda: RLHFConfig(seed=seed),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"seed must be an integer >= 0 and < 2\*\*64"):
            call()


def test_lm_scoring_refuses_empty_lists_and_bad_batch_sizes(tmp_path):
    tok = small_tokenizer()
    rm, rtok = load_reward_model(save_random_gpt2(tmp_path / "rm", tok, kind="rm"))
    lm, ltok = load_lm(save_random_gpt2(tmp_path / "lm", tok))
    with pytest.raises(ValueError, match="texts is an empty list"):
        reward_fn_from_model(rm, rtok)([])  # was an IndexError inside transformers
    with pytest.raises(ValueError, match="texts is an empty list"):
        text_nll(lm, ltok, [])
    for size in (0, -1):  # -1 returned no scores at all; 0 raised range()'s message
        with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {size}"):
            reward_fn_from_model(rm, rtok, batch_size=size)
        with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {size}"):
            perplexity(lm, ltok, ["a good movie"], batch_size=size)


def test_a_reward_model_with_no_preference_pair_to_train_on_is_refused(tmp_path):
    tok = small_tokenizer()
    rm, rtok = load_reward_model(save_random_gpt2(tmp_path / "rm", tok, kind="rm"))
    texts = ["a good movie", "a bad movie", "fine", "dull"]
    with pytest.raises(ValueError, match="no two ratings differ by at least margin=1"):
        train_reward_model(rm, rtok, texts, np.zeros(4), batch_size=2, progress=False)
    with pytest.raises(ValueError, match="eval_ratings were given without eval_texts"):
        train_reward_model(rm, rtok, texts, [2.0, -2.0, 1.0, -1.0], batch_size=2, progress=False,
                           eval_ratings=[1.0, -1.0])


# --------------------------------------------------------------------------- the RLHF policy


def test_the_policy_saves_its_value_head_as_safetensors_and_loads_no_pickle(tmp_path):
    from safetensors.torch import load_file

    from ppo_edu.rlhf.policy import VALUE_HEAD_FILE, PolicyWithValueHead

    lm, _ = load_lm("tiny")
    PolicyWithValueHead(lm).save_pretrained(tmp_path / "policy")
    assert VALUE_HEAD_FILE.endswith(".safetensors")
    assert set(load_file(str(tmp_path / "policy" / VALUE_HEAD_FILE))) == {"weight", "bias"}
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (tmp_path / "policy" / "config.json").rename(pickled / "config.json")
    torch.save(lm.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no model.safetensors .*pytorch_model.bin"):
        PolicyWithValueHead.from_pretrained(pickled)


# --------------------------------------------------------------------------- masks and done flags


def test_masks_and_done_flags_must_be_zero_or_one():
    from ppo_edu.advantages import bootstrap_values, compute_gae
    from ppo_edu.objectives import clipped_surrogate, masked_mean

    values = torch.tensor([1.0, 3.0])
    for weights in (torch.tensor([0.25, 0.75]), torch.tensor([2, 0]), torch.tensor([float("nan"), 0.0])):
        with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
            masked_mean(values, weights)  # each used to count as 1: the mean was 2.0
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1, got 0.1"):
        clipped_surrogate(torch.zeros(2), torch.zeros(2), torch.tensor([10.0, -10.0]), mask=torch.tensor([1.0, 0.1]))
    assert masked_mean(values, torch.tensor([1, 0])).item() == 1.0
    assert masked_mean(values, torch.tensor([False, True])).item() == 3.0

    z = torch.zeros(2, 1)
    half = torch.full((2, 1), 0.5)
    with pytest.raises(ValueError, match="terminated must be boolean or hold only 0 and 1, got 0.5"):
        compute_gae(torch.ones(2, 1), z, half, z.bool(), z, torch.zeros(1))  # was: every step terminated
    with pytest.raises(ValueError, match="truncated must be boolean"):
        bootstrap_values(z, z.bool(), half, z, torch.zeros(1))
    with pytest.raises(ValueError, match=r"final_values has shape \(1, 1\)"):
        bootstrap_values(z, z.bool(), z.bool(), torch.zeros(1, 1), torch.zeros(1))  # broadcast silently
    with pytest.raises(ValueError, match="values contains NaN"):
        bootstrap_values(torch.full((2, 1), float("nan")), z.bool(), z.bool(), z, torch.zeros(1))
    assert torch.equal(bootstrap_values(torch.tensor([[1.0], [2.0]]), torch.tensor([[0], [1]]), z, z,
                                        torch.tensor([5.0])), torch.tensor([[2.0], [0.0]]))


def test_non_finite_values_are_named_at_their_first_index():
    """The message points at the first bad entry (row-major), so a learner looks at the right step."""
    from ppo_edu._checks import require_finite

    x = torch.tensor([[0.0, float("nan")], [float("inf"), 1.0]])
    with pytest.raises(ValueError, match=r"x contains NaN or inf \(first at index \(0, 1\): nan\)"):
        require_finite(x=x)
    require_finite(x=torch.zeros(2, 2))  # finite: no error


def test_numpy_counts_and_seeds_come_back_as_python_ints():
    """np.int64 counts and np.uint64 seeds are accepted and handed on as plain ints (a numpy
    scalar overflows or changes type in arithmetic where an int does not)."""
    from ppo_edu._checks import require_count, require_seed

    for value, check in ((np.int64(3), require_count), (np.uint64(2**64 - 1), require_seed)):
        result = check("n", value)
        assert type(result) is int and result == int(value)


# --------------------------------------------------------------------------- agents, files, profiles


def test_an_agent_sized_for_another_env_is_named():
    from ppo_edu.evaluate import evaluate
    from ppo_edu.ppo import train_ppo

    tiny = PPOConfig(num_envs=2, num_steps=16, total_timesteps=32, minibatch_size=16)
    with pytest.raises(ValueError, match="takes 3 observation features but the env gives 4"):
        train_ppo(tiny, agent=ActorCritic(3, 2), progress=False)  # was a numpy broadcast error
    with pytest.raises(ValueError, match="chooses among 3 actions but the env has 2"):
        evaluate(ActorCritic(4, 3), episodes=2)  # was "AssertionError: np.int64(2) invalid"


def test_damaged_weight_files_are_named(tmp_path):
    import shutil

    from ppo_edu.lm.models import TINY_LM_DIR
    from ppo_edu.ppo import load_checkpoint

    garbage = tmp_path / "agent.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=f"{garbage} is not a readable safetensors checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_checkpoint(tmp_path)  # a directory: was "OSError: No such device"
    copy = tmp_path / "lm"
    shutil.copytree(TINY_LM_DIR, copy)
    (copy / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(OSError, match=f"from {copy}: its model.safetensors is damaged"):
        load_lm(copy)


def test_profile_typos_are_blamed_on_where_they_are(monkeypatch):
    from ppo_edu.notebook import PROFILE_ENV, choose_profile, settings_for

    monkeypatch.delenv(PROFILE_ENV, raising=False)
    with pytest.raises(ValueError, match="default='fats' is not a profile"):
        choose_profile("fats")  # blamed the environment variable, which was not set
    with pytest.raises(ValueError, match=r"the settings cell has profile\(s\) \['fats'\]"):
        settings_for({"full": {"seed": 0}, "fats": {"seed": 0}})  # ran fine until CI asked for fast
    monkeypatch.setenv(PROFILE_ENV, "Fats")
    with pytest.raises(ValueError, match="PPO_EDU_PROFILE='Fats' is not a profile"):
        choose_profile()
    monkeypatch.setenv(PROFILE_ENV, "fast")  # as in CI: the default's typo used to pass unseen
    with pytest.raises(ValueError, match="default='fulll' is not a profile"):
        settings_for({"full": {"seed": 0}, "fast": {"seed": 1}}, default="fulll")


def test_counts_seeds_and_flags_of_the_cartpole_helpers_are_checked():
    from ppo_edu.evaluate import evaluate

    for bad in ("8", 2.5, True, 0):
        with pytest.raises(ValueError, match=f"num_envs must be an integer >= 1, got {bad!r}"):
            make_cartpole_envs(bad)
    for bad in ("0", 1.5, -1):  # "0" was a confusing "length must match num_envs" error
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            make_cartpole_envs(2, seed=bad)
    envs = make_cartpole_envs(2, seed=0)
    try:
        with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 2.5"):
            RolloutCollector(envs, ActorCritic.for_env(envs), seed=0).collect(2.5)
    finally:
        envs.close()
    with pytest.raises(ValueError, match="deterministic must be True or False, got 'False'"):
        evaluate(ActorCritic(4, 2), episodes=2, deterministic="False")  # played deterministically
    with pytest.raises(ValueError, match="episodes must be an integer >= 1, got '5'"):
        evaluate(ActorCritic(4, 2), episodes="5")


def test_cartpole_pieces_refuse_values_that_would_read_as_something_else():
    from ppo_edu.advantages import compute_gae
    from ppo_edu.ppo import clipped_value_loss, train_ppo

    with pytest.raises(ValueError, match=r"obs_dim is 4\.5"):  # was a raw torch.empty() error
        ActorCritic(4.5, 2)
    with pytest.raises(ValueError, match="n_actions is True"):
        ActorCritic(4, True)
    assert ActorCritic(np.int64(4), 2).obs_dim == 4
    envs = make_cartpole_envs(2)
    try:
        with pytest.raises(ValueError, match="seed must be an integer >= 0, got 1.5"):
            RolloutCollector(envs, ActorCritic.for_env(envs), seed=1.5)  # was "no len()"
    finally:
        envs.close()
    with pytest.raises(TypeError, match="config must be a PPOConfig .* got dict"):
        train_ppo({"seed": 0})  # was "'dict' object has no attribute 'torch_threads'"
    v = torch.tensor([1.0, 2.0])
    for bad in (-0.2, 0, True):  # clamp(x, 0.2, -0.2) is -0.2 everywhere: a wrong loss
        with pytest.raises(ValueError, match=f"epsilon must be a number > 0 or None .*got {bad!r}"):
            clipped_value_loss(v, v, v, bad)
    z = torch.zeros(3, 2)
    for name in ("gamma", "lam"):  # True read as 1
        with pytest.raises(ValueError, match=f"{name} must be a number, got True"):
            compute_gae(z, z, z.bool(), z.bool(), z, torch.zeros(2), **{name: True})


def test_objectives_and_gae_name_empty_and_numpy_inputs():
    from ppo_edu.advantages import compute_gae
    from ppo_edu.objectives import approx_kl, clipped_surrogate, cpi_surrogate, probability_ratio

    empty = torch.zeros(0)
    for call in (lambda: cpi_surrogate(empty, empty, empty), lambda: approx_kl(empty, empty),
                 lambda: clipped_surrogate(empty, empty, empty)):
        with pytest.raises(ValueError, match="logprobs is empty"):  # was NaN
            call()
    assert probability_ratio(empty, empty).shape == (0,)  # no mean: an empty ratio is fine
    rewards = np.ones((3, 2), np.float32)
    z = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="rewards must be a torch.Tensor, got ndarray"):
        compute_gae(rewards, z, z.bool(), z.bool(), z, torch.zeros(2))


def test_generation_past_the_context_is_refused_before_sampling():
    model, tok = load_lm("tiny")  # 128 positions
    with pytest.raises(ValueError, match=r"with max_new_tokens=400 that is 40\d > the model's context of 128"):
        generate(model, tok, ["The movie was"], max_new_tokens=400)  # was an IndexError if no EOS came
    with pytest.raises(ValueError, match=r"prompts\[1\] is \d+ tokens"):
        generate(model, tok, ["A", "word " * 300], max_new_tokens=5)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1, got 0"):
        generate(model, tok, ["A"], max_new_tokens=0)
    assert len(generate(model, tok, ["A"], max_new_tokens=126)) == 1  # 1 + 1 + 126 = 128 fits


def test_float_actions_and_scores_are_refused_not_truncated(tmp_path):
    from ppo_edu.lm.bradley_terry import bradley_terry_loss
    from ppo_edu.lm.training import sft_train

    agent, obs = ActorCritic(4, 2), torch.randn(3, 4)
    with pytest.raises(TypeError, match="actions must be an integer tensor"):
        agent.evaluate_actions(obs, torch.tensor([0.7, 1.0, 1.0]))  # 0.7 was read as action 0
    logprobs, _, _ = agent.evaluate_actions(obs, torch.tensor([0, 1, 1], dtype=torch.int32))
    torch.testing.assert_close(logprobs, agent.distribution(obs).log_prob(torch.tensor([0, 1, 1])))
    with pytest.raises(TypeError, match="r_chosen must hold floating-point scores"):
        bradley_terry_loss(torch.tensor([1, 2]), torch.tensor([0, 1]))
    tok = small_tokenizer()
    lm, ltok = load_lm(save_random_gpt2(tmp_path / "lm", tok))
    with pytest.raises(ValueError, match=r"pack into 1 blocks of 16 tokens, fewer than batch_size=4"):
        sft_train(lm, ltok, ["a good movie and a bad one"], steps=1, batch_size=4, block=16,
                  progress=False)  # trained on one block, silently


def test_numpy_epsilons_are_numbers_and_string_margins_are_not():
    from ppo_edu.lm.bradley_terry import make_preference_pairs
    from ppo_edu.objectives import clipped_surrogate

    z = torch.zeros(3)  # np.float32(0.2) was refused as "not a number > 0"
    assert clipped_surrogate(z, z, torch.ones(3), epsilon=np.float32(0.2)).objective.item() == 1.0
    with pytest.raises(ValueError, match="epsilon must be a number > 0, got True"):
        clipped_surrogate(z, z, z, epsilon=True)
    for margin in ("1.0", True):  # were read as 1.0
        with pytest.raises(TypeError, match="margin must be a number, got"):
            make_preference_pairs([0.0, 2.0], margin=margin)
    assert make_preference_pairs([0.0, 2.0], margin=np.float64(1.0)).tolist() == [[1, 0]]
