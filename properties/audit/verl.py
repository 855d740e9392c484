r"""verl's configuration space, read from the installed library, and a loss per configuration.

Everything is read from ``verl.trainer.ppo.core_algos`` itself: the advantage estimators
(``ADV_ESTIMATOR_REGISTRY``), the policy losses (``POLICY_LOSS_REGISTRY``), the aggregation
modes (the string constants ``agg_loss`` compares ``loss_agg_mode`` with) and the KL kinds (the
constants ``kl_penalty_forward`` compares its ``kl_penalty`` argument with, alias groups
kept together, plus the straight-through ``"+"`` suffix ``kl_penalty`` accepts).  Each loss calls
verl's real functions on the batch's tensors, as the trainer does:

* the reward manager puts a response's score on its last response token
  (``token_level_rewards``), the uid of a response is its prompt (``index = batch.group``);
* the advantage estimator is called with the keyword arguments verl's
  ``ray_trainer.compute_advantage`` passes (``token_level_rewards``, ``response_mask``,
  ``config=AlgoConfig()``, ``index``; ``reward_baselines`` = the reward of each prompt's greedy
  response for ReMax; ``old_log_probs`` and ``sum_pi_squared`` (``sum softmax(logits)**2``,
  detached) for the optimal-token baselines; GRPO with ``norm_adv_by_std_in_grpo`` from
  ``AlgoConfig``);
* the policy loss is ``get_policy_loss_fn(loss_mode)`` called as verl's ``ppo_loss`` calls it
  (``old_log_prob``; ``log_prob``; ``response_mask`` as bool; a real ``ActorConfig`` with the
  mode; one micro-batch on one rank, so ``global_batch_info`` is empty), plus, for the KL rows,
  ``kl_penalty`` aggregated by ``agg_loss`` times the coefficient (``use_kl_loss``), or
  ``apply_kl_penalty``'s arithmetic on the rewards (``use_kl_in_reward``:
  ``token_level_scores - beta * kl_penalty(old_log_probs, ref_log_prob) * response_mask``;
  ``ray_trainer`` itself imports the whole distributed trainer, so these two lines are
  re-expressed).

The space is factored, not multiplied out (a biased base would make every row of a product
biased, hiding which axis is at fault):

* ``default``: verl's defaults (GRPO, ``vanilla``, ``token-mean``);
* ``adv:NAME``: each estimator with the ``vanilla`` loss and ``seq-mean-token-sum``, an
  aggregation that is unbiased by itself, so that the row judges the estimator;
* ``loss:NAME`` and ``loss:NAME off-policy``: each policy loss with the RLOO estimator
  (unbiased by itself) and ``seq-mean-token-sum``, on-policy (``old_log_prob =
  log_prob.detach()``) and off-policy (responses drawn from another policy);
* ``agg:MODE``: each aggregation mode with RLOO and ``vanilla``;
* ``kl-loss:KIND`` and ``kl-reward:KIND``: each KL kind on the RLOO/``vanilla``/
  ``seq-mean-token-sum`` base with ``beta = 0.2`` (:data:`KL_COEF`) in the objective;
* ``entropy-bonus``: the same base with ``entropy_coeff = 0.01`` (:data:`ENTROPY_COEFF`), the
  entropy of every position from ``verl.utils.torch_functional.entropy_from_logits``,
  aggregated by ``agg_loss`` and subtracted, as ``ppo_loss`` does.
* a critic: an estimator that takes ``values`` (GAE) gets ``batch.values``, the checker's
  random value table (:data:`CRITIC_VALUES`), so ``adv:gae`` (verl's ``gamma = lam = 1``) is
  judged for a wrong critic.  It is biased whatever the values: ``compute_gae_advantage_return``
  whitens the advantages over the batch (``masked_whiten``, a mean and a standard deviation of
  every token of the batch), as the sequence catalogue's ``batch-whitening``; without the
  whitening it is unbiased (``tests/test_audit.py`` checks both).
* the training-inference mismatch: ``rollout-is:LEVEL`` draws the responses from the
  checker's perturbed inference engine (``sampling_mismatch=True``) and weights the base loss by
  ``rollout_corr_helper.compute_rollout_correction_weights(old_log_probs -
  sampling_log_probs, rollout_is=LEVEL, rollout_is_threshold=2.0)`` passed as the policy
  loss's ``rollout_is_weights``, as verl's rollout correction does; ``rollout-is:none`` is the
  same base without the correction.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from properties.audit.core import Configuration

LIBRARY = "verl"
"""The library's name on the command line."""

