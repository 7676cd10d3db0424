"""One data-parallel learner rank: a HF causal LM trained with DeepSpeed ZeRO (stage 2 or 3).

A plain class (the orchestration layer wraps each rank in a Ray actor). ``train_step`` runs the
no-grad behaviour pass (old log-probs, exact pre-update entropy, reference log-probs), then one
optimiser step per mini-batch, and reports global statistics. When the update is on-policy
(``plan.needs_behaviour_pass``) the pass is skipped: the training forward's own detached log-probs
and entropies are the old log-probs and the pre-update statistics (``learner/behaviour_pass`` 0). The ONLY module that imports deepspeed;
must not import ray or vllm.

Sharding invariance: ``policy_loss`` divides each rank's local sum by GLOBAL counts, while DeepSpeed
averages gradients over the data-parallel ranks; each rank therefore backpropagates
``world_size * loss``. Gradient accumulation is run by hand (``gradient_accumulation_steps=1``,
``set_gradient_accumulation_boundary`` on the last micro-batch, ``scale_wrt_gas=False``), so the
summed micro-batch losses are the mini-batch loss, unscaled. The optimiser is torch's AdamW (no
DeepSpeed op to compile on CPU).
"""
from __future__ import annotations

import os
import time
from typing import Optional

import torch
import torch.distributed as dist

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed picks its accelerator on import
import deepspeed  # noqa: E402
from safetensors.torch import save as safetensors_save  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from rlsys.algo.loss import LossSpec, policy_loss  # noqa: E402
from rlsys.config import LearnerConfig  # noqa: E402
from rlsys.console import quiet_stdout  # noqa: E402
from rlsys.learner.forward import response_logp_and_entropy  # noqa: E402
from rlsys.learner.plan import (MicroBatch, MiniBatch, ShardInfo, needs_behaviour_pass, plan_pass,  # noqa: E402
                                plan_update)
from rlsys.types import LearnerStats, TrainBatch  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# ZeRO-3 keeps parameters below this many elements whole on every rank. DeepSpeed's default (1e5)
# would leave a small model entirely unpartitioned; norms and biases of <= 1024 still stay whole.
ZERO3_PERSISTENCE_THRESHOLD = 1024
# Additive diagnostics of policy_loss (local sums / global counts): summed over ranks and micro-batches.
ADDITIVE_DIAGNOSTICS = ("loss_pg", "loss_entropy", "loss_kl", "ref_kl", "clipfrac_upper", "clipfrac_lower",
                        "clipfrac_dual", "ppo_kl", "cov_selected_frac")
# Local sums that train_step all-reduces (a fixed list: every rank must send the same vector).
SUMMED = ("loss", *ADDITIVE_DIAGNOSTICS, "cov_selected_count", "cov_weighted_sum", "coef_token_sum",
          "coef_token_count", "entropy_sum", "nll_sum", "token_count")


class PolicyModule(torch.nn.Module):
    """The root module DeepSpeed wraps: HF causal LM -> stacked (logp, entropy) [2, B, T-1].

    Running the whole chunked head inside one root forward keeps ZeRO-3's per-forward bookkeeping
    (parameter fetch order, release at the end of the forward) intact. One stacked output, not two:
    ZeRO-3 runs a pre-backward hook per root output that receives a gradient and requires every rank
    to record the same module trace, so a rank whose loss ignores the entropy (all coefficients 0)
    must not skip a hook that another rank runs.
    """

    def __init__(self, lm: torch.nn.Module, chunk_tokens: int):
        super().__init__()
        self.lm = lm
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids_BT, attention_mask_BT, temperature_B, positions_BT, num_chunks: int):
        return torch.stack(response_logp_and_entropy(self.lm, input_ids_BT, attention_mask_BT, temperature_B,
                                                     self.chunk_tokens, positions_BT=positions_BT,
                                                     num_chunks=num_chunks))


