"""Checkers for lesson 3 (advantage estimation and GAE).

Every exercise uses the package's argument order for ``(T, N)`` rollouts::

    rewards, values, terminated, truncated, final_values, next_values

``final_values[t, i]`` is V(final observation) where step t ended env i's episode and
``next_values`` (shape (N,)) is V(s_T) after the rollout's last step.
"""

from __future__ import annotations

import torch

from ppo_edu.advantages import bootstrap_values, compute_gae, td_residuals
from ppo_edu.exercises._harness import (
    checker,
    close,
    describe_type,
    dtype_hint,
    first_mismatch,
    last_mismatch,
    recursion_factor_hint,
    shape_hint,
    standardised,
)


def _rollout(T: int, N: int, seed: int, p_end: float = 0.2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ends = torch.rand(T, N, generator=g) < p_end
    kind = torch.rand(T, N, generator=g)
    return dict(
        rewards=torch.randn(T, N, generator=g),
        values=torch.randn(T, N, generator=g),
        terminated=ends & (kind < 0.5),
        truncated=ends & (kind >= 0.45),  # a few steps are both, as gymnasium allows
        final_values=torch.randn(T, N, generator=g) * ends,
        next_values=torch.randn(N, generator=g),
    )


def _handmade() -> dict[str, torch.Tensor]:
    """One env, every kind of step: inside, terminated, truncated, and the last step."""
    return dict(
        rewards=torch.tensor([[1.0], [1.0], [1.0], [1.0], [1.0], [1.0]]),
        values=torch.tensor([[2.0], [3.0], [4.0], [5.0], [6.0], [7.0]]),
        terminated=torch.tensor([[False], [True], [False], [False], [False], [False]]),
        truncated=torch.tensor([[False], [False], [False], [True], [False], [False]]),
        final_values=torch.tensor([[0.0], [8.0], [0.0], [9.0], [0.0], [0.0]]),
        next_values=torch.tensor([10.0]),
    )


def _handmade_last() -> dict[str, torch.Tensor]:
    """Two envs whose episodes end on the rollout's last step: env 0 truncated there, env 1
    terminated and truncated at once. ``next_values`` is then V of the NEXT episode's first
    state (the envs reset themselves), so neither may bootstrap from it."""
    return dict(
        rewards=torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),
        values=torch.tensor([[2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]),
        terminated=torch.tensor([[False, False], [False, False], [False, True]]),
        truncated=torch.tensor([[False, False], [False, False], [True, True]]),
        final_values=torch.tensor([[0.0, 0.0], [0.0, 0.0], [9.0, 11.0]]),
        next_values=torch.tensor([10.0, 12.0]),
    )


def _handmade_zero() -> dict[str, torch.Tensor]:
    """One env truncated at step 1 whose final state's value is exactly 0 (a critic whose last
    layer starts at zero says so): an answer that finds episode ends by ``final_values != 0``
    instead of by the flags bootstraps from the next episode there."""
    return dict(
        rewards=torch.tensor([[1.0], [1.0], [1.0], [1.0]]),
        values=torch.tensor([[2.0], [3.0], [4.0], [5.0]]),
        terminated=torch.tensor([[False], [False], [False], [False]]),
        truncated=torch.tensor([[False], [True], [False], [False]]),
        final_values=torch.tensor([[0.0], [0.0], [0.0], [0.0]]),
        next_values=torch.tensor([6.0]),
    )


def _cases() -> list[dict[str, torch.Tensor]]:
    return [_handmade(), _handmade_last(), _handmade_zero(), _rollout(12, 3, seed=0),
            _rollout(30, 5, seed=1, p_end=0.3), _rollout(7, 1, seed=2, p_end=0.0)]


ORDER = ("rewards", "values", "terminated", "truncated", "final_values", "next_values")


def _args(case) -> list[torch.Tensor]:
    """The case's tensors in the exercises' argument order (copies: the learner may mutate)."""
    return [case[name].clone() for name in ORDER]


def _kind_of_step(case, t: int, i: int) -> str:
    if case["terminated"][t, i]:
        return "terminated"
    if case["truncated"][t, i]:
        return "truncated"
    if t == case["rewards"].shape[0] - 1:
        return "last"
    return "inside"



def _as_termination_hint(idx, said: str) -> str:
    """Exercises 3.1 and 3.2: a truncated step bootstrapped from 0, as if it had terminated."""
    return (f"at truncated step {idx} {said}: that treats the time limit as a termination. "
            f"The state still has a future: use final_values[t]")


def _next_episode_hint(idx, said: str) -> str:
    """Exercises 3.1 and 3.2: a truncated step bootstrapped from the next row of the rollout."""
    return (f"at truncated step {idx} {said}, the value of the NEXT episode's first state "
            f"(autoreset already happened); use final_values[t]")


# --------------------------------------------------------------------------- exercise 1


@checker("bootstrap values V(s_{t+1})", bootstrap_values)
def check_bootstrap_values(fn):
    """``fn(values, terminated, truncated, final_values, next_values)`` -> (T, N)."""
    for case in _cases():
        args = (case["values"], case["terminated"], case["truncated"], case["final_values"],
                case["next_values"])
        got = fn(*(a.clone() for a in args))
        expected = bootstrap_values(*args)
        if (hint := shape_hint(got, expected, "(T, N)")) is not None:
            return hint
        if (hint := dtype_hint(got, "values")) is not None:
            return hint
        idx = first_mismatch(got, expected)
        if idx is None:
            continue
        t, i = idx
        kind, value = _kind_of_step(case, t, i), float(got[idx])
        if kind == "truncated":
            if abs(value) < 1e-6:
                return _as_termination_hint(idx, "you returned 0")
            last = t + 1 == case["values"].shape[0]
            following = float(case["next_values"][i] if last else case["values"][t + 1, i])
            if float(case["final_values"][idx]) == 0.0:
                # the earlier cases' truncations all have a final value other than 0, and those
                # passed: this answer finds truncated steps by final_values != 0
                which = (", the value of the NEXT episode's first state"
                         if abs(value - following) < 1e-6 else "")
                return (f"at truncated step {idx} final_values[t] is exactly 0 (V of the final "
                        f"observation can be 0: a critic whose last layer starts at zero says so), "
                        f"and you returned {value:.4f}{which}. Select truncated steps by the "
                        f"`truncated` flag, not by final_values != 0: use final_values[t] "
                        f"wherever truncated[t] is True")
            if not last and abs(value - following) < 1e-6:
                return _next_episode_hint(idx, "you used values[t + 1]")
            if last and abs(value - following) < 1e-6:
                return (f"at truncated step {idx}, the rollout's last, you used next_values[i]: "
                        f"after the autoreset that is the NEXT episode's first state; use "
                        f"final_values[t]")
            return f"at truncated step {idx} expected final_values[t] = {float(expected[idx]):.4f}, got {value:.4f}"
        if kind == "terminated":
            both = (" This step is also truncated: termination wins, so apply it last (or mask "
                    "truncation with 'and not terminated')." if case["truncated"][idx] else "")
            return (f"at terminated step {idx} expected 0 (no future after the episode really "
                    f"ends, whatever final_values says), got {value:.4f}.{both}")
        if kind == "last":
            return (f"at the last step {idx} expected next_values[i] = V(s_T) = "
                    f"{float(expected[idx]):.4f}, got {value:.4f}")
        return (f"inside an episode, step {idx} should bootstrap from values[t + 1] = "
                f"{float(expected[idx]):.4f}, got {value:.4f}")
    return None


# --------------------------------------------------------------------------- exercise 2


@checker("TD residuals delta_t", td_residuals)
def check_td_residuals(fn):
    """``fn(rewards, values, terminated, truncated, final_values, next_values, gamma)``."""
    for gamma in (0.99, 0.5):
        for case in _cases():
            got = fn(*_args(case), gamma=gamma)
            expected = td_residuals(**case, gamma=gamma)
            if (hint := shape_hint(got, expected, "(T, N)")) is not None:
                return hint
            if (hint := dtype_hint(got, "rewards")) is not None:
                return hint
            idx = first_mismatch(got, expected)
            if idx is None:
                continue
            nxt = bootstrap_values(case["values"], case["terminated"], case["truncated"],
                                   case["final_values"], case["next_values"])
            if close(got, -expected):
                return "your residuals have the wrong sign: delta_t = r_t + gamma V(s_{t+1}) - V(s_t)"
            rewards, values = case["rewards"], case["values"]
            if close(got, rewards + nxt - values):
                return f"gamma is missing: delta_t = r_t + gamma * V(s_{{t+1}}) - V(s_t) (gamma={gamma})"
            if close(got, rewards + gamma * nxt):
                return "you forgot to subtract V(s_t) = values[t]: delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)"
            if close(got, gamma * (rewards + nxt) - values):
                return "gamma discounts V(s_{t+1}) only, not the reward r_t: delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)"
            for other in (0.99, 0.95, 0.9, 0.5, 1.0):
                if other != gamma and close(got, td_residuals(**case, gamma=other)):
                    return (f"called with gamma={gamma} you returned the residuals for gamma={other}: "
                            "is gamma hard-coded? Use the gamma argument")
            no_truncation = torch.zeros_like(case["truncated"])
            as_termination = dict(case, terminated=case["terminated"] | case["truncated"],
                                  truncated=no_truncation)
            if close(got, td_residuals(**as_termination, gamma=gamma)):
                return _as_termination_hint(
                    idx, f"(gamma={gamma}) your V(s_{{t+1}}) is 0, as if terminated | truncated "
                         f"were the flag that ends the future")
            if close(got, td_residuals(**dict(case, truncated=no_truncation), gamma=gamma)):
                following = ("next_values[i]" if idx[0] + 1 == got.shape[0] else "values[t + 1]")
                return _next_episode_hint(idx, f"(gamma={gamma}) your V(s_{{t+1}}) is {following}")
            kind = _kind_of_step(case, *idx)
            wrong = ~torch.isclose(got.float(), expected, atol=1e-5, rtol=1e-4)
            inside = torch.tensor([[_kind_of_step(case, t, i) == "inside" for i in range(wrong.shape[1])]
                                   for t in range(wrong.shape[0])])
            where = (f"at {kind} step {idx} (gamma={gamma}) expected {float(expected[idx]):.4f}, "
                     f"got {float(got[idx]):.4f}")
            if not (wrong & inside).any():  # only the steps that end something are wrong
                return f"{where}; check which V(s_{{t+1}}) that kind of step uses"
            return (f"{where}; delta_t = r_t + gamma * V(s_{{t+1}}) - V(s_t), with V(s_t) = values[t] "
                    "and V(s_{t+1}) = values[t + 1] inside an episode")
    return None


# --------------------------------------------------------------------------- exercise 3


def _leaky_gae(case, gamma, lam):
    """GAE that forgets the done mask in the recursion (a common bug)."""
    deltas = td_residuals(**case, gamma=gamma)
    adv = torch.zeros_like(deltas)
    running = torch.zeros_like(case["next_values"])
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + gamma * lam * running
        adv[t] = running
    return adv


def _gae_stopping_at(case, gamma, lam, stop: torch.Tensor, start: torch.Tensor | None = None,
                     factor: float | None = None):
    """GAE whose recursion stops where ``stop`` is True and starts from ``start`` (0 if None),
    multiplying A_(t+1) by ``factor`` (gamma * lam if None)."""
    deltas = td_residuals(**case, gamma=gamma)
    keep = 1.0 - stop.to(deltas.dtype)
    factor = gamma * lam if factor is None else factor
    adv = torch.zeros_like(deltas)
    running = torch.zeros_like(case["next_values"]) if start is None else start.clone()
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + factor * keep[t] * running
        adv[t] = running
    return adv


def _terminated_only_gae(case, gamma, lam):
    """GAE whose recursion stops at terminations only (advantages leak across truncations)."""
    return _gae_stopping_at(case, gamma, lam, case["terminated"])


def _truncated_only_gae(case, gamma, lam):
    """GAE whose recursion stops at truncations only (advantages leak across terminations)."""
    return _gae_stopping_at(case, gamma, lam, case["truncated"])


def _gae_started_from_next_values(case, gamma, lam):
    """GAE whose backward recursion starts from V(s_T) instead of 0 (counts it twice)."""
    done = case["terminated"] | case["truncated"]
    return _gae_stopping_at(case, gamma, lam, done, start=case["next_values"])


@checker("GAE(gamma, lambda) with done masks", compute_gae)
def check_gae(fn):
    """``fn(rewards, values, terminated, truncated, final_values, next_values, gamma, lam)``
    -> ``(advantages, returns)``."""
    for gamma, lam in ((0.99, 0.95), (0.9, 0.0), (0.9, 1.0), (0.8, 0.5)):
        for case in _cases():
            out = fn(*_args(case), gamma=gamma, lam=lam)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                return f"return a pair (advantages, returns), got {describe_type(out)}"
            advantages, returns = out
            expected, expected_returns = compute_gae(**case, gamma=gamma, lam=lam)
            if (hint := shape_hint(advantages, expected, "(T, N)")) is not None:
                return "advantages: " + hint
            if (hint := shape_hint(returns, expected_returns, "(T, N)")) is not None:
                return "returns: " + hint
            for name, got in (("advantages", advantages), ("returns", returns)):
                if (hint := dtype_hint(got, "rewards")) is not None:
                    return f"{name}: {hint}"
            if close(advantages, expected_returns) and close(returns, expected):
                return "you returned (returns, advantages): return the pair in the order (advantages, returns)"
            idx = first_mismatch(advantages, expected)
            if idx is not None:
                return _gae_hint(case, advantages, expected, gamma, lam, idx)
            if not close(returns, expected_returns):
                return ("advantages are right but returns are not: the critic's target is "
                        "returns = advantages + values")
    return None


def _last_wrong_step(case, got, expected, idx) -> tuple[tuple[int, int], str]:
    """The last wrong step of the first wrong step's environment, and what kind of step it is:
    a backward recursion spoils every step before the one where the error was made."""
    (t,) = last_mismatch(got[:, idx[1]], expected[:, idx[1]])
    last = (t, idx[1])
    kind = _kind_of_step(case, *last)
    if case["terminated"][last] and case["truncated"][last]:
        kind = "terminated-and-truncated"
    return last, kind


def _shifted_done_hint(case, got, expected, gamma, lam, done, idx) -> str | None:
    """The hint for a done mask read one step off, 1 - d_(t+1) or 1 - d_(t-1) in place of
    1 - d_t (CleanRL's ``nextnonterminal = 1 - dones[t + 1]`` copied: there dones[t] says
    whether the step BEFORE t ended an episode), else None."""
    later = torch.cat([done[1:], torch.zeros_like(done[:1])])  # d_(t+1); nothing after T-1
    earlier = torch.cat([torch.zeros_like(done[:1]), done[:-1]])  # d_(t-1)
    for shifted, offset in ((later, "t + 1"), (earlier, "t - 1")):
        if not close(got, _gae_stopping_at(case, gamma, lam, shifted)):
            continue
        last, kind = _last_wrong_step(case, got, expected, idx)
        cleanrl = (" (CleanRL writes nextnonterminal = 1 - dones[t + 1] because its dones[t] says "
                   "whether the step BEFORE t ended an episode: its dones[t + 1] is our d_t)"
                   if offset == "t + 1" else "")
        return (f"your done mask is one step off: you multiply A_(t+1) by 1 - d_({offset}) "
                f"(not_done[{offset}], say) where the recursion needs step t's own flag, A_t = "
                f"delta_t + gamma * lam * (1 - d_t) * A_(t+1) with d_t = terminated[t] or "
                f"truncated[t]. Here the flags at row t say that step t itself ended its episode, "
                f"so A_(t+1) belongs to the next one{cleanrl}. The last wrong step of env "
                f"{idx[1]} is {kind} step {last}")
    return None


def _gae_hint(case, got, expected, gamma, lam, idx) -> str:
    where = f"(gamma={gamma}, lam={lam})"
    if close(got, _leaky_gae(case, gamma, lam)):
        done = case["terminated"] | case["truncated"]
        leak = next((tuple(int(j) for j in ix) for ix in done.nonzero()), idx)
        return (f"your advantages leak across episode boundaries at index {leak}: when step t "
                f"ended an episode, A_t = delta_t (do not add gamma * lam * A_(t+1)) {where}")
    if close(got, _terminated_only_gae(case, gamma, lam)):
        cut = case["truncated"] & ~case["terminated"]
        cut[-1] = False  # at the rollout's last step nothing follows anyway
        first = tuple(int(j) for j in cut.nonzero()[0])
        return (f"your advantages leak across the truncation at index {first}: the recursion "
                f"must stop at truncated steps too, A_t = delta_t + gamma * lam * "
                f"(1 - done_t) * A_(t+1) with done_t = terminated_t or truncated_t. The next row "
                f"belongs to a new episode; the truncated episode's future is already in delta_t "
                f"through final_values {where}")
    if close(got, _truncated_only_gae(case, gamma, lam)):
        cut = case["terminated"].clone()
        cut[-1] = False
        first = tuple(int(j) for j in cut.nonzero()[0])
        return (f"your advantages leak across the termination at index {first}: the recursion "
                f"stops at truncated steps but must stop at terminated steps too, A_t = delta_t + "
                f"gamma * lam * (1 - done_t) * A_(t+1) with done_t = terminated_t or truncated_t {where}")
    if close(got, _gae_started_from_next_values(case, gamma, lam)):
        return ("your backward recursion starts from next_values: start it from A = 0. The last "
                "step's delta_t already bootstraps from next_values = V(s_T), so starting from it "
                f"counts V(s_T) twice {where}")
    if any(close(got, normalised, atol=1e-4) for normalised in standardised(expected)):
        return ("you normalised the advantages inside GAE: return them as they are (the trainer "
                "normalises per minibatch, and the returns need the raw advantages)")
    as_termination = dict(case, terminated=case["terminated"] | case["truncated"],
                          truncated=torch.zeros_like(case["truncated"]))
    if close(got, compute_gae(**as_termination, gamma=gamma, lam=lam)[0]):
        return ("you treat truncation as termination: a truncated step must bootstrap from "
                "final_values (V of the final observation), not from 0")
    done = case["terminated"] | case["truncated"]
    if (hint := _shifted_done_hint(case, got, expected, gamma, lam, done, idx)) is not None:
        return f"{hint} {where}"
    hint = recursion_factor_hint(
        lambda factor: close(got, _gae_stopping_at(case, gamma, lam, done, factor=factor)), gamma, lam)
    if hint is not None:
        return f"{hint} {where}"
    # the cases run (0.99, 0.95) first: failing a later pair means those all passed
    hard_coded = ("" if (gamma, lam) == (0.99, 0.95) else
                  "; it was right for gamma=0.99, lam=0.95: is gamma or lam hard-coded (in the "
                  "recursion, or in the call to td_residuals_fn)?")
    if lam == 0.0:
        return (f"with lam = 0 GAE must equal the TD residuals delta_t; first difference at {idx} "
                f"{where}{hard_coded}")
    # An error made at step t flows back into every earlier step of its environment, so the
    # first wrong index is usually an innocent step before the bug: point at the last one.
    last, kind = _last_wrong_step(case, got, expected, idx)
    t = last[0]
    after = ("the steps after it are right, so the error is in this step's own delta_t, in "
             "the gamma * lam * A_(t+1) term, or in whether done_t stops the recursion here"
             if t < got.shape[0] - 1 else "nothing follows it, so A_t must be its own delta_t")
    if lam == 1.0:
        return (f"with lam = 1 GAE must equal the discounted return minus V(s_t); the last wrong "
                f"step of env {idx[1]} is {kind} step {last}: {after} {where}{hard_coded}")
    return (f"the last wrong step of env {idx[1]} is {kind} step {last}: expected "
            f"{float(expected[last]):.4f}, got {float(got[last]):.4f}; {after} "
            f"(the recursion runs backwards, from the last step: A_t = delta_t + gamma * lam * "
            f"(1 - done_t) * A_(t+1), done_t = terminated_t or truncated_t) {where}{hard_coded}")


__all__ = ["check_bootstrap_values", "check_td_residuals", "check_gae"]
