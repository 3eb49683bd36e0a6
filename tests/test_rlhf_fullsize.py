"""The full-size check (``benchmarks/fullsize_gpt2.py``) runs; here with a shrunken trunk
so CI stays fast. The full 124M run is the benchmark itself."""

import pytest


@pytest.fixture(scope="module")
def module(load_benchmark):
    return load_benchmark("fullsize_gpt2.py")


def test_fullsize_script_runs_one_ppo_step_with_gpt2_vocabulary(module):
    result = module.run(batch_size=4, mini_batch_size=2, ppo_epochs=1, prompt_words=4, max_new_tokens=4,
                        config_overrides=dict(n_layer=1, n_embd=32, n_head=2, n_positions=64),
                        verbose=False)
    assert result["parameters"] == result["parameters_formula"]
    assert 1 <= result["response_length"] <= 4 and result["step_s"] > 0
    assert abs(result["kl"]) < 1e-6  # the first batch is sampled by the reference's own weights
    assert 0 < result["estimate_gib"] < 0.1  # the shrunken trunk: the vocabulary's rows dominate


def test_word_tokenizer_has_gpt2_ids_and_a_separate_pad(module):
    tok = module.word_tokenizer()
    assert tok.eos_token_id == 50256 and tok.pad_token_id == 50257 and len(tok) == 50258
    assert tok.decode(tok("w1 w2")["input_ids"]) == "w1 w2"


def test_bad_settings_are_refused_before_the_124m_models_are_built(module, monkeypatch, capsys):
    import transformers

    def built(*args, **kwargs):
        raise AssertionError("a model was built before the settings were checked")

    monkeypatch.setattr(transformers, "GPT2LMHeadModel", built)
    for flags, message in ((["--threads", "0"], "--threads must be >= 1"),  # 0 was ignored
                           (["--batch-size", "0"], "batch_size must be >= 1"),  # failed after 10 s
                           (["--prompt-words", "0"], "prompt_words must be an integer >= 1"),
                           (["--max-new-tokens", "1016"], "= 1025 > the model's context of 1024")):
        with pytest.raises(SystemExit) as exc:
            module.main(flags)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ValueError, match="mini_batch_size"):
        module.run(batch_size=4, mini_batch_size=8, verbose=False)