EXTRA = "verl"
"""The extra of this package that installs it (``pip install 'ida-verify[verl]'``)."""

KL_COEF = 0.2
"""The ``beta`` of the objective for the KL rows (``kl_loss_coef`` / ``kl_ctrl.kl_coef``)."""

ENTROPY_COEFF = 0.01
"""``entropy_coeff`` of the ``entropy-bonus`` row (verl's default is 0: no bonus)."""

DRO_BETA = 0.1
"""``policy_loss.dro_beta`` for the ``dro`` loss, which has no default and refuses ``None``."""

BASE_ESTIMATOR = "rloo"
"""The estimator of the ``loss:``, ``agg:`` and KL rows (unbiased with a token-sum aggregation)."""

BASE_POLICY_LOSS = "vanilla"
"""The policy loss of the ``adv:``, ``agg:`` and KL rows (verl's default ``loss_mode``)."""

BASE_AGG_MODE = "seq-mean-token-sum"
"""The aggregation of the ``adv:``, ``loss:`` and KL rows (a token sum per response, mean over responses)."""

NOT_CHECKED_PARAMETERS: dict[str, str] = {
    "non_tensor_batch": "needs several reward components (non_tensor_batch)",
}
"""Why an estimator whose signature requires one of these parameters is not checked."""

_PROVIDED = frozenset(
    {
        "token_level_rewards",
        "response_mask",
        "index",
        "config",
        "reward_baselines",
        "old_log_probs",
        "sum_pi_squared",
        "rollout_is_weights",
        "gamma",
        "lam",
        "values",
    }
)

ROLLOUT_IS_LEVELS = ("token", "sequence")
"""``rollout_is`` levels of ``compute_rollout_correction_weights`` (the ``rollout-is:`` rows)."""

ROLLOUT_IS_THRESHOLD = 2.0
"""``rollout_is_threshold``: verl's default truncation of the rollout-correction weights."""

CRITIC_VALUES = "random"
"""The critic's values an estimator that takes ``values`` (GAE) is checked with: a table drawn
independently of the policy (``check_sequence_loss(values="random")``), a critic that is wrong,
for which GAE with verl's default ``lam = 1`` is unbiased by itself."""


def _core() -> Any:
    from verl.trainer.ppo import core_algos

    return core_algos


def version() -> str:
    """Import verl (``ImportError`` when it is missing) and return its version."""
    import verl

    _core()
    return str(getattr(verl, "__version__", "unknown"))


