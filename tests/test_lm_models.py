"""Loading language models: the shipped tiny GPT-2, and the hub path through local directories."""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
)

from ppo_edu.lm import TINY_LM_DIR, TINY_RM_DIR, load_lm, load_reward_model, load_snippets
from ppo_edu.lm.models import PAD_TOKEN, resolve
from ppo_edu.lm.testing import save_random_gpt2, small_tokenizer
from ppo_edu.lm.training import generate, perplexity

MB = 1e6


@pytest.fixture(scope="module")
def tiny():
    return load_lm("tiny")


@pytest.fixture(scope="module")
def tokenizer():
    return small_tokenizer()


@pytest.fixture(scope="module")
def gpt2_like_tokenizer():
    return small_tokenizer(with_pad=False)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


# ----------------------------------------------------------------------------- the shipped model
def test_shipped_lm_is_a_gpt2_loaded_by_the_auto_classes():
    model = AutoModelForCausalLM.from_pretrained(TINY_LM_DIR, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(TINY_LM_DIR)
    assert isinstance(model, GPT2LMHeadModel)
    assert (TINY_LM_DIR / "model.safetensors").is_file()
    assert not list(TINY_LM_DIR.glob("*.bin")) and not list(TINY_LM_DIR.glob("*.pt"))
    assert model.config.vocab_size == len(tok)
    assert model.config.n_positions == 128


def test_shipped_tokenizer_has_distinct_pad_and_eos(tiny):
    model, tok = tiny
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == PAD_TOKEN
    assert tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.config.eos_token_id == tok.eos_token_id
    assert tok.padding_side == "right"


def test_shipped_tokenizer_round_trips_any_text(tiny):
    _, tok = tiny
    for text in ["A gripping drama.", "Touché! 100% é ☃ — “quotes”", " leading space", "emoji 🎬"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        assert tok.pad_token_id not in ids and tok.eos_token_id not in ids


def test_shipped_models_fit_the_size_budget():
    lm, rm = dir_size(TINY_LM_DIR), dir_size(TINY_RM_DIR)
    assert lm <= 10 * MB, f"tiny LM + tokenizer is {lm / MB:.2f} MB"
    assert lm + rm <= 20 * MB, f"LM + tokenizer + RM is {(lm + rm) / MB:.2f} MB"


def test_shipped_lm_perplexity_is_what_its_log_reports(tiny):
    model, tok = tiny
    log = json.loads((TINY_LM_DIR / "training_log.json").read_text())
    texts, _ = load_snippets("test")
    assert perplexity(model, tok, texts) == pytest.approx(log["test_ppl"], rel=1e-3)
    assert log["test_ppl"] < 130


def test_shipped_lm_writes_words_from_movie_reviews(tiny):
    """Not word salad: nearly every word it writes is a word the reviews use. Over 32 samples the
    share was 0.88-0.94 on twenty seeds (torch 2.2 and 2.13), against 0.48 for the same
    architecture at random init; 8 samples ranged 0.84-0.96, too close to a 0.9 bound."""
    model, tok = tiny
    vocabulary = {w for t in load_snippets("train")[0] for w in re.findall(r"[a-z]+", t.lower())}
    samples = generate(model, tok, [""] * 24 + ["The film"] * 8, max_new_tokens=30, temperature=0.8, seed=1)
    words = [w for s in samples for w in re.findall(r"[a-z]+", s.lower())]
    known = sum(w in vocabulary for w in words) / len(words)
    assert len(words) > 240
    assert known > 0.85, f"only {known:.0%} of generated words are English review words: {samples[:8]}"


def test_generation_stops_at_eos_and_never_emits_pad(tiny):
    model, tok = tiny
    torch.manual_seed(0)
    x = torch.tensor([[tok.eos_token_id]])
    y = model.generate(x, attention_mask=torch.ones_like(x), do_sample=True, max_new_tokens=100,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = y[0, 1:].tolist()
    assert tok.eos_token_id in new, "the model never learned to end a review"
    assert tok.pad_token_id not in new[: new.index(tok.eos_token_id)]


# ----------------------------------------------------------------------------- the hub path, offline
def test_hub_style_checkpoint_without_pad_gets_a_dedicated_pad_token(tmp_path, gpt2_like_tokenizer):
    # The hub's gpt2 ships no pad token. pad = eos would mask real EOS tokens (a review of TRL PR #5303).
    path = save_random_gpt2(tmp_path / "gpt2-like", gpt2_like_tokenizer)
    raw = AutoTokenizer.from_pretrained(path)
    assert raw.pad_token is None
    model, tok = load_lm(str(path))
    assert tok.pad_token == PAD_TOKEN and tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok) == len(raw) + 1
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_pad_equal_to_eos_is_replaced(tmp_path, tokenizer):
    path = save_random_gpt2(tmp_path / "pad-eos", tokenizer)
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(path)
    _, tok = load_lm(path)
    assert tok.pad_token_id != tok.eos_token_id


def test_save_pretrained_then_load_lm_round_trips_the_weights(tmp_path, tokenizer):
    path = save_random_gpt2(tmp_path / "lm", tokenizer)
    model, tok = load_lm(path)
    reference = GPT2LMHeadModel.from_pretrained(path)
    x = torch.tensor([tok("A gripping drama.")["input_ids"]])
    assert torch.allclose(model(x).logits, reference(x).logits)
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32


def test_load_reward_model_from_a_language_model_checkpoint(tmp_path, gpt2_like_tokenizer):
    # What training a reward model from gpt2 does: same backbone, a new one-output score head.
    path = save_random_gpt2(tmp_path / "lm", gpt2_like_tokenizer)
    model, tok = load_reward_model(path)
    assert isinstance(model, GPT2ForSequenceClassification)
    assert model.config.num_labels == 1 and model.score.out_features == 1
    assert model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id


def test_shipped_reward_model_loads():
    model, tok = load_reward_model("tiny")
    assert isinstance(model, GPT2ForSequenceClassification)
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id


def test_loaded_gpt2s_run_gelu_new_as_one_kernel_and_compute_the_same_function(tmp_path, tokenizer):
    """The loaders swap GPT-2's gelu_new modules for torch's tanh GELU (a speed-up, not a
    change of model): the logits match transformers' own loading, and the config still
    says gelu_new, so a saved model is the same model."""
    from transformers.activations import NewGELUActivation

    from ppo_edu.lm.models import TanhGELU
    from ppo_edu.rlhf import PolicyWithValueHead

    path = save_random_gpt2(tmp_path / "lm", tokenizer, n_layer=3)
    rm_path = save_random_gpt2(tmp_path / "rm", tokenizer, kind="rm")
    x = torch.tensor([tokenizer("A gripping drama, a true delight.")["input_ids"]])
    for model, plain in ((load_lm(path)[0], GPT2LMHeadModel.from_pretrained(path)),
                         (load_reward_model(rm_path)[0], GPT2ForSequenceClassification.from_pretrained(rm_path)),
                         (PolicyWithValueHead.from_pretrained(path).lm, GPT2LMHeadModel.from_pretrained(path))):
        kinds = [type(m) for m in model.modules()]
        assert NewGELUActivation not in kinds
        assert kinds.count(TanhGELU) == model.config.n_layer
        assert model.config.activation_function == "gelu_new"
        assert sum(isinstance(m, NewGELUActivation) for m in plain.modules()) == model.config.n_layer
        torch.testing.assert_close(model(x).logits, plain.eval()(x).logits, rtol=1e-5, atol=1e-5)
    shipped = load_lm("tiny")[0]
    assert [type(m) for m in shipped.modules()].count(TanhGELU) == shipped.config.n_layer


def test_the_fused_gelu_is_gelu_new_to_float_rounding():
    from transformers.activations import NewGELUActivation

    from ppo_edu.lm.models import TanhGELU, use_fused_gelu

    x = torch.linspace(-12, 12, 10_001, dtype=torch.float64)
    torch.testing.assert_close(TanhGELU()(x), NewGELUActivation()(x), rtol=1e-12, atol=1e-12)
    x32 = x.float()
    assert (TanhGELU()(x32) - NewGELUActivation()(x32)).abs().max() < 1e-5
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), NewGELUActivation(),
                                torch.nn.Sequential(NewGELUActivation()))
    assert use_fused_gelu(model) == 2
    assert isinstance(model[1], TanhGELU) and isinstance(model[2][0], TanhGELU)
    assert use_fused_gelu(model) == 0  # nothing left to swap


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", ["./no-such-model", "/tmp/no/such/model", "no/such/model", Path("no-such-dir")])
def test_nonexistent_model_directory_is_a_clear_error(bad):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lm(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reward_model(bad)


def test_directory_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_lm(tmp_path)


def test_missing_shipped_model_names_the_build_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="Rebuild"):
        resolve("tiny", tmp_path)


