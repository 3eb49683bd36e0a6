"""Test configuration: the fast profile and a headless matplotlib for everything pytest starts.

nbval starts notebook kernels from this process, so they inherit these variables.
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("PPO_EDU_PROFILE", "fast")
# The suite checks the lessons' asserts on their own seeds, whatever a seed sweep left in the
# shell (PPO_EDU_SEED, ppo_edu.notebook); nbval's kernels inherit this process's environment.
os.environ.pop("PPO_EDU_SEED", None)
os.environ.setdefault("MPLBACKEND", "Agg")
# nothing in the tests may reach a model or dataset hub, whatever the shell exported (setdefault
# left an exported HF_HUB_OFFLINE=0 in force)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # One thread: the lessons' numbers were measured with one (each thread count rounds
    # differently), and on a busy 2-core machine a second thread spinning at every
    # synchronisation point makes tests up to ~50x slower. (On an idle one, two threads train
    # lessons 5-6's tiny GPT-2s 1.5-1.8x faster.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test leaves open (the plot tests draw dozens)."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")  # only if some test imported it
    if pyplot is not None:
        pyplot.close("all")


@pytest.fixture
def torch_without_fused_adam(monkeypatch):
    """torch.optim.Adam as an older torch behaves on a device without a fused kernel: it lists
    its parameters, then refuses ``fused=True``. ``ppo_edu.optim.adam`` must fall back to
    plain Adam with every parameter (both PPO trainers build their optimizer with it)."""
    real_adam = torch.optim.Adam

    def adam_without_fused(params, *args, fused=None, **kwargs):
        params = list(params)  # as torch does, before an older torch refused the device
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                               "supported devices")
        return real_adam(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", adam_without_fused)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("rlhf_variants.py")``: a script of ``benchmarks/`` as a module. The
    folder is on ``sys.path`` while it loads, as when it runs (the scripts import
    ``benchmarks/rlhf.py``'s setup)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(filename: str):
        sys.path.insert(0, str(folder))
        try:
            spec = importlib.util.spec_from_file_location(f"bench_{Path(filename).stem}", folder / filename)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(folder))
        return module

    return load


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool("train_tiny_lm")``: a script of ``tools/`` as a fresh module, registered in
    ``sys.modules`` under its name (dataclasses look their module up there)."""
    folder = Path(__file__).resolve().parents[1] / "tools"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def tok():
    """The toy byte-level tokenizer of ``ppo_edu.rlhf.toy`` (one per test module)."""
    from ppo_edu.rlhf.toy import toy_tokenizer

    return toy_tokenizer()


@pytest.fixture(scope="module")
def lm(tok):
    """A toy GPT-2 language model on ``tok`` (``ppo_edu.rlhf.toy.toy_lm``), one per test module."""
    from ppo_edu.rlhf.toy import toy_lm

    return toy_lm(tok)


@pytest.fixture
def adamw_spy(monkeypatch):
    """The AdamW optimizers that ``ppo_edu.lm.training`` builds (``.built``, filled as they are
    built), each recording the learning rate of every parameter group at every step (``.lrs``);
    ``.check_decay(optimizer, model, weight_decay)`` asserts that the optimizer decays exactly
    the model's matrices (ndim >= 2) and leaves its biases and LayerNorm gains undecayed."""
    built, real_adamw = [], torch.optim.AdamW

    class RecordingAdamW(real_adamw):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.lrs = []
            built.append(self)

        def step(self, *args, **kwargs):
            self.lrs.append([group["lr"] for group in self.param_groups])
            return super().step(*args, **kwargs)

    def ids(params):
        return sorted(id(p) for p in params)

    def check_decay(optimizer, model, weight_decay):
        groups = {group["weight_decay"]: group["params"] for group in optimizer.param_groups}
        assert set(groups) == {weight_decay, 0.0}
        assert ids(groups[weight_decay]) == ids(p for p in model.parameters() if p.ndim >= 2)
        assert ids(groups[0.0]) == ids(p for p in model.parameters() if p.ndim < 2)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    return types.SimpleNamespace(built=built, check_decay=check_decay)


@pytest.fixture
def seed_reaches_both_sources(monkeypatch):
    """``check(run, seed, other)``: asserts that ``run(other)`` differs from ``run(seed)`` with
    numpy's generators held at seed 0 (only torch's draws, such as dropout, can differ) and
    again with torch's seed held at 0 (only numpy's, such as the batch order, can differ), so a
    trainer that passes its seed to one of the two sources only fails."""
    def check(run, seed, other):
        with monkeypatch.context() as patch:
            default_rng = np.random.default_rng
            patch.setattr(np.random, "default_rng", lambda seed=None: default_rng(0))
            assert run(other) != run(seed), "numpy held fixed: torch's draws do not follow the seed"
        with monkeypatch.context() as patch:
            manual_seed = torch.manual_seed
            patch.setattr(torch, "manual_seed", lambda seed: manual_seed(0))
            assert run(other) != run(seed), "torch held fixed: numpy's draws do not follow the seed"
    return check