def _compared_strings(fn: Callable[..., Any], argument: str) -> list[tuple[str, ...]]:
    """The string constants ``fn``'s source compares ``argument`` with, one tuple per comparison.

    >>> def f(mode):
    ...     if mode == "a":
    ...         return 1
    ...     if mode in ("b", "c"):
    ...         return 2
    >>> _compared_strings(f, "mode")
    [('a',), ('b', 'c')]
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    groups: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == argument
            and len(node.comparators) == 1
            and isinstance(node.ops[0], ast.Eq | ast.In)
        ):
            continue
        right = node.comparators[0]
        items = right.elts if isinstance(right, ast.Tuple | ast.List) else [right]
        strings = tuple(
            e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)
        )
        if strings:
            groups.append(strings)
    return list(dict.fromkeys(groups))


def estimators() -> list[str]:
    """The names in ``ADV_ESTIMATOR_REGISTRY``, in registration order."""
    return list(_core().ADV_ESTIMATOR_REGISTRY)


def policy_losses() -> list[str]:
    """The names in ``POLICY_LOSS_REGISTRY``, in registration order."""
    return list(_core().POLICY_LOSS_REGISTRY)


def agg_modes() -> list[str]:
    """The ``loss_agg_mode`` values ``agg_loss`` handles (read from its source)."""
    modes = [m for group in _compared_strings(_core().agg_loss, "loss_agg_mode") for m in group]
    return list(dict.fromkeys(modes))


def kl_kinds() -> list[tuple[str, ...]]:
    """The KL kinds of ``kl_penalty_forward`` as alias groups, then the ``"+"`` variants.

    A ``"+"`` variant (straight-through: the value of the kind, the gradient of ``k2``) is
    listed for each group ``kl_penalty`` does not return unchanged (it skips ``mse``/``k2``).
    """
    core = _core()
    groups = _compared_strings(core.kl_penalty_forward, "kl_penalty")
    source = inspect.getsource(core.kl_penalty)
    if 'endswith("+")' not in source:
        return groups
    plain = {s for g in _compared_strings(core.kl_penalty, "kl_penalty") for s in g}
    plus = [(g[0] + "+",) for g in groups if not plain.intersection(g)]
    return groups + plus


def _kl_not_checked(kind: str) -> str | None:
    """Why a KL kind cannot be checked (verl raises for it), else ``None``."""
    import torch

    x = torch.zeros(1, 1, dtype=torch.float64)
    try:
        _core().kl_penalty(x, x, kl_penalty=kind)
    except NotImplementedError:
        return (
            f"verl's kl_penalty raises NotImplementedError for {kind!r} "
            "(it needs the full-vocabulary log-probs)"
        )
    return None


def _estimator_not_checked(name: str) -> str | None:
    fn = _core().get_adv_estimator_fn(name)
    required = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]
    missing = [p for p in required if p not in _PROVIDED]
    if not missing:
        return None
    reasons = [NOT_CHECKED_PARAMETERS.get(p, f"needs {p}") for p in missing]
    return f"verl's {name} estimator " + "; ".join(dict.fromkeys(reasons))


def configurations() -> list[Configuration]:
    """verl's configurations, factored as the module docstring says."""
    out: list[Configuration] = []

    def add(name: str, not_checked: str | None = None, **axes: str) -> None:
        out.append(Configuration(LIBRARY, name, tuple(axes.items()), not_checked))

    add("default", estimator="grpo", policy_loss=BASE_POLICY_LOSS, loss_agg_mode="token-mean")
    for est in estimators():
        add(f"adv:{est}", _estimator_not_checked(est), estimator=est,
            policy_loss=BASE_POLICY_LOSS, loss_agg_mode=BASE_AGG_MODE)
    for loss in policy_losses():
        for off in ("", " off-policy"):
            add(f"loss:{loss}{off}", estimator=BASE_ESTIMATOR, policy_loss=loss,
                loss_agg_mode=BASE_AGG_MODE, off_policy="yes" if off else "no")
    for mode in agg_modes():
        add(f"agg:{mode}", estimator=BASE_ESTIMATOR, policy_loss=BASE_POLICY_LOSS,
            loss_agg_mode=mode)
    for group in kl_kinds():
        kind = group[0]
        label = "|".join(group)
        why = _kl_not_checked(kind)
        for where in ("loss", "reward"):
            add(f"kl-{where}:{label}", why, estimator=BASE_ESTIMATOR,
                policy_loss=BASE_POLICY_LOSS, loss_agg_mode=BASE_AGG_MODE,
                kl=f"{kind} in the {where}")
    add("entropy-bonus", estimator=BASE_ESTIMATOR, policy_loss=BASE_POLICY_LOSS,
        loss_agg_mode=BASE_AGG_MODE, entropy_coeff=str(ENTROPY_COEFF))
    for level in ("none", *ROLLOUT_IS_LEVELS):
        add(f"rollout-is:{level}", estimator=BASE_ESTIMATOR, policy_loss=BASE_POLICY_LOSS,
            loss_agg_mode=BASE_AGG_MODE, rollout_is=level)
    return out


# --------------------------------------------------------------------------- building a loss


def _actor_config(policy_loss: str, agg_mode: str, group_size: int) -> Any:
    from verl.workers.config import ActorConfig, PolicyLossConfig

    extra = {"dro_beta": DRO_BETA} if policy_loss == "dro" else {}
    return ActorConfig(
        strategy="fsdp",
        rollout_n=group_size,
        ppo_micro_batch_size_per_gpu=1,
        use_torch_compile=False,
        loss_agg_mode=agg_mode,
        policy_loss=PolicyLossConfig(loss_mode=policy_loss, **extra),
    )


def _token_level_scores(batch: Any) -> Any:
    """The reward manager's tensor: each response's score on its last response token."""
    import torch

    last = batch.mask.sum(-1).long() - 1
    onehot = torch.nn.functional.one_hot(last, batch.tokens.shape[-1]).to(batch.rewards.dtype)
    return onehot * batch.rewards[:, None]