@pytest.mark.parametrize("shipped", [TINY_LM_DIR, TINY_RM_DIR])
def test_the_rebuild_command_writes_where_the_shipped_model_is_missing(monkeypatch, tmp_path, shipped):
    """Both scripts write to runs/ by default: the suggested command must name the shipped folder."""
    import shlex

    from ppo_edu.lm import models

    monkeypatch.setitem(models._REBUILD, tmp_path, models._REBUILD[shipped])
    with pytest.raises(FileNotFoundError, match="Rebuild it with") as caught:
        resolve("tiny", tmp_path)
    command = shlex.split(re.search(r"`([^`]+)`", str(caught.value)).group(1))
    repo = Path(__file__).resolve().parents[1]
    script = repo / command[1]
    assert command[0] == "python" and script.is_file()
    options = dict(zip(command[2::2], command[3::2]))
    assert (repo / options["--out"]).resolve() == shipped.resolve()
    if shipped == TINY_RM_DIR:  # the reward model starts from the shipped LM
        assert (repo / options["--lm"]).resolve() == TINY_LM_DIR.resolve()
    for flag in options:  # flags the script's parser knows (built from its config fields)
        assert f"{flag[2:].replace('-', '_')}: " in script.read_text()


@pytest.mark.parametrize("loader", [load_lm, load_reward_model])
def test_directory_with_only_pickled_weights_is_refused_with_a_local_message(tmp_path, tokenizer, loader):
    # Safetensors only: a pytorch_model.bin is a pickle, which can run code when loaded.
    path = save_random_gpt2(tmp_path / "pickled", tokenizer)
    state = GPT2LMHeadModel.from_pretrained(path).state_dict()
    (path / "model.safetensors").unlink()
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError) as info:
        loader(path)
    message = str(info.value)
    assert "local directory" in message and "no model.safetensors" in message
    assert "it has pytorch_model.bin" in message and "save_pretrained" in message
    assert "network access" not in message  # not a hub id: no advice about the network