class Learner:
    """One rank of the learner group; every public method is collective (all ranks call it)."""

    def __init__(self, cfg: LearnerConfig, model_path: str, loss_spec: LossSpec, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: must be one of {sorted(DTYPES)}")
        self.cfg = cfg
        self.model_path = model_path
        self.loss_spec = loss_spec
        self.dtype = dtype
        self.policy_version = 0
        self.setup_seconds = 0.0
        self.engine = None
        self.reference: Optional[torch.nn.Module] = None

    # ------------------------------------------------------------------ setup

    def setup(self, rank: int, world_size: int, master_addr: str, master_port: int) -> None:
        """Join the process group, load the model, build the DeepSpeed engine (and reference model)."""
        start = time.perf_counter()
        self.rank, self.world_size = rank, world_size
        local_rank = rank % torch.cuda.device_count() if torch.cuda.is_available() else rank
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
        backend = self.cfg.backend
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        with quiet_stdout():  # DeepSpeed prints a notice each time it loads its CPU comm op
            deepspeed.init_distributed(dist_backend=backend)
        torch.manual_seed(self.cfg.seed)
        lm = self._load_lm()
        optimizer = torch.optim.AdamW(lm.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.engine, *_ = deepspeed.initialize(model=PolicyModule(lm, self.cfg.entropy_chunk_tokens),
                                               optimizer=optimizer, config=self._ds_config(train=True))
        self.engine.eval()  # no dropout: the ratio must compare the same function vLLM sampled from
        self.device = self.engine.device
        if self.loss_spec.ref_kl_coef > 0:
            self.reference = self._build_reference()
        self.setup_seconds = time.perf_counter() - start

    def _load_lm(self) -> torch.nn.Module:
        """The HF model. Under ZeRO-3 it is built already partitioned (transformers runs the build in
        ``deepspeed.zero.Init`` while an ``HfDeepSpeedConfig`` of stage 3 is alive, and loads each
        rank's shard of the checkpoint), so no rank ever holds the whole model: one larger than a
        rank's memory loads. The HfDeepSpeedConfig is dropped right after: transformers keeps it as
        process-wide state, and any later model build in the process would be partitioned too."""
        if self.cfg.zero_stage != 3:
            return AutoModelForCausalLM.from_pretrained(self.model_path, dtype=DTYPES[self.dtype])
        from transformers.integrations import HfDeepSpeedConfig
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        zero3 = HfDeepSpeedConfig(self._ds_config(train=True))  # noqa: F841 - alive while the model is built
        try:
            return AutoModelForCausalLM.from_pretrained(self.model_path, dtype=DTYPES[self.dtype])
        finally:
            unset_hf_deepspeed_config()

    def param_bytes(self) -> int:
        """Bytes of model parameters this rank holds: its partitions under ZeRO-3, everything under ZeRO-2."""
        params = list(self.engine.module.parameters())
        if self.cfg.zero_stage == 3:
            return sum(p.ds_tensor.numel() * p.ds_tensor.element_size() for p in params)
        return sum(p.numel() * p.element_size() for p in params)

    def _ds_config(self, train: bool) -> dict:
        stage = self.cfg.zero_stage
        zero: dict = {"stage": stage}
        if stage == 3:
            zero["stage3_param_persistence_threshold"] = ZERO3_PERSISTENCE_THRESHOLD
        config = {
            "train_micro_batch_size_per_gpu": self.cfg.micro_batch_size,
            "gradient_accumulation_steps": 1,  # accumulation is driven by hand, see module docstring
            "train_batch_size": self.cfg.micro_batch_size * self.world_size,
            "zero_optimization": zero,
            "bf16": {"enabled": self.dtype == "bfloat16"},
            "fp16": {"enabled": self.dtype == "float16"},
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        if train:
            config["gradient_clipping"] = self.cfg.grad_clip
            config["zero_allow_untested_optimizer"] = True
        return config

    def _build_reference(self) -> torch.nn.Module:
        """Frozen copy of the initial weights; partitioned like the policy under ZeRO-3."""
        lm = self._load_lm().requires_grad_(False).eval()
        module = PolicyModule(lm, self.cfg.entropy_chunk_tokens)
        if self.cfg.zero_stage == 3:
            engine, *_ = deepspeed.initialize(model=module, config=self._ds_config(train=False))
            engine.eval()
            return engine
        return module.to(self.device)

    # ------------------------------------------------------------------ training

    def train_step(self, shard: TrainBatch) -> LearnerStats:
        """Behaviour pass (unless the update is on-policy), then one optimiser step per mini-batch;
        returns global statistics.

        ``shard`` is this rank's part of the batch (any split; mini-batches are formed globally by
        sample index). Its ``global_num_*`` fields are not used: each mini-batch's counts are
        computed from all shards. Scalars are global (the same on every rank); per-sample vectors
        are this rank's. Without the pass (``plan.needs_behaviour_pass``) the old log-probs and the
        entropy statistics are the training forward's, detached: the same values, one forward less.
        """
        start = time.perf_counter()
        shards = self._exchange_shard_info(shard)
        two_pass = needs_behaviour_pass(self.cfg.behaviour_pass, self.cfg.mini_batches_per_step, shards)
        behaviour = self._behaviour_pass(shard, plan_pass(shards, self.rank, self.cfg.micro_batch_size,
                                                           self.cfg.entropy_chunk_tokens), with_policy=two_pass)
        if shard.old_logp_BT is not None:
            old_logp_BT1 = shard.old_logp_BT.float()
        else:  # None without the pass: each micro-batch's own forward, which fills behaviour's logp/entropy
            old_logp_BT1 = behaviour["logp"] if two_pass else None
        minis = plan_update(shards, self.rank, self.cfg.mini_batches_per_step, self.cfg.micro_batch_size,
                            self.cfg.entropy_chunk_tokens)
        totals: dict[str, float] = {}
        grad_norms = []
        for mini in minis:
            if mini.num_tokens > 0:  # a globally empty mini-batch is skipped on every rank alike
                grad_norms.append(self._train_mini_batch(shard, mini, old_logp_BT1, behaviour, totals))
        self.policy_version += 1
        scalars = self._scalars(shard, behaviour, totals, grad_norms, time.perf_counter() - start)
        scalars["learner/behaviour_pass"] = float(two_pass)
        old_logp_BT1 = behaviour["logp"] if old_logp_BT1 is None else old_logp_BT1
        return self._per_sample_stats(shard, behaviour["entropy"], old_logp_BT1, scalars)

    def compute_logprobs(self, shard: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Current-policy ``(logp_BT1, entropy_BT1)`` of the shard's response tokens (0 elsewhere), CPU.

        No update; collective like every method. Entropy is exact, at each sample's temperature.
        """
        plan = plan_pass(self._exchange_shard_info(shard), self.rank, self.cfg.micro_batch_size,
                         self.cfg.entropy_chunk_tokens)
        out = self._behaviour_pass(shard, plan, with_reference=False)
        return out["logp"], out["entropy"]

    def _exchange_shard_info(self, shard: TrainBatch) -> list[ShardInfo]:
        mine = ShardInfo(sample_index=tuple(int(i) for i in shard.sample_index_B.tolist()),
                         num_tokens=tuple(int(n) for n in shard.loss_mask_BT.sum(dim=1).round().tolist()),
                         stored_old_logp=shard.old_logp_BT is not None)
        shards: list = [None] * self.world_size
        dist.all_gather_object(shards, mine)
        return shards

    def _inputs(self, shard: TrainBatch, rows: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """One micro-batch on the device, trimmed to its longest sequence; rows=() -> a placeholder."""
        if not rows:  # zero-weight pass: keeps this rank's collectives in step with the others
            return {"input_ids_BT": torch.zeros(1, 2, dtype=torch.long, device=self.device),
                    "attention_mask_BT": torch.ones(1, 2, dtype=torch.long, device=self.device),
                    "temperature_B": torch.ones(1, device=self.device),
                    "positions_BT": torch.zeros(1, 1, device=self.device)}
        index = torch.tensor(rows, dtype=torch.long)
        attention = shard.attention_mask_BT[index]
        used_T = attention.any(dim=0).nonzero()
        T = max(2, int(used_T.max()) + 1 if used_T.numel() else 2)  # drop all-padding right columns
        return {"input_ids_BT": shard.input_ids_BT[index, :T].to(self.device),
                "attention_mask_BT": attention[:, :T].to(self.device),
                "temperature_B": shard.temperature_B[index].float().to(self.device),
                "positions_BT": shard.loss_mask_BT[index, :T - 1].float().to(self.device)}

    @torch.no_grad()
    def _behaviour_pass(self, shard: TrainBatch, micro: tuple[MicroBatch, ...], with_reference: bool = True,
                        with_policy: bool = True) -> dict[str, torch.Tensor]:
        """Current-policy log-probs and exact entropies (and reference log-probs), [B, T-1] on CPU.

        ``with_policy=False`` runs only the reference model (nothing without one) and leaves logp and
        entropy at 0 for the training forward to fill in.
        """
        B, T1 = shard.loss_mask_BT.shape
        out = {"logp": torch.zeros(B, T1), "entropy": torch.zeros(B, T1)}
        reference = self.reference if with_reference else None
        if reference is not None:
            out["ref_logp"] = torch.zeros(B, T1)
        if not with_policy and reference is None:
            return out
        for mb in micro:
            inputs = self._inputs(shard, mb.rows)
            if with_policy:
                logp, entropy = self.engine(**inputs, num_chunks=mb.num_chunks)  # unbinds the stacked pair
                _write_rows(out["logp"], mb.rows, logp)
                _write_rows(out["entropy"], mb.rows, entropy)
            if reference is not None:
                _write_rows(out["ref_logp"], mb.rows, reference(**inputs, num_chunks=mb.num_chunks)[0])
        return out

    def _train_mini_batch(self, shard: TrainBatch, mini: MiniBatch, old_logp_BT1: Optional[torch.Tensor],
                          behaviour: dict[str, torch.Tensor], totals: dict[str, float]) -> float:
        """Forward/backward every micro-batch, then one optimiser step; adds local sums to ``totals``.

        ``old_logp_BT1`` None (no behaviour pass): each micro-batch's old log-probs are its own
        forward's, detached, and that forward's log-probs and entropies are written into
        ``behaviour``. Returns the global gradient norm (before clipping) of the step.
        """
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.policy_version * 1009 + self.rank)
        for m, mb in enumerate(mini.micro):
            self.engine.set_gradient_accumulation_boundary(m == len(mini.micro) - 1)
            inputs = self._inputs(shard, mb.rows)
            logp_BT1, entropy_BT1 = self.engine(**inputs, num_chunks=mb.num_chunks)
            if old_logp_BT1 is None:
                _write_rows(behaviour["logp"], mb.rows, logp_BT1)
                _write_rows(behaviour["entropy"], mb.rows, entropy_BT1)
            consts = self._loss_constants(shard, mb.rows, logp_BT1, old_logp_BT1, behaviour.get("ref_logp"))
            loss, diag = policy_loss(logp_BT1, consts["old_logp"], consts["adv"], inputs["positions_BT"],
                                     entropy_BT1, consts["coef"], self.loss_spec, mini.num_tokens,
                                     mini.num_seqs, ref_logp_BT=consts.get("ref_logp"), generator=generator)
            self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            _add(totals, "loss", float(loss.detach()))
            for key in ADDITIVE_DIAGNOSTICS:
                _add(totals, key, float(diag[key]))
            count = float(diag["cov_selected_count"])
            _add(totals, "cov_selected_count", count)
            _add(totals, "cov_weighted_sum", float(diag["cov_mean"]) * count)
            _add(totals, "coef_token_sum", float((consts["coef"][:, None] * inputs["positions_BT"]).sum()))
            _add(totals, "coef_token_count", float(inputs["positions_BT"].sum()))
        self.engine.step()
        return float(self.engine.get_global_grad_norm() or 0.0)

    def _loss_constants(self, shard: TrainBatch, rows: tuple[int, ...], logp_BT1: torch.Tensor,
                        old_logp_BT1: Optional[torch.Tensor], ref_logp_BT1: Optional[torch.Tensor]) -> dict:
        """Old/ref log-probs [b, T'] and advantages/coefficients [b] of the rows (zeros for a placeholder).

        ``old_logp_BT1`` None: the old log-probs are ``logp_BT1`` itself, detached (no behaviour pass).
        """
        shape = logp_BT1.shape
        if not rows:
            zeros = torch.zeros(shape, device=self.device)
            out = {"old_logp": zeros, "adv": torch.zeros(1, device=self.device),
                   "coef": torch.zeros(1, device=self.device)}
            return out | ({"ref_logp": zeros} if ref_logp_BT1 is not None else {})
        index, width = torch.tensor(rows), shape[1]
        old = logp_BT1.detach() if old_logp_BT1 is None else old_logp_BT1[index, :width].to(self.device)
        out = {"old_logp": old,
               "adv": shard.adv_B[index].float().to(self.device),
               "coef": shard.entropy_coef_B[index].float().to(self.device)}
        if ref_logp_BT1 is not None:
            out["ref_logp"] = ref_logp_BT1[index, :width].to(self.device)
        return out

    # ------------------------------------------------------------------ statistics

    def _scalars(self, shard: TrainBatch, behaviour: dict, totals: dict[str, float], grad_norms: list[float],
                 seconds: float) -> dict[str, float]:
        """Global scalars: sums over ranks; per-mini-batch values averaged over the mini-batches."""
        mask_BT1 = shard.loss_mask_BT.float()
        local = dict(totals, entropy_sum=float((behaviour["entropy"] * mask_BT1).sum()),
                     nll_sum=float((-behaviour["logp"] * mask_BT1).sum()), token_count=float(mask_BT1.sum()))
        summed = torch.tensor([local.get(k, 0.0) for k in SUMMED], dtype=torch.float64)
        dist.all_reduce(summed)
        g = dict(zip(SUMMED, summed.tolist()))
        seconds_max = torch.tensor([seconds], dtype=torch.float64)
        dist.all_reduce(seconds_max, op=dist.ReduceOp.MAX)
        n_mini, n_tok = max(len(grad_norms), 1), max(g["token_count"], 1.0)
        scalars = {f"learner/{k}": g[k] / n_mini for k in ("loss", *ADDITIVE_DIAGNOSTICS)}
        scalars.update({
            "learner/grad_norm": sum(grad_norms) / n_mini,
            "learner/cov_mean": g["cov_weighted_sum"] / max(g["cov_selected_count"], 1.0),
            "learner/entropy_coef_token_mean": g["coef_token_sum"] / max(g["coef_token_count"], 1.0),
            "learner/num_tokens": g["token_count"],
            "learner/mini_batches": float(len(grad_norms)),
            "entropy/token_mean": g["entropy_sum"] / n_tok,
            "entropy/nll_sampled_mean": g["nll_sum"] / n_tok,
            "perf/learner_seconds": float(seconds_max.item()),
        })
        return scalars

    def _per_sample_stats(self, shard: TrainBatch, entropy_BT1: torch.Tensor, old_logp_BT1: torch.Tensor,
                          scalars: dict[str, float]) -> LearnerStats:
        """Global scalars plus this rank's per-sample vectors, in shard row order (LearnerGroup
        concatenates the ranks'). A sample without response tokens reports entropy 0 and 0 tokens."""
        mask_BT1 = shard.loss_mask_BT > 0
        num_tokens_B = mask_BT1.sum(dim=1)
        entropy_mean_B = (entropy_BT1 * mask_BT1).sum(dim=1) / num_tokens_B.clamp(min=1)
        return LearnerStats(
            policy_version=self.policy_version, scalars=scalars,
            sample_index=tuple(int(i) for i in shard.sample_index_B.tolist()),
            entropy_token_mean_per_sample=tuple(entropy_mean_B.tolist()),
            num_tokens_per_sample=tuple(int(n) for n in num_tokens_B.tolist()),
            old_logp_per_sample=tuple(tuple(old_logp_BT1[b][mask_BT1[b]].tolist())
                                      for b in range(shard.batch_size)))

    # ------------------------------------------------------------------ weights and checkpoints

    def full_state_dict_bytes(self) -> bytes:
        """safetensors bytes of the full HF state dict on rank 0 (b"" elsewhere); names as HF's.

        Under ZeRO-3 each tensor is gathered in turn (so only one is whole at a time); tied tensors
        are saved under both names as separate copies (safetensors refuses shared storage).
        """
        lm = self.engine.module.lm
        tensors = {}
        for name, tensor in lm.state_dict(keep_vars=True).items():
            if hasattr(tensor, "ds_id"):  # a ZeRO-3 partitioned parameter
                with deepspeed.zero.GatheredParameters([tensor], modifier_rank=None):
                    copy = tensor.detach().to("cpu", copy=True).contiguous() if self.rank == 0 else None
            else:
                copy = tensor.detach().to("cpu", copy=True).contiguous() if self.rank == 0 else None
            if copy is not None:
                tensors[name] = copy
        return safetensors_save(tensors) if self.rank == 0 else b""

    def save_checkpoint(self, path: str) -> None:
        """DeepSpeed checkpoint (weights, optimiser, policy_version) under directory ``path``."""
        self.engine.save_checkpoint(path, client_state={"policy_version": self.policy_version})

    def load_checkpoint(self, path: str) -> None:
        """Resume from the latest checkpoint under ``path`` (as written by save_checkpoint)."""
        load_path, client_state = self.engine.load_checkpoint(path)
        if load_path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {path!r}")
        self.policy_version = int(client_state["policy_version"])


def _add(totals: dict[str, float], key: str, value: float) -> None:
    totals[key] = totals.get(key, 0.0) + value


def _write_rows(out_BT1: torch.Tensor, rows: tuple[int, ...], values_bT: torch.Tensor) -> None:
    """``out_BT1[rows, :T']`` = ``values_bT`` (detached, float32, on CPU); nothing for a placeholder."""
    if rows:
        out_BT1[torch.tensor(rows), :values_bT.shape[1]] = values_bT.detach().float().cpu()