def _advantages(batch: Any, estimator: str, token_level_rewards: Any, lam: float | None = None) -> Any:
    """``compute_advantage``'s call of the estimator (see the module docstring); ``lam``
    overrides ``AlgoConfig``'s."""
    import numpy as np
    import torch
    from verl.trainer.config import AlgoConfig

    core = _core()
    algo = AlgoConfig() if lam is None else AlgoConfig(lam=lam)
    index = np.asarray(batch.group.tolist())
    if estimator == "grpo":
        adv, _ = core.compute_grpo_outcome_advantage(
            token_level_rewards=token_level_rewards, response_mask=batch.mask, index=index,
            norm_adv_by_std_in_grpo=algo.norm_adv_by_std_in_grpo)
        return adv
    fn = core.get_adv_estimator_fn(estimator)
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {
        "token_level_rewards": token_level_rewards,
        "response_mask": batch.mask,
        "config": algo,
        "index": index,
    }
    if "reward_baselines" in params:
        greedy = batch.greedy_tokens[batch.group]
        kwargs["reward_baselines"] = torch.as_tensor(
            batch.reward_fn(greedy, batch.group), dtype=token_level_rewards.dtype)
    if "gamma" in params:
        kwargs["gamma"], kwargs["lam"] = algo.gamma, algo.lam
    if "values" in params:  # the critic's values (ray_trainer passes data.batch["values"])
        kwargs["values"] = batch.values
    if "sum_pi_squared" in params:
        kwargs["sum_pi_squared"] = batch.logits.detach().softmax(-1).square().sum(-1)
        kwargs["old_log_probs"] = batch.old_log_probs
        kwargs["rollout_is_weights"] = None
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not has_var_kw:
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    adv, _ = fn(**kwargs)
    return adv


def build(config: Configuration) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """The loss of one configuration and the checker's extra arguments."""
    core = _core()
    estimator = config.axis("estimator")
    loss_mode = config.axis("policy_loss")
    agg_mode = config.axis("loss_agg_mode")
    kl = config.axis("kl")
    kl_kind, _, where = kl.partition(" in the ")
    entropy_coeff = float(config.axis("entropy_coeff", "0"))
    lam_axis = config.axis("lam")
    lam = float(lam_axis) if lam_axis else None
    rollout_is = config.axis("rollout_is")
    takes_values = "values" in inspect.signature(core.get_adv_estimator_fn(estimator)).parameters
    actors: dict[int, Any] = {}
    policy_loss_fn = core.get_policy_loss_fn(loss_mode)

    def loss(batch: Any) -> Any:
        actor = actors.get(batch.group_size)
        if actor is None:
            actor = actors[batch.group_size] = _actor_config(loss_mode, agg_mode, batch.group_size)
        rewards = _token_level_scores(batch)
        if where == "reward":
            kld = core.kl_penalty(batch.old_log_probs, batch.ref_log_probs, kl_penalty=kl_kind)
            rewards = rewards - batch.kl_coef * (kld * batch.mask)
        advantages = _advantages(batch, estimator, rewards, lam)
        mask = batch.mask.to(bool)
        weights = None
        if rollout_is not in ("", "none"):
            from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights

            weights, _ = compute_rollout_correction_weights(
                log_ratio=batch.old_log_probs - batch.sampling_log_probs, response_mask=batch.mask,
                rollout_is=rollout_is, rollout_is_threshold=ROLLOUT_IS_THRESHOLD)
        total, _ = policy_loss_fn(
            old_log_prob=batch.old_log_probs, log_prob=batch.log_probs, advantages=advantages,
            response_mask=mask, loss_agg_mode=agg_mode, config=actor, rollout_is_weights=weights)
        if entropy_coeff:
            from verl.utils.torch_functional import entropy_from_logits

            entropy_loss = core.agg_loss(
                loss_mat=entropy_from_logits(batch.logits), loss_mask=mask,
                loss_agg_mode=agg_mode, **actor.global_batch_info)
            total = total - entropy_coeff * entropy_loss
        if where == "loss":
            kld = core.kl_penalty(logprob=batch.log_probs, ref_logprob=batch.ref_log_probs,
                                  kl_penalty=kl_kind)
            kl_loss = core.agg_loss(loss_mat=kld, loss_mask=mask, loss_agg_mode=agg_mode,
                                    **actor.global_batch_info)
            total = total + kl_loss * batch.kl_coef
        return total

    kwargs: dict[str, Any] = {}
    if where:
        kwargs["kl_coef"] = KL_COEF
    if config.axis("off_policy") == "yes":
        kwargs["off_policy"] = True
    if takes_values:
        kwargs["values"] = config.axis("values") or CRITIC_VALUES
    if rollout_is:  # the inference engine's responses, a perturbation of the trainer's policy
        kwargs["sampling_mismatch"] = True
    return loss, kwargs


__all__ = [
    "EXTRA",
    "KL_COEF",
    "LIBRARY",
    "agg_modes",
    "build",
    "configurations",
    "estimators",
    "kl_kinds",
    "policy_losses",
    "version",
]