def test_directory_without_any_weights_says_so(tmp_path, tokenizer):
    path = save_random_gpt2(tmp_path / "empty", tokenizer)
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights file at all"):
        load_lm(path)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="network access"):
        load_lm("not-a-cached-model-id-xyz")


def test_a_hub_repo_without_safetensors_names_the_conversion_branch_instead_of_pickles():
    """transformers' own message for this case says "do not set use_safetensors=True"; the
    course's points at the safe way out."""
    from ppo_edu.lm.models import _from_pretrained

    class NoSafetensors:
        @staticmethod
        def from_pretrained(source, **kwargs):
            assert kwargs["use_safetensors"] is True and kwargs["trust_remote_code"] is False
            raise OSError(f"{source} does not appear to have a file named model.safetensors")

    with pytest.raises(OSError, match=r"never loads pickled weights.*revision='refs/pr/N'") as info:
        _from_pretrained(NoSafetensors, "someone/pickled-classifier", "sentiment classifier")
    assert "network access" not in str(info.value)


def test_hub_ids_are_passed_through_unchanged():
    assert resolve("gpt2", TINY_LM_DIR) == "gpt2"
    assert resolve("lvwerra/distilbert-imdb", None) == "lvwerra/distilbert-imdb"
    with pytest.raises(ValueError):
        resolve("", TINY_LM_DIR)


