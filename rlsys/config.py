"""The one typed, frozen configuration tree of a run.

Loaded once from ``configs/*.yaml`` plus ``section.key=value`` overrides (and ``algo=NAME`` presets
from ``configs/algo/NAME.yaml``), validated before any actor starts, written to the run directory,
never mutated. Each component receives only its own section. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from rlsys.types import CORRECT_THRESHOLD


@dataclass(frozen=True)
class ModelConfig:
    path: str = "builtin:tiny-arith"  # HF model dir, or builtin:tiny-arith (built and cached on first use)
    cache_dir: str = ".cache/rlsys"  # where built-in models are cached (relative to the working dir)
    dtype: str = "float32"  # float32 | bfloat16 | float16


@dataclass(frozen=True)
class DataConfig:
    source: str = "builtin:arithmetic"  # builtin:<task> or a .jsonl / .parquet file
    prompts_per_step: int = 16  # P: prompts drawn per training step
    num_train: int = 4096  # built-in tasks: number of generated training prompts
    num_eval: int = 64  # held-out prompts for evaluation
    difficulties: tuple[int, ...] = (1, 2, 3)  # built-in tasks: difficulty levels to generate
    seed: int = 0  # shuffling and generation seed
    default_verifier: str = "arithmetic"  # verifier for rows that name none
    chat_template: bool = False  # apply the tokenizer's chat template (instruct models)


@dataclass(frozen=True)
class RolloutConfig:
    num_workers: int = 2  # number of vLLM engine actors
    # Ray CPUs are a scheduling budget, not a thread limit; the defaults let the demo (2 engines, 2 ranks,
    # the reward actor: 1.75 CPUs) fit a 2-core machine, as an embedded cluster must (cluster.py).
    num_cpus_per_worker: float = 0.5  # Ray CPUs reserved per engine actor
    num_gpus_per_worker: float = 0.0  # Ray GPUs per engine actor (0 on CPU)
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per engine, e.g. {rollout_node: 1}
    label_selector: dict[str, str] = field(default_factory=dict)  # Ray node labels the engines need, e.g. {role: inference}
    samples_per_prompt: int = 8  # G: responses per prompt
    temperature: float = 1.0  # sampling temperature of the regular pass
    top_p: float = 1.0  # nucleus sampling
    max_new_tokens: int = 16  # response length cap (L_max)
    gpu_memory_utilization: float = 0.2  # vLLM memory fraction (on CPU a fraction of RAM)
    kv_cache_space_gb: int = 1  # VLLM_CPU_KVCACHE_SPACE on CPU
    max_model_len: int = 256  # prompt + response tokens
    enforce_eager: bool = True  # no CUDA graphs / compilation
    weight_transfer: str = "serialized"  # serialized: safetensors bytes via the object store (the one wired path)
    # CPU engines: spread (engine i on its own cores, as many as num_cpus_per_worker rounds to, at least 1)
    # | vllm (vLLM decides: its VLLM_CPU_OMP_THREADS_BIND, default auto: every engine of a node on the same
    # cores) | nobind (the OS schedules)
    cpu_threads_bind: str = "spread"
    max_restarts: int = 3  # a crashed engine actor is restarted (and re-synced) up to this many times
    seed: int = 0  # engine seed (worker i uses seed + i)


@dataclass(frozen=True)
class RewardConfig:
    num_workers: int = 1  # grading worker processes inside the reward service actor
    timeout_s: float = 5.0  # hard wall-clock limit per answer; past it the answer is ungradable
    num_actors: int = 1  # reward service actors; each batch is split over them by prompt
    num_cpus: float = 0.25  # Ray CPUs reserved per reward service actor
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per reward actor
    label_selector: dict[str, str] = field(default_factory=dict)  # Ray node labels the reward actors need
    verifier_paths: tuple[str, ...] = ()  # extra verifiers as dotted paths "pkg.mod:function"
    max_restarts: int = 3  # a crashed reward actor is restarted up to this many times


@dataclass(frozen=True)
class LearnerConfig:
    num_ranks: int = 2  # learner actors forming one torch.distributed group
    num_cpus_per_rank: float = 0.25  # Ray CPUs per learner rank
    num_gpus_per_rank: float = 0.0  # Ray GPUs per learner rank
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per rank, e.g. {learner_node: 1}
    label_selector: dict[str, str] = field(default_factory=dict)  # Ray node labels every rank's node needs
    placement: str = "pack"  # placement group of the ranks: pack | spread | strict_pack | strict_spread | none
    zero_stage: int = 2  # DeepSpeed ZeRO stage: 2 or 3
    backend: str = "auto"  # auto (nccl on GPU, gloo on CPU) | gloo | nccl
    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max gradient norm
    mini_batches_per_step: int = 1  # optimizer steps per training step
    micro_batch_size: int = 32  # samples per forward/backward on one rank
    entropy_chunk_tokens: int = 1024  # tokens per chunk of the logits -> logp/entropy pass
    old_logprob_source: str = "learner"  # learner (recompute) | rollout (vLLM's sampled logprobs)
    behaviour_pass: str = "auto"  # auto: no-grad old-logprob pass only when off-policy (learner/plan.py) | always
    seed: int = 0


# Names the pure modules define, mirrored here because validation runs before torch is imported
# (tests/unit/test_config.py checks each against its source).
ADVANTAGE_MODES = ("grpo_std", "mean_only", "asym_power", "sign")  # keys of rlsys.algo.advantages.ADVANTAGE_MODES
BINARISING_ADVANTAGE_MODES = ("asym_power", "sign")  # rlsys.algo.advantages.BINARISING_MODES
AsymNonbinary = Literal["binarise", "grpo"]  # rlsys.algo.advantages.NONBINARY_RULES
AEREntropyPopulation = Literal["all", "regularised"]  # what rlsys.control.aer averages H_0 and H_k over
ASYNC_UNSUPPORTED_CONTROLLERS = ("uec_rl", "hora")  # controllers with a second pass / replay: trainer.async_steps=0 only
CPU_THREADS_BIND_MODES = ("spread", "vllm", "nobind")  # rlsys.rollout.cpu_binding.CPU_BIND_MODES
LOSS_AGG_MODES = ("token_mean", "seq_mean_token_mean", "seq_sum_const")  # keys of rlsys.algo.aggregate.AGG_MODES


def overlong_window(max_new_tokens: int, cache_len: int = 0, cache_frac: float = 0.0) -> int:
    """DAPO's L_cache in tokens (docs/algorithms.md#dapo): ``cache_len`` when > 0, else
    max(1, round(cache_frac * max_new_tokens)) when ``cache_frac`` > 0 (Python's round: a half goes to
    the even integer), else 0 (no shaping). Both set is refused."""
    if cache_len > 0 and cache_frac > 0:
        raise ValueError(f"overlong window: cache_len={cache_len} and cache_frac={cache_frac} both set; set one")
    if cache_len > 0:
        return int(cache_len)
    return max(1, round(cache_frac * max_new_tokens)) if cache_frac > 0 else 0


@dataclass(frozen=True)
class AlgoConfig:
    name: str = "grpo"  # preset name, recorded for the logs
    advantage: str = "grpo_std"  # a key of rlsys.algo.advantages.ADVANTAGE_MODES: grpo_std | mean_only | asym_power | sign
    adv_std_ddof: int = 0  # 0: population std, 1: unbiased (torch.std default)
    asym_beta_pos: float = 0.9  # AsymGRPO exponent for correct samples
    asym_beta_neg: float = 0.4  # AsymGRPO exponent for wrong samples
    asym_threshold: float = CORRECT_THRESHOLD  # asym_power/sign: a reward >= this counts as correct, in (0, 1]
    asym_nonbinary: AsymNonbinary = "binarise"  # asym_power/sign, group with a reward outside {0,1}: binarise | grpo (its GRPO advantage)
    loss_agg: str = "token_mean"  # a key of rlsys.algo.aggregate.AGG_MODES: token_mean | seq_mean_token_mean | seq_sum_const
    seq_sum_const_len: int = 0  # L_c for seq_sum_const (0 -> rollout.max_new_tokens)
    eps_low: float = 0.2  # lower clip range
    eps_high: float = 0.2  # upper clip range (0.28 = DAPO clip-higher)
    dual_clip_c: float = 0.0  # dual-clip bound c for A<0 (0 = off; UEC-RL uses 3)
    ref_kl_coef: float = 0.0  # beta_ref of the k3 reference KL (0 = no reference model)
    clip_cov_ratio: float = 0.0  # Clip-Cov fraction r of tokens to detach (0 = off)
    clip_cov_lb: float = 1.0  # Clip-Cov omega_lo
    clip_cov_ub: float = 5.0  # Clip-Cov omega_hi
    kl_cov_ratio: float = 0.0  # KL-Cov fraction kappa of tokens penalised (0 = off)
    kl_cov_coef: float = 1.0  # KL-Cov beta_kl
    overlong_cache_len: int = 0  # DAPO soft overlong window L_cache in tokens (0 = off, or from overlong_cache_frac)
    overlong_cache_frac: float = 0.0  # DAPO window as a fraction of rollout.max_new_tokens (0 = off; dapo preset 0.2)
    dynamic_sampling: bool = False  # DAPO: drop groups with p in {0,1} and refill
    dynamic_sampling_max_rounds: int = 4  # refill rounds before reporting exhaustion


UECExploreKeep = Literal["positive", "nonnegative"]


@dataclass(frozen=True)
class EntropyControlConfig:
    controller: str = "none"  # none | fixed | skywork | aer | uec_rl | asymgrpo | hora
    coef: float = 0.0  # fixed: constant lambda; skywork: starting coefficient
    target_entropy: float = 0.2  # skywork: H_tgt
    coef_step: float = 0.005  # skywork: delta per step
    coef_min: float = 0.0  # skywork: lower clamp
    coef_max: float = 1.0  # skywork: upper clamp
    aer_tau: float = 0.4  # AER: target = tau * H_0
    aer_rho: float = 0.5  # AER: prompts with p <= rho are hard
    aer_weight: str = "indicator"  # AER: indicator (1[p<=rho]) | linear (1-p)
    aer_alpha_init: float = 0.0  # AER: alpha_0
    aer_alpha_lr: float = 1e-3  # AER: eta_alpha
    aer_alpha_max: float = 1e-2  # AER: alpha_max
    aer_update: str = "additive"  # AER: additive | log
    aer_warmup_batches: int = 1  # AER: batches averaged into H_0
    aer_entropy_population: AEREntropyPopulation = "all"  # AER: tokens H_0 and H_k average over: all | regularised (prompts with w(p) > 0)
    uec_extra_samples: int = 20  # UEC-RL: G'
    uec_extra_temperature: float = 1.2  # UEC-RL: T'
    uec_replay_size: float = 2.0  # UEC-RL: replay capacity in units of P*G
    uec_replay_every: int = 5  # UEC-RL: f_replay (0 = never)
    uec_adv_threshold: float = 1.0  # UEC-RL: A_0 of the replay admission rule
    uec_code_compat: bool = False  # UEC-RL: the authors' code's rules and scoring (docs/algorithms.md#uec_rl)
    uec_explore_keep: UECExploreKeep = "positive"  # UEC-RL: exploration samples kept: positive (A>0) | nonnegative (A>=0)
    uec_batch_buffer: bool = True  # UEC-RL: train only on whole multiples of P*G kept samples (FIFO of 2*P*G)
    hora_n_probe: int = 4  # HORA: probe responses per prompt (the regular pass draws these instead of G)
    hora_budget: Optional[int] = None  # HORA: extra responses per step (None: P * (G - hora_n_probe))
    hora_utility: str = "unsolved_hit"  # HORA: unsolved_hit | hit (docs/algorithms.md#hora)
    hora_max_per_prompt: Optional[int] = None  # HORA: cap on one prompt's extra responses (None: no cap)


@dataclass(frozen=True)
class ClusterConfig:
    address: Optional[str] = None  # Ray address to join; None starts an embedded local cluster
    num_cpus: int = 0  # embedded cluster: logical CPUs (0 -> os.cpu_count(); never more than the machine)
    namespace: str = "rlsys"  # Ray namespace (the controller is a named actor in it)
    include_dashboard: bool = False  # embedded cluster: start the Ray dashboard
    actor_start_timeout_s: float = 600.0  # how long to wait for actors to come up


@dataclass(frozen=True)
class TrainerConfig:
    total_steps: int = 20  # training steps
    run_dir: str = "runs/latest"  # metrics.jsonl, config.yaml, checkpoints
    eval_every: int = 0  # steps between evaluations on the held-out split (0 = start and end only)
    eval_samples: int = 4  # k samples per eval prompt for pass@k
    eval_temperature: float = 1.0  # sampling temperature of evaluation
    save_every: int = 50  # steps between checkpoints in run_dir/checkpoints (0 = after the last step only)
    keep_checkpoints: int = 2  # newest checkpoints kept; older step_* dirs are deleted after each save
    max_nonfinite_steps: int = 3  # steps with a NaN/inf metric tolerated; one more saves a checkpoint and stops
    tensorboard: bool = False  # also write every metric to run_dir/tensorboard (needs the tensorboard extra)
    resume: str = "auto"  # auto: continue from run_dir's latest checkpoint if it has one; never: refuse to reuse it
    # 0: synchronous. 1: one-step-off: the next step's regular pass runs while this step trains, on the
    # weights before this step's update (each batch at most 1 version behind the learner; not with uec_rl/hora)
    async_steps: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    entropy_control: EntropyControlConfig = field(default_factory=EntropyControlConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def validate(self) -> None:
        """Raise ConfigError listing every problem, each with its key."""
        problems = _problems(self)
        if problems:
            raise ConfigError(_one_line(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(_plain(self.to_dict()), f, sort_keys=False)


class ConfigError(ValueError):
    """A problem found before anything is written or started; the message is one line naming the key."""


def _one_line(problems: list[str]) -> str:
    return "invalid config: " + "; ".join(problems)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _one_of(key: str, value, allowed) -> list[str]:
    return [] if value in allowed else [f"{key}={value!r}: must be one of {sorted(allowed)}"]


def _positive(key: str, value, allow_zero: bool = False) -> list[str]:
    ok = value >= 0 if allow_zero else value > 0
    return [] if ok else [f"{key}={value!r}: must be {'>= 0' if allow_zero else '> 0'}"]


def _within(key: str, value, low: float, high: float, closed: str = "[]") -> list[str]:
    """``value`` in the interval from ``low`` to ``high``; ``closed`` gives its brackets, e.g. "(]"."""
    ok = (low <= value if closed[0] == "[" else low < value) and (value <= high if closed[1] == "]" else value < high)
    return [] if ok else [f"{key}={value!r}: must be in {closed[0]}{low:g}, {high:g}{closed[1]}"]


def _non_empty(key: str, value: str) -> list[str]:
    return [] if value.strip() else [f"{key}={value!r}: must not be empty"]


def _non_finite(c: Config) -> list[str]:
    """Every float field must be a finite number (``inf`` passes every range check, ``nan`` none)."""
    bad = []
    for section in fields(c):
        part = getattr(c, section.name)
        for f in fields(part):
            value = getattr(part, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                bad.append(f"{section.name}.{f.name}={value!r}: must be a finite number")
    return bad


def _problems(c: Config) -> list[str]:
    non_finite = _non_finite(c)
    p = _model_data_problems(c)
    p += _rollout_reward_problems(c)
    p += _learner_problems(c)
    p += _algo_problems(c)
    p += _entropy_control_problems(c)
    p += _cluster_trainer_problems(c)
    named = {x.split("=", 1)[0] for x in non_finite}  # a nan fails every range check too: name it once
    return non_finite + [x for x in p if x.split("=", 1)[0] not in named]


def _model_data_problems(c: Config) -> list[str]:
    d, p = c.data, []
    p += _one_of("model.dtype", c.model.dtype, {"float32", "bfloat16", "float16"})
    p += _non_empty("model.cache_dir", c.model.cache_dir)
    if c.model.path.startswith("builtin:") and c.model.path not in ("builtin:tiny-arith", "builtin:smollm2-135m"):
        p.append(f"model.path={c.model.path!r}: unknown built-in model; known: builtin:tiny-arith, "
                 f"builtin:smollm2-135m")
    if not c.model.path.startswith("builtin:") and not Path(c.model.path).is_dir():
        p.append(f"model.path={c.model.path!r}: not a directory (or builtin:tiny-arith / builtin:smollm2-135m)")
    elif not c.model.path.startswith("builtin:") and not (Path(c.model.path) / "config.json").is_file():
        p.append(f"model.path={c.model.path!r}: no config.json there (expected a Hugging Face model dir)")
    p += _positive("data.prompts_per_step", d.prompts_per_step)
    p += _positive("data.num_eval", d.num_eval, allow_zero=True)
    p += _positive("data.seed", d.seed, allow_zero=True)
    p += _non_empty("data.default_verifier", d.default_verifier)  # names: rlsys.data.checks.check_verifiers
    if d.source.startswith("builtin:"):
        p += _builtin_task_problems(d)
    elif not Path(d.source).is_file():
        p.append(f"data.source={d.source!r}: file not found")
    elif not d.source.endswith((".jsonl", ".parquet")):
        p.append(f"data.source={d.source!r}: must be a .jsonl or .parquet file")
    return p


def _builtin_task_problems(d: DataConfig) -> list[str]:
    from rlsys.data.tasks import ARITHMETIC_LEVELS, COUNTDOWN_LEVELS, TASKS

    name = d.source.split(":", 1)[1]
    if name not in TASKS:
        return [f"data.source={d.source!r}: unknown built-in task; known: {sorted(TASKS)}"]
    p = _positive("data.num_train", d.num_train)
    if 0 < d.num_train < d.prompts_per_step:
        p.append(f"data.num_train={d.num_train}: must be >= data.prompts_per_step={d.prompts_per_step}")
    levels = {"arithmetic": ARITHMETIC_LEVELS, "arithmetic_chat": ARITHMETIC_LEVELS,
              "countdown": COUNTDOWN_LEVELS}.get(name)
    if not d.difficulties:
        p.append("data.difficulties=(): at least one level is needed")
    elif levels is not None and not set(d.difficulties) <= set(levels):
        p.append(f"data.difficulties={list(d.difficulties)}: {name} has levels {sorted(levels)}")
    return p


def _rollout_reward_problems(c: Config) -> list[str]:
    r, rw, p = c.rollout, c.reward, []
    p += _positive("rollout.num_workers", r.num_workers)
    p += _positive("rollout.num_cpus_per_worker", r.num_cpus_per_worker, allow_zero=True)
    p += _positive("rollout.num_gpus_per_worker", r.num_gpus_per_worker, allow_zero=True)
    p += _positive("rollout.samples_per_prompt", r.samples_per_prompt)
    p += _positive("rollout.temperature", r.temperature)
    p += _within("rollout.top_p", r.top_p, 0, 1, "(]")
    p += _positive("rollout.max_new_tokens", r.max_new_tokens)
    p += _positive("rollout.max_model_len", r.max_model_len)
    p += _within("rollout.gpu_memory_utilization", r.gpu_memory_utilization, 0, 1, "(]")
    p += _positive("rollout.kv_cache_space_gb", r.kv_cache_space_gb)
    p += _one_of("rollout.cpu_threads_bind", r.cpu_threads_bind, set(CPU_THREADS_BIND_MODES))
    if 0 < r.max_model_len <= r.max_new_tokens:
        p.append(f"rollout.max_new_tokens={r.max_new_tokens}: must be < rollout.max_model_len={r.max_model_len}")
    if r.weight_transfer == "nccl":
        p.append("rollout.weight_transfer='nccl': not wired into the learner's weight push yet; use 'serialized'")
    else:
        p += _one_of("rollout.weight_transfer", r.weight_transfer, {"serialized"})
    p += _resource_problems("rollout.resources", r.resources)
    p += _label_selector_problems("rollout.label_selector", r.label_selector)
    p += _positive("rollout.max_restarts", r.max_restarts, allow_zero=True)
    p += _positive("rollout.seed", r.seed, allow_zero=True)
    p += _positive("reward.num_workers", rw.num_workers)
    p += _positive("reward.timeout_s", rw.timeout_s)
    p += _positive("reward.num_actors", rw.num_actors)
    p += _positive("reward.num_cpus", rw.num_cpus, allow_zero=True)
    p += _resource_problems("reward.resources", rw.resources)
    p += _label_selector_problems("reward.label_selector", rw.label_selector)
    p += _positive("reward.max_restarts", rw.max_restarts, allow_zero=True)
    for path in rw.verifier_paths:
        module, sep, attr = path.partition(":")
        if not (sep and module and attr):
            p.append(f"reward.verifier_paths: {path!r} must look like 'pkg.mod:function'")
    return p


PLACEMENTS = ("pack", "spread", "strict_pack", "strict_spread", "none")  # Ray placement-group strategies
RAY_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def _resource_problems(key: str, resources) -> list[str]:
    if not isinstance(resources, dict):
        return [f"{key}={resources!r}: expected a mapping of Ray resource name to amount, e.g. {{rollout_node: 1}}"]
    p = []
    for name, amount in resources.items():
        if name in RAY_BUILTIN_RESOURCES:
            p.append(f"{key}.{name}: set Ray's own resources with the num_cpus / num_gpus keys, not here")
        elif isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0:
            p.append(f"{key}.{name}={amount!r}: must be a number > 0")
    return p


# Ray's node-label syntax (Kubernetes label rules): key = [prefix/]name, value = name, "!name", "in(a,b)", "!in(a,b)".
_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY_RE = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}")
_LABEL_VALUE_RE = re.compile(rf"!?({_LABEL_NAME}|in\(\s*{_LABEL_NAME}(\s*,\s*{_LABEL_NAME})*\s*\))")


def _label_selector_problems(key: str, selector) -> list[str]:
    if not isinstance(selector, dict):
        return [f"{key}={selector!r}: expected a mapping of node label to value, e.g. {{role: inference}}"]
    p = []
    for name, value in selector.items():
        if not _LABEL_KEY_RE.fullmatch(name):
            p.append(f"{key}: {name!r} is not a valid node label key ([prefix/]name, letters, digits, - _ .)")
        elif not isinstance(value, str) or not _LABEL_VALUE_RE.fullmatch(value):
            p.append(f"{key}.{name}={value!r}: expected a label value, '!value', 'in(a,b)' or '!in(a,b)'")
    return p


def _learner_problems(c: Config) -> list[str]:
    lr, p = c.learner, []
    p += _positive("learner.num_ranks", lr.num_ranks)
    p += _positive("learner.num_cpus_per_rank", lr.num_cpus_per_rank, allow_zero=True)
    p += _positive("learner.num_gpus_per_rank", lr.num_gpus_per_rank, allow_zero=True)
    p += _resource_problems("learner.resources", lr.resources)
    p += _label_selector_problems("learner.label_selector", lr.label_selector)
    p += _one_of("learner.placement", lr.placement, set(PLACEMENTS))
    p += _one_of("learner.zero_stage", lr.zero_stage, {2, 3})  # what rlsys/learner/engine.py configures
    p += _one_of("learner.backend", lr.backend, {"auto", "gloo", "nccl"})
    if lr.backend == "nccl" and lr.num_gpus_per_rank <= 0:
        p.append("learner.backend='nccl' needs learner.num_gpus_per_rank > 0")
    p += _one_of("learner.old_logprob_source", lr.old_logprob_source, {"learner", "rollout"})
    p += _one_of("learner.behaviour_pass", lr.behaviour_pass, {"auto", "always"})
    p += _positive("learner.lr", lr.lr)
    p += _positive("learner.weight_decay", lr.weight_decay, allow_zero=True)
    p += _positive("learner.grad_clip", lr.grad_clip, allow_zero=True)
    p += _positive("learner.micro_batch_size", lr.micro_batch_size)
    p += _positive("learner.mini_batches_per_step", lr.mini_batches_per_step)
    p += _positive("learner.entropy_chunk_tokens", lr.entropy_chunk_tokens)
    p += _positive("learner.seed", lr.seed, allow_zero=True)
    return p


def _algo_problems(c: Config) -> list[str]:
    a, p = c.algo, []
    p += _non_empty("algo.name", a.name)
    p += _advantage_problems(c)
    p += _one_of("algo.adv_std_ddof", a.adv_std_ddof, {0, 1})
    p += _one_of("algo.loss_agg", a.loss_agg, set(LOSS_AGG_MODES))
    p += _positive("algo.seq_sum_const_len", a.seq_sum_const_len, allow_zero=True)
    p += _within("algo.eps_low", a.eps_low, 0, 1, "()")  # the ratio's lower clip 1 - eps_low must stay > 0
    p += _positive("algo.eps_high", a.eps_high)
    for key in ("dual_clip_c", "ref_kl_coef", "asym_beta_pos", "asym_beta_neg", "kl_cov_coef"):
        p += _positive(f"algo.{key}", getattr(a, key), allow_zero=True)
    p += _within("algo.clip_cov_ratio", a.clip_cov_ratio, 0, 1)
    p += _within("algo.kl_cov_ratio", a.kl_cov_ratio, 0, 1)
    if a.clip_cov_ratio and a.clip_cov_lb >= a.clip_cov_ub:
        p.append(f"algo.clip_cov_lb={a.clip_cov_lb}: must be < algo.clip_cov_ub={a.clip_cov_ub}")
    if a.dual_clip_c and a.dual_clip_c <= 1:
        p.append(f"algo.dual_clip_c={a.dual_clip_c}: must be > 1 (or 0 = off)")
    if a.clip_cov_ratio and a.kl_cov_ratio:
        p.append("algo.clip_cov_ratio and algo.kl_cov_ratio: choose one of Clip-Cov and KL-Cov")
    p += _overlong_problems(c)
    p += _positive("algo.dynamic_sampling_max_rounds", a.dynamic_sampling_max_rounds)
    return p


def _advantage_problems(c: Config) -> list[str]:
    """algo.advantage against the registry's names; AsymGRPO's keys (docs/algorithms.md#asymgrpo)."""
    a, p = c.algo, []
    p += _one_of("algo.advantage", a.advantage, set(ADVANTAGE_MODES))
    p += _within("algo.asym_threshold", a.asym_threshold, 0, 1, "(]")
    p += _one_of("algo.asym_nonbinary", a.asym_nonbinary, typing.get_args(AsymNonbinary))
    if a.advantage in ADVANTAGE_MODES and a.advantage not in BINARISING_ADVANTAGE_MODES:
        for key, default in (("asym_threshold", CORRECT_THRESHOLD), ("asym_nonbinary", "binarise")):
            if getattr(a, key) != default:
                p.append(f"algo.{key}={getattr(a, key)!r} has no effect with algo.advantage={a.advantage!r}: only "
                         f"{' and '.join(BINARISING_ADVANTAGE_MODES)} binarise rewards")
    return p


def _overlong_problems(c: Config) -> list[str]:
    """DAPO's window: a token count or a fraction of rollout.max_new_tokens, not both (docs/algorithms.md#dapo)."""
    a, p = c.algo, []
    p += _positive("algo.overlong_cache_len", a.overlong_cache_len, allow_zero=True)
    p += _within("algo.overlong_cache_frac", a.overlong_cache_frac, 0, 1, "[)")
    if p:
        return p
    if a.overlong_cache_len > 0 and a.overlong_cache_frac > 0:
        return [f"algo.overlong_cache_len={a.overlong_cache_len} and algo.overlong_cache_frac={a.overlong_cache_frac}: "
                f"set only one (the dapo preset sets overlong_cache_frac; add algo.overlong_cache_frac=0 to give the "
                f"window in tokens)"]
    L = c.rollout.max_new_tokens
    window = overlong_window(L, a.overlong_cache_len, a.overlong_cache_frac)
    if window and window >= L:
        key = (f"algo.overlong_cache_len={a.overlong_cache_len}" if a.overlong_cache_len > 0 else
               f"algo.overlong_cache_frac={a.overlong_cache_frac} (window max(1, round({a.overlong_cache_frac} * {L})) "
               f"= {window} tokens)")
        p.append(f"{key}: the window must be < rollout.max_new_tokens={L}")
    return p


def _entropy_control_problems(c: Config) -> list[str]:
    ec, p = c.entropy_control, []
    p += _one_of("entropy_control.controller", ec.controller,
                 {"none", "fixed", "skywork", "aer", "uec_rl", "asymgrpo", "hora"})
    p += _one_of("entropy_control.aer_weight", ec.aer_weight, {"indicator", "linear"})
    p += _one_of("entropy_control.aer_update", ec.aer_update, {"additive", "log"})
    p += _within("entropy_control.aer_tau", ec.aer_tau, 0, 1, "(]")
    p += _within("entropy_control.aer_rho", ec.aer_rho, 0, 1)
    for key in ("coef", "coef_step", "target_entropy", "aer_alpha_lr", "aer_alpha_max", "aer_alpha_init",
                "uec_extra_samples", "uec_replay_every", "uec_replay_size"):
        p += _positive(f"entropy_control.{key}", getattr(ec, key), allow_zero=True)
    p += _positive("entropy_control.coef_min", ec.coef_min, allow_zero=True)
    if ec.coef_min > ec.coef_max:
        p.append(f"entropy_control.coef_min={ec.coef_min} > entropy_control.coef_max={ec.coef_max}")
    if ec.aer_alpha_init > ec.aer_alpha_max:
        p.append(f"entropy_control.aer_alpha_init={ec.aer_alpha_init} > entropy_control.aer_alpha_max="
                 f"{ec.aer_alpha_max}")
    p += _positive("entropy_control.aer_warmup_batches", ec.aer_warmup_batches)
    p += _one_of("entropy_control.aer_entropy_population", ec.aer_entropy_population,
                 typing.get_args(AEREntropyPopulation))
    if ec.controller != "aer" and ec.aer_entropy_population != "all":
        p.append(f"entropy_control.aer_entropy_population={ec.aer_entropy_population!r} has no effect with "
                 f"entropy_control.controller={ec.controller!r}: only aer measures a population")
    p += _positive("entropy_control.uec_extra_temperature", ec.uec_extra_temperature)
    p += _one_of("entropy_control.uec_explore_keep", ec.uec_explore_keep, typing.get_args(UECExploreKeep))
    if ec.controller == "uec_rl" and ec.uec_code_compat and ec.uec_explore_keep != "positive":
        p.append(f"entropy_control.uec_explore_keep={ec.uec_explore_keep!r}: uec_code_compat=true keeps exploration "
                 f"samples by the code's |A| > uec_adv_threshold; leave uec_explore_keep at 'positive'")
    if ec.controller == "uec_rl" and ec.uec_code_compat and c.learner.old_logprob_source == "rollout":
        p.append("entropy_control.uec_code_compat=true scores exploration samples at rollout.temperature, so vLLM's "
                 "log-probs (drawn at uec_extra_temperature) cannot be their old log-probs: set "
                 "learner.old_logprob_source=learner")
    return p + _hora_problems(c)


def _hora_problems(c: Config) -> list[str]:
    ec, p = c.entropy_control, []
    if ec.hora_n_probe < 2:  # a prompt allocated nothing trains on its probe alone; one sample has no advantage
        p.append(f"entropy_control.hora_n_probe={ec.hora_n_probe}: must be >= 2")
    if ec.hora_budget is not None:
        p += _positive("entropy_control.hora_budget", ec.hora_budget, allow_zero=True)
    if ec.hora_max_per_prompt is not None:
        p += _positive("entropy_control.hora_max_per_prompt", ec.hora_max_per_prompt)
    p += _one_of("entropy_control.hora_utility", ec.hora_utility, {"hit", "unsolved_hit"})  # rlsys.algo.hora
    G = c.rollout.samples_per_prompt
    if ec.controller == "hora" and ec.hora_budget is None and ec.hora_n_probe > G:
        p.append(f"entropy_control.hora_n_probe={ec.hora_n_probe}: must be <= rollout.samples_per_prompt={G} "
                 f"while entropy_control.hora_budget is unset (its default P * (G - n_probe) would be < 0)")
    return p


def _cluster_trainer_problems(c: Config) -> list[str]:
    t, p = c.trainer, []
    p += _positive("cluster.num_cpus", c.cluster.num_cpus, allow_zero=True)
    p += _non_empty("cluster.namespace", c.cluster.namespace)
    p += _positive("cluster.actor_start_timeout_s", c.cluster.actor_start_timeout_s)
    if c.cluster.address is not None:
        p += _non_empty("cluster.address", c.cluster.address)
    p += _positive("trainer.total_steps", t.total_steps)
    p += _non_empty("trainer.run_dir", t.run_dir)
    p += _positive("trainer.eval_every", t.eval_every, allow_zero=True)
    p += _positive("trainer.eval_samples", t.eval_samples)
    p += _positive("trainer.eval_temperature", t.eval_temperature, allow_zero=True)
    p += _positive("trainer.save_every", t.save_every, allow_zero=True)
    p += _positive("trainer.keep_checkpoints", t.keep_checkpoints)
    p += _positive("trainer.max_nonfinite_steps", t.max_nonfinite_steps, allow_zero=True)
    p += _one_of("trainer.resume", t.resume, {"auto", "never"})
    p += _one_of("trainer.async_steps", t.async_steps, {0, 1})
    if t.async_steps and c.entropy_control.controller in ASYNC_UNSUPPORTED_CONTROLLERS:
        p.append(f"trainer.async_steps={t.async_steps} with entropy_control.controller={c.entropy_control.controller!r}: "
                 f"its second sampling pass (and UEC-RL's replay) must use the weights of the regular pass; "
                 f"set trainer.async_steps=0")
    p += _positive("trainer.seed", t.seed, allow_zero=True)
    return p


# ---------------------------------------------------------------- loading

def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _coerce(key: str, text: Any, annotation) -> Any:
    """Convert an override string (or YAML value) to the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if text is None or (isinstance(text, str) and text.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(key, text, inner)
    if origin is tuple:
        items = text
        if isinstance(text, str):
            parsed = yaml.safe_load(text)
            items = parsed if isinstance(parsed, list) else [s for s in text.split(",") if s.strip()]
        if not isinstance(items, (list, tuple)):
            items = [items]
        return tuple(_coerce(key, x, args[0]) for x in items)
    if origin is dict:
        mapping = yaml.safe_load(text) if isinstance(text, str) else text
        if mapping is None:
            return {}
        if not isinstance(mapping, dict):
            raise ConfigError(f"{key}={text!r}: expected a mapping, e.g. {{name: 1}}")
        return {str(k): _coerce(f"{key}.{k}", v, args[1]) for k, v in mapping.items()}
    if origin is Literal:
        if text not in args:
            raise ConfigError(f"{key}={text!r}: must be one of {list(args)}")
        return text
    if annotation is bool:
        if isinstance(text, bool):
            return text
        if isinstance(text, str) and text.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(text, str) and text.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r}: expected a boolean (true/false)")
    if annotation in (int, float):
        if isinstance(text, bool):
            raise ConfigError(f"{key}={text!r}: expected {annotation.__name__}")
        try:
            value = annotation(text) if annotation is float else int(str(text), 0)
        except (TypeError, ValueError):
            try:
                as_float = float(text)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}={text!r}: expected {annotation.__name__}") from None
            if annotation is int and as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{key}={text!r}: expected {annotation.__name__}") from None
        return value
    if annotation is str:
        if not isinstance(text, (str, int, float)):
            raise ConfigError(f"{key}={text!r}: expected a string")
        return str(text)
    return text


def _merge_section(section: str, raw: dict, into: dict) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {type(raw).__name__}")
    into.setdefault(section, {}).update(raw)


def _apply_preset(name: str, raw: dict, configs_dir: Path) -> None:
    preset = configs_dir / "algo" / f"{name}.yaml"
    if not preset.is_file():
        known = sorted(x.stem for x in (configs_dir / "algo").glob("*.yaml"))
        raise ConfigError(f"algo={name!r}: no preset {preset}; known presets: {known}")
    data = yaml.safe_load(preset.read_text()) or {}
    for section, values in data.items():
        _merge_section(section, values, raw)
    raw.setdefault("algo", {})["name"] = name


def load_config(path: Optional[str] = None, overrides: Sequence_ = (), configs_dir: Optional[str] = None) -> Config:
    """Load YAML ``path`` (may be None for defaults) and apply ``key=value`` overrides.

    ``algo=NAME`` (in the file as a string or on the command line) merges ``configs/algo/NAME.yaml``
    before the other overrides. Unknown sections/keys and badly typed values raise ConfigError.
    """
    raw: dict[str, dict] = {}
    configs_root = Path(configs_dir) if configs_dir else _default_configs_dir(path)
    file_data = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path!r} not found")
        try:
            file_data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path!r} is not valid YAML: {e}") from None
        if not isinstance(file_data, dict):
            raise ConfigError(f"config file {path!r}: top level must be a mapping of sections")
    # Precedence: defaults < preset named in the file < file < preset named on the command line < key=value.
    if isinstance(file_data.get("algo"), str):
        _apply_preset(file_data.pop("algo"), raw, configs_root)
    cli_preset, pairs = None, []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value or algo=NAME")
        key, value = item.split("=", 1)
        if key == "algo":
            cli_preset = value
        else:
            pairs.append((key, value))
    for section, values in file_data.items():
        _merge_section(section, values, raw)
    if cli_preset is not None:
        _apply_preset(cli_preset, raw, configs_root)
    for key, value in pairs:
        if "." not in key:
            raise ConfigError(f"override {key}={value!r}: expected section.key=value")
        section, sub = key.split(".", 1)
        raw.setdefault(section, {})[sub] = value
    return build_config(raw)


Sequence_ = typing.Sequence[str]


def build_config(raw: dict) -> Config:
    types = _section_types()
    sections = {}
    errors = []
    for section, values in raw.items():
        if section not in types:
            errors.append(f"{section}: unknown section; known: {sorted(types)}")
            continue
        cls = types[section]
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                errors.append(f"{section}.{key}: unknown key; known: {sorted(hints)}")
                continue
            try:
                kwargs[key] = _coerce(f"{section}.{key}", value, hints[key])
            except ConfigError as e:
                errors.append(str(e))
        sections[section] = cls(**kwargs)
    if errors:
        raise ConfigError(_one_line(errors))
    return Config(**sections)


def _default_configs_dir(path: Optional[str]) -> Path:
    if path is not None:
        p = Path(path).resolve().parent
        for candidate in (p, *p.parents):
            if (candidate / "algo").is_dir() and candidate.name == "configs":
                return candidate
    return Path.cwd() / "configs"