# ----------------------------------------------------------------------------- the build script
def test_train_tiny_lm_script_is_reproducible(tmp_path, load_tool):
    tool = load_tool("train_tiny_lm")
    args = ["--epochs", "1", "--max-steps-per-epoch", "2", "--threads", "1", "--n-embd", "32", "--n-layer", "1",
            "--n-head", "2", "--vocab-size", "2048", "--warmup-steps", "1"]
    for run in ("a", "b"):
        assert tool.main(args + ["--out", str(tmp_path / run)]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    _, tok = load_lm(a)
    log = json.loads((a / "training_log.json").read_text())
    assert len(tok) == 2048 and log["test_ppl"] > 1 and len(log["samples"]) == 8
    assert {"torch", "transformers", "tokenizers", "numpy"} <= set(log)  # what the same model needs


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--n-embd", "30", "--n-head", "4"], "must be divisible by --n-head"),
    (["--dropout", "1.0"], "--dropout must be in [0, 1)"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_train_tiny_lm_script_rejects_bad_options_by_name(tmp_path, capsys, args, message, load_tool):
    tool = load_tool("train_tiny_lm")
    with pytest.raises(SystemExit) as exit_info:
        tool.main(args + ["--out", str(tmp_path / "lm")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lm").exists()


def test_train_tiny_lm_script_checks_its_output_folder_before_training(tmp_path, capsys, load_tool):
    tool = load_tool("train_tiny_lm")
    afile, busy = tmp_path / "afile", tmp_path / "busy"
    afile.write_text("x")
    busy.mkdir()
    (busy / "README.md").write_text("somebody's notes")  # --out . would have overwritten the README
    for out, message in ((afile, "is a file"), (busy, "is not a model directory")):
        with pytest.raises(SystemExit) as exit_info:  # was a FileExistsError after the whole run
            tool.main(["--out", str(out)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert (busy / "README.md").read_text() == "somebody's notes"


def test_train_tiny_lm_script_never_replaces_a_reward_model(tmp_path, capsys, load_tool):
    import shutil

    from ppo_edu.lm import TINY_RM_DIR

    tool = load_tool("train_tiny_lm")
    # A copy, so that if this check is ever lost the test trains into tmp_path, not the shipped model
    rm = tmp_path / "rm"
    rm.mkdir()
    shutil.copy(TINY_RM_DIR / "config.json", rm / "config.json")
    small = ["--epochs", "1", "--n-embd", "32", "--n-layer", "1", "--n-head", "2", "--vocab-size", "1024",
             "--max-steps-per-epoch", "1"]
    with pytest.raises(SystemExit) as exit_info:  # passed every check, and 24 minutes later replaced it
        tool.main(small + ["--out", str(rm)])
    assert exit_info.value.code == 2
    assert "holds a GPT2ForSequenceClassification, and this script writes a GPT2LMHeadModel" in capsys.readouterr().err
    assert sorted(path.name for path in rm.iterdir()) == ["config.json"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("[1, 2]")
    with pytest.raises(SystemExit):
        tool.main(small + ["--out", str(broken)])
    assert "its config.json is not a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "5000"], "an epoch would have no step"),  # trained 0 steps and shipped it
    (["--lr", "1000", "--warmup-steps", "0", "--max-steps-per-epoch", "4"], "training diverged"),
])
def test_train_tiny_lm_script_stops_on_an_empty_or_diverged_run(tmp_path, args, message, load_tool):
    tool = load_tool("train_tiny_lm")
    small = ["--epochs", "1", "--n-embd", "32", "--n-layer", "1", "--n-head", "2", "--vocab-size", "1024"]
    with pytest.raises(SystemExit, match=message):
        tool.main(small + args + ["--out", str(tmp_path / "lm")])
    assert not (tmp_path / "lm").exists()


def test_training_scripts_help_explains_their_options(capsys, load_tool):
    for tool, option, words in ((load_tool("train_tiny_lm"), "--max-steps-per-epoch", "0 = whole epochs"),
                                (load_tool("train_reward_model"), "--train-snippets", "0 = the whole train split")):
        with pytest.raises(SystemExit):
            tool.main(["--help"])
        usage = " ".join(capsys.readouterr().out.split())
        assert f"{option} {option[2:].upper().replace('-', '_')} {words}" in usage  # the field's docstring
        assert "(default: 0)" in usage and "(default: 1)" in usage  # --threads


def test_train_tiny_lm_script_writes_to_scratch_by_default(load_tool):
    tool = load_tool("train_tiny_lm")
    out = Path(tool.LMConfig().out)
    assert out != TINY_LM_DIR and out.parent == Path(__file__).resolve().parents[1] / "runs"


# ----------------------------------------------------------------------------- sft_train's arguments
@pytest.mark.parametrize("kwargs, message", [
    ({"eval_texts": ["A gripping drama."]}, "eval_every=0"),
    ({"eval_every": 2}, "no eval_texts"),
    ({"eval_texts": ["A gripping drama."], "eval_every": -1}, "eval_every must be an integer >= 0"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    # clip_grad_norm_ with a negative norm flips every gradient: silent gradient ascent
    ({"grad_clip": -1.0}, "grad_clip must be a finite number > 0"),
    ({"grad_clip": 0.0}, "grad_clip must be a finite number > 0"),
    ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
    ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
    ({"warmup_steps": 1.5}, "warmup_steps must be an integer >= 0"),
    ({"block": 100}, r"block must be an integer in \[2, 64\]"),  # the random model's context is 64
    ({"block": 0}, r"block must be an integer in \[2, 64\]"),  # used to mean "the default"
    ({"block": -4}, r"block must be an integer in \[2, 64\]"),
])
def test_sft_train_rejects_evaluation_that_would_never_run_and_bad_budgets(tmp_path, tokenizer, kwargs, message):
    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import sft_train

    model, tok = load_lm(save_random_gpt2(tmp_path / "lm", tokenizer))
    settings = {"steps": 2, "batch_size": 2, "block": 16, "progress": False} | kwargs
    with pytest.raises(ValueError, match=message):
        sft_train(model, tok, SAMPLE_TEXTS, **settings)


def test_sft_train_fits_its_texts(tmp_path, tokenizer):
    """A random model fine-tuned on six sentences: the training loss falls, and so does the
    perplexity that sft_train logs on eval_texts (two of the sentences), against the model's
    perplexity before training. An sft_train that never steps leaves both where they started."""
    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import sft_train

    model, tok = load_lm(save_random_gpt2(tmp_path / "lm", tokenizer))
    before = perplexity(model, tok, SAMPLE_TEXTS[-2:])
    history = sft_train(model, tok, SAMPLE_TEXTS[:-2] * 4, steps=40, batch_size=4, block=16, lr=3e-3,
                        warmup_steps=2, eval_texts=SAMPLE_TEXTS[-2:], eval_every=20, progress=False)
    first, last = history[0]["loss"], sum(h["loss"] for h in history[-5:]) / 5
    assert last < first - 1.0, (first, last)
    ppl = [h["eval_ppl"] for h in history if "eval_ppl" in h]
    assert len(ppl) == 2 and ppl[-1] < 0.5 * before, (before, ppl)


def test_sentiment_reward_fn_revision_is_for_hub_ids_only(tmp_path, tokenizer):
    from ppo_edu.lm import sentiment_reward_fn

    path = save_random_gpt2(tmp_path / "clf", tokenizer, kind="rm")
    with pytest.raises(ValueError, match="revision='refs/pr/5' applies to hub ids"):
        sentiment_reward_fn(str(path), revision="refs/pr/5")


def test_perplexity_and_sft_take_a_model_without_n_positions_and_a_tokenizer_without_pad():
    """load_lm takes any causal LM: a Llama-style config names its context
    max_position_embeddings (n_positions was read directly: AttributeError), and a raw
    tokenizer like the hub gpt2's has no pad token (load_tokenizer adds none; text_nll filled
    its padding with None: TypeError)."""
    import math

    from transformers import LlamaConfig, LlamaForCausalLM

    from ppo_edu.lm.training import perplexity, sft_train, text_nll

    tok = small_tokenizer(with_pad=False)
    assert tok.pad_token_id is None
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    texts = ["the movie was fine", "a film", "the acting was good and the plot was not"]
    ppl = perplexity(model, tok, texts, batch_size=2)
    assert math.isfinite(ppl) and ppl > 1
    batched = text_nll(model, tok, texts, batch_size=2)  # padded batches
    alone = [text_nll(model, tok, [t]) for t in texts]  # no padding at all
    assert batched[1] == sum(n for _, n in alone)
    assert batched[0] == pytest.approx(sum(x for x, _ in alone), rel=1e-5)  # the padding is out of the loss
    history = sft_train(model, tok, texts * 4, steps=3, batch_size=2, block=16, progress=False)
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)


# ----------------------------------------------------------------------------- sft_train's data, schedule and seed
def test_packed_blocks_open_with_eos_and_close_every_text_with_one():
    """The stream is ``<eos> t1 <eos> t2 <eos> ...``: the first text is read after an EOS, as
    every later one is and as text_nll and generate present a text, so the model also learns
    how a text *starts*. The texts come in the order the seeded generator shuffles them."""
    import numpy as np

    from ppo_edu.lm.training import packed_blocks

    assert packed_blocks([[5, 6]], 0, 4, np.random.default_rng(0)).tolist() == [[0, 5, 6, 0]]
    texts = [[5, 6], [7, 8, 9]]
    order = np.random.default_rng(3).permutation(2).tolist()
    stream = [0] + texts[order[0]] + [0] + texts[order[1]] + [0]
    assert packed_blocks(texts, 0, 4, np.random.default_rng(3)).tolist() == [stream[:4], stream[4:8]]
    assert packed_blocks(texts, 0, 3, np.random.default_rng(3)).tolist() == [stream[:3], stream[3:6]]  # rest dropped


def _random_lm(path, tokenizer):
    model, tok = load_lm(save_random_gpt2(path, tokenizer))
    assert model.config.resid_pdrop > 0  # dropout: training draws from torch's generator
    return model, tok


def test_sft_train_steps_through_consecutive_batches_of_one_packing(tmp_path, tokenizer):
    """Step i trains on blocks [i * batch_size, (i + 1) * batch_size) of the packed, seeded
    stream, so an epoch sees every block once; a cursor that did not move would train on
    the first batch over and over."""
    import numpy as np

    from ppo_edu.lm.reward import text_ids
    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import packed_blocks, sft_train

    model, tok = _random_lm(tmp_path / "lm", tokenizer)
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].clone()),
                                           with_kwargs=True)
    try:
        sft_train(model, tok, SAMPLE_TEXTS, steps=3, batch_size=2, block=16, seed=4, progress=False)
    finally:
        hook.remove()
    blocks = packed_blocks([list(s) for s in text_ids(tok, SAMPLE_TEXTS)], tok.eos_token_id, 16,
                           np.random.default_rng(4))
    assert len(blocks) >= 6 and len(seen) == 3
    for i, x in enumerate(seen):
        assert torch.equal(x, blocks[2 * i:2 * i + 2]), i
    assert not torch.equal(seen[0], seen[1])


def test_sft_train_warms_the_learning_rate_up_to_lr(tmp_path, tokenizer):
    """The history's lr over 3 warmup steps is lr/3, 2 lr/3, lr (the first step trains, at
    lr/3, not at 0), then the cosine decay from lr towards 10% of it."""
    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import sft_train

    model, tok = _random_lm(tmp_path / "lm", tokenizer)
    history = sft_train(model, tok, SAMPLE_TEXTS, steps=5, batch_size=2, block=16, lr=3e-3, warmup_steps=3,
                        progress=False)
    assert [h["lr"] for h in history] == pytest.approx([1e-3, 2e-3, 3e-3, 3e-3, 3e-3 * 0.55])


def test_sft_train_evaluates_every_eval_every_steps_and_at_the_end(tmp_path, tokenizer):
    """With steps=5 and eval_every=2 the held-out perplexity is measured after steps 2 and 4
    and after the last one, 5: never before any training (step 0) and always at the end."""
    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import sft_train

    model, tok = _random_lm(tmp_path / "lm", tokenizer)
    history = sft_train(model, tok, SAMPLE_TEXTS, steps=5, batch_size=2, block=16, eval_texts=SAMPLE_TEXTS[:2],
                        eval_every=2, progress=False)
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["step"] for h in history if "eval_ppl" in h] == [2, 4, 5]


def test_sft_train_is_reproducible_from_its_seed(tmp_path, tokenizer, seed_reaches_both_sources):
    """The same seed from the same weights gives the same losses and weights, whatever the
    global random state: the packing's shuffle (numpy) and the dropout (torch) both come
    from ``seed``."""
    import copy

    import numpy as np

    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import sft_train

    model, tok = _random_lm(tmp_path / "lm", tokenizer)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        copy_ = copy.deepcopy(model)
        history = sft_train(copy_, tok, SAMPLE_TEXTS, steps=4, batch_size=2, block=16, seed=7, progress=False)
        runs.append((history, [p.detach().clone() for p in copy_.parameters()]))
    (h1, w1), (h2, w2) = runs
    assert h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(w1, w2))

    # and the seed reaches both: another seed changes the run, and still does with the packing's
    # shuffle held fixed, when only the dropout masks can differ, or with torch's seed held fixed
    assert model.config.resid_pdrop > 0

    def run(seed):
        return sft_train(copy.deepcopy(model), tok, SAMPLE_TEXTS, steps=4, batch_size=2, block=16, seed=seed,
                         progress=False)

    assert run(8) != h1
    seed_reaches_both_sources(run, 7, 8)


def test_sft_train_teaches_next_token_prediction(tmp_path, tokenizer):
    """SFT on one sentence, repeated: its perplexity falls from ~310 to about 1.4. The loss is
    next-token cross-entropy on the block itself (transformers shifts the labels); a loss
    on shifted inputs would teach the model to copy its input instead (perplexity ~16,000),
    while its own training loss still fell."""
    from ppo_edu.lm.training import sft_train

    model, tok = _random_lm(tmp_path / "lm", tokenizer)
    sentence = "A gripping drama with a standout performance."
    before = perplexity(model, tok, [sentence])
    sft_train(model, tok, [sentence] * 16, steps=60, batch_size=4, block=16, lr=1e-2, warmup_steps=2,
              progress=False)
    after = perplexity(model, tok, [sentence])
    assert before > 100 and after < 10, (before, after)


def test_warmup_cosine_scale_is_the_schedule_its_docstring_states():
    """Warmup (s + 1) / w, then 0.1 + 0.45 (1 + cos(pi (s - w) / (n - w))): 0.325 on the last of
    3 steps without warmup (10% is only the limit), and a run inside its warmup never decays."""
    from ppo_edu.lm.training import warmup_cosine_scale

    assert [warmup_cosine_scale(s, 3, 0) for s in range(3)] == pytest.approx([1.0, 0.775, 0.325])
    assert [warmup_cosine_scale(s, 10, 20) for s in (0, 9)] == pytest.approx([0.05, 0.5])
    assert warmup_cosine_scale(999, 1000, 0) == pytest.approx(0.1, abs=3e-6)


def test_sft_decays_only_the_matrices_and_every_group_follows_the_schedule(tmp_path, tokenizer, adamw_spy):
    from ppo_edu.lm.testing import SAMPLE_TEXTS
    from ppo_edu.lm.training import sft_train

    model, tok = _random_lm(tmp_path / "lm", tokenizer)
    history = sft_train(model, tok, SAMPLE_TEXTS, steps=4, batch_size=2, block=16, lr=3e-3, warmup_steps=3,
                        weight_decay=0.05, progress=False)
    (optimizer,) = adamw_spy.built
    adamw_spy.check_decay(optimizer, model, 0.05)
    # each step's rate, in every group (not the first alone), is the one the history reports
    assert optimizer.lrs == [[h["lr"]] * 2 for h in history]
    assert [h["lr"] for h in history[:3]] == pytest.approx([1e-3, 2e-3, 3e-3])  # the warmup
