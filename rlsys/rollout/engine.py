"""The vLLM rollout engine: samples responses and serves the weights the learner pushes.

``VLLMRolloutEngine`` is a plain class (the orchestration layer wraps it in a Ray actor). This is
the ONE module of rlsys that imports vllm; it must not import ray or deepspeed. Weight transfer has
two strategies (``RolloutConfig.weight_transfer``):

* ``serialized`` (CPU and GPU): the learner sends ``serialize_state_dict`` bytes of the full HF
  state dict; ``load_weights`` hands them to every vLLM worker (same host) in ONE ``collective_rpc``.
* ``nccl`` (GPU only): vLLM's own NCCL weight-transfer engine. The learner broadcasts tensors from
  GPU memory (``NcclWeightSender`` below, the trainer half, kept here so vllm stays fenced) and
  the engine receives them through ``init_weight_transfer`` / ``start_weight_update`` /
  ``receive_weights`` / ``finish_weight_update``. ``load_weights`` keeps working in this mode.

Log-probs: the engine runs with ``logprobs_mode="processed_logprobs"``, so a sampled token's
log-prob is ``log_softmax(logits / T)`` (after top-p masking, renormalised over the nucleus),
i.e. the learner's ``log_softmax(logits / T)`` exactly when ``top_p == 1``. vLLM's default
(``raw_logprobs``) would return ``log_softmax(logits)`` whatever the temperature.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Optional, Protocol

import torch

from rlsys.console import verbose
from rlsys.rollout.logs import configure_vllm_logging

configure_vllm_logging()  # vLLM sets up its loggers once, on import: the level must be chosen first

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402

from rlsys.config import RolloutConfig  # noqa: E402
from rlsys.rollout import WEIGHT_TRANSFER_STRATEGIES  # noqa: E402
from rlsys.rollout.cpu_binding import omp_threads_bind  # noqa: E402
from rlsys.types import Sample, SamplingRequest

WORKER_EXTENSION = "rlsys.rollout.worker_ext.RlsysWorkerExtension"
LOGPROBS_MODE = "processed_logprobs"  # log-probs of the temperature-scaled distribution (see above)
MAX_REQUEST_SEED = 2**31 - 1  # vLLM gives the n children of a request seeds seed+0..n-1, each < 2**31


class VLLMRolloutEngine:
    """One vLLM ``LLM`` serving one copy of the policy.

    ``policy_version`` is the version of the weights being served: 0 at start (the weights at
    ``model_path``), then whatever ``load_weights`` / ``finish_weight_update`` last set.
    Timings of the last start / weight load are kept in ``start_seconds`` / ``last_load_seconds``.
    """

    def __init__(self, cfg: RolloutConfig, model_path: str, worker_index: int = 0,
                 dtype: str = "float32"):
        if cfg.weight_transfer not in WEIGHT_TRANSFER_STRATEGIES:
            raise ValueError(f"rollout.weight_transfer={cfg.weight_transfer!r}: must be one of "
                             f"{WEIGHT_TRANSFER_STRATEGIES}")
        self.cfg = cfg
        self.worker_index = worker_index
        self.policy_version = 0
        self.last_load_seconds = 0.0
        _set_platform_env(cfg, worker_index)
        start = time.perf_counter()
        self._llm = LLM(**_llm_kwargs(cfg, model_path, worker_index, dtype))
        self.start_seconds = time.perf_counter() - start
        self._stop_token_ids = _eos_token_ids(self._llm)

    # ------------------------------------------------------------------ sampling

    def generate(self, requests: list[SamplingRequest],
                 policy_version: Optional[int] = None) -> list[Sample]:
        """Sample ``req.n`` responses for every request in ONE ``llm.generate`` call.

        Returns the samples request by request, the ``n`` of one request consecutively. Each
        sample's ``response_logprobs[t]`` is the log-prob of ``response_token_ids[t]`` under the
        served weights at the request's temperature (see the module docstring). Generation stops at
        the model's EOS token id(s) (kept as the last response token, finish_reason "stop") or at
        ``cfg.max_new_tokens`` (finish_reason "length"). ``policy_version``, when given, must equal
        the served version: a mismatch means a weight sync was missed.
        """
        self._check_version(policy_version)
        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt.token_ids)) for r in requests]
        params = [self._sampling_params(r) for r in requests]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        return [sample for req, out in zip(requests, outputs) for sample in self._samples(req, out)]

    def sequence_logprobs(self, token_ids: list[list[int]], prompt_lens: list[int]) -> list[list[float]]:
        """Log-prob (temperature 1) of each token at position >= ``prompt_lens[i]`` of ``token_ids[i]``.

        Scores the sequences as prompts (``prompt_logprobs=0``), so it shows the weights actually
        served; ``result[i]`` has ``len(token_ids[i]) - prompt_lens[i]`` entries.
        """
        if any(not 1 <= p <= len(ids) for ids, p in zip(token_ids, prompt_lens)):
            raise ValueError("every prompt_len must be in [1, len(token_ids)]")
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0, detokenize=False)
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in token_ids]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        return [[out.prompt_logprobs[t][ids[t]].logprob for t in range(p, len(ids))]
                for ids, p, out in zip(token_ids, prompt_lens, outputs)]

    def _sampling_params(self, req: SamplingRequest) -> SamplingParams:
        if not 0 <= req.seed <= MAX_REQUEST_SEED - req.n:
            raise ValueError(f"request seed {req.seed} with n={req.n} leaves [0, 2**31)")
        return SamplingParams(
            n=req.n, temperature=req.temperature, top_p=self.cfg.top_p,
            max_tokens=self.cfg.max_new_tokens, logprobs=0,  # 0 = only the sampled token's
            stop_token_ids=self._stop_token_ids, seed=req.seed,
        )

    def _samples(self, req: SamplingRequest, output) -> list[Sample]:
        prompt_ids = tuple(req.prompt.token_ids)
        samples = []
        for completion in output.outputs:
            ids = tuple(completion.token_ids)
            logprobs = tuple(step[tok].logprob for tok, step in zip(ids, completion.logprobs))
            samples.append(Sample(
                prompt_id=req.prompt.prompt_id, prompt_token_ids=prompt_ids, response_token_ids=ids,
                response_logprobs=logprobs, response_text=completion.text,
                finish_reason=_finish_reason(completion.finish_reason), temperature=req.temperature,
                source=req.source, policy_version=self.policy_version, worker_index=self.worker_index,
            ))
        return samples

    # ------------------------------------------------------------------ weights: serialized

    def load_weights(self, blob: bytes, policy_version: int) -> int:
        """Serve the full HF state dict in ``blob`` (``serialize_state_dict`` bytes) from now on.

        The bytes go to a temporary same-host file (``/dev/shm`` when it has room) and ONE RPC gives
        every worker its path: vLLM's RPC queues move large byte strings at only ~60 MB/s on CPU.
        Then the prefix cache is dropped (its KV was computed with the old weights). Returns the
        new ``policy_version``.
        """
        self._check_new_version(policy_version)
        start = time.perf_counter()
        with tempfile.NamedTemporaryFile(dir=_scratch_dir(len(blob)), suffix=".safetensors") as f:
            f.write(blob)
            f.flush()
            self._llm.collective_rpc("rlsys_load_weights", args=(f.name,))
        self._after_weight_update(policy_version)
        self.last_load_seconds = time.perf_counter() - start
        return self.policy_version

    def weight_checksum(self) -> float:
        """Sum of all served parameters (float64) on the first worker: a debugging aid."""
        return float(self._llm.collective_rpc("rlsys_weight_checksum")[0])

    # ------------------------------------------------------------------ weights: nccl (GPU)

    def init_weight_transfer(self, init_info: dict[str, Any]) -> None:
        """Join the learner's NCCL group (blocks until the learner's sender joins too).

        ``init_info`` is what vLLM's trainer engine sends every engine; its ``rank_offset`` is the
        group rank of engine 0's first worker, so this engine shifts it by its own index.
        """
        self._require_nccl()
        tp_size = self._llm.llm_engine.vllm_config.parallel_config.world_size
        info = dict(init_info, rank_offset=init_info["rank_offset"] + self.worker_index * tp_size)
        self._llm.init_weight_transfer_engine({"init_info": info})

    def start_weight_update(self) -> None:
        self._require_nccl()
        self._llm.start_weight_update()

    def receive_weights(self, update_info: dict[str, Any]) -> None:
        """Receive one broadcast (names/dtypes/shapes in ``update_info``); runs while the learner sends."""
        self._require_nccl()
        self._llm.update_weights({"update_info": update_info})

    def finish_weight_update(self, policy_version: int) -> int:
        self._require_nccl()
        self._check_new_version(policy_version)
        self._llm.finish_weight_update()
        self._after_weight_update(policy_version)
        return self.policy_version

    # ------------------------------------------------------------------ housekeeping

    def close(self) -> None:
        """Stop vLLM's engine-core process; the engine is unusable afterwards."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            engine_core = getattr(llm.llm_engine, "engine_core", None)
            if engine_core is not None:
                engine_core.shutdown()
            del llm

    def _check_new_version(self, policy_version: int) -> None:
        if policy_version < self.policy_version:
            raise ValueError(f"policy_version {policy_version} < served version {self.policy_version}")

    def _after_weight_update(self, policy_version: int) -> None:
        self._llm.reset_prefix_cache()
        self.policy_version = policy_version

    def _check_version(self, policy_version: Optional[int]) -> None:
        if policy_version is not None and policy_version != self.policy_version:
            raise RuntimeError(f"rollout worker {self.worker_index} serves policy_version "
                               f"{self.policy_version}, caller expects {policy_version}")

    def _require_nccl(self) -> None:
        if self.cfg.weight_transfer != "nccl":
            raise RuntimeError("NCCL weight transfer needs rollout.weight_transfer=nccl at engine start")


# ---------------------------------------------------------------------- helpers


def _set_platform_env(cfg: RolloutConfig, worker_index: int) -> None:
    """vLLM reads these from the environment of the process that spawns its workers."""
    if not torch.cuda.is_available():
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_space_gb)
        bind = omp_threads_bind(cfg.cpu_threads_bind, worker_index, cfg.num_cpus_per_worker, os.sched_getaffinity(0))
        if bind is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
    # CUDA cannot be re-initialised in a forked child; spawn is safe everywhere.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


def _scratch_dir(nbytes: int) -> str:
    """Memory-backed /dev/shm when it can hold the blob twice over, else the temp dir."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 2 * nbytes:
        return shm
    return tempfile.gettempdir()


def _llm_kwargs(cfg: RolloutConfig, model_path: str, worker_index: int, dtype: str) -> dict:
    kwargs = dict(
        model=model_path, dtype=dtype, seed=cfg.seed + worker_index,
        gpu_memory_utilization=cfg.gpu_memory_utilization, max_model_len=cfg.max_model_len,
        enforce_eager=cfg.enforce_eager, worker_extension_cls=WORKER_EXTENSION,
        logprobs_mode=LOGPROBS_MODE, use_tqdm_on_load=verbose(),
    )
    if cfg.weight_transfer == "nccl":
        kwargs["weight_transfer_config"] = {"backend": "nccl"}
    return kwargs


def _eos_token_ids(llm: LLM) -> list[int]:
    """EOS ids of the tokenizer and the model config: generation stops on token ids, not text."""
    ids = {llm.get_tokenizer().eos_token_id}
    config_eos = getattr(llm.llm_engine.model_config.hf_config, "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, (list, tuple)) else [config_eos])
    ids.discard(None)
    if not ids:
        raise ValueError("the model has no eos_token_id: generation could only stop at max_new_tokens")
    return sorted(ids)


def _finish_reason(reason: Optional[str]) -> str:
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a sample with reason {reason!r} (aborted?)")
    return reason


# ---------------------------------------------------------------------- learner side of nccl


class WeightSyncClient(Protocol):
    """What ``NcclWeightSender`` drives: each call fans out to every rollout engine.

    The orchestration layer implements it over the engine actors: ``init_weight_transfer_engine``
    -> ``init_weight_transfer``, ``start_weight_update`` -> ``start_weight_update``,
    ``update_weights`` -> ``receive_weights`` (returns only after every engine received; vLLM calls
    it on a side thread while the sender broadcasts), ``finish_weight_update(weight_version)`` ->
    ``finish_weight_update(int(weight_version))``.
    """

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None: ...
    def start_weight_update(self) -> None: ...
    def update_weights(self, update_info: dict[str, Any]) -> None: ...
    def finish_weight_update(self, weight_version: Optional[str] = None) -> None: ...


class NcclWeightSender:
    """Learner rank 0's half of the ``nccl`` strategy (GPU only): broadcast weights to the engines.

    ``module.named_parameters()`` must yield full (gathered, e.g. ZeRO <= 2) tensors under HF
    names. Each engine holds one worker (no tensor parallelism), so the NCCL group is 1 sender +
    ``num_engines``. Construction blocks until every engine has joined through
    ``client.init_weight_transfer_engine``; vLLM's trainer engine drives the whole round trip.
    """

    def __init__(self, client: WeightSyncClient, module: torch.nn.Module, master_address: str,
                 master_port: int, num_engines: int):
        from vllm.distributed.weight_transfer import ModuleSource, WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        self._client = _VersionedClient(client)
        info = NCCLTrainerInitInfo(master_address=master_address, master_port=master_port,
                                   world_size=1 + num_engines, rank=0)
        self._sender = WeightTransferTrainerFactory.trainer_init(
            info, client=self._client, source=ModuleSource(module))

    def send(self, policy_version: int) -> int:
        """Broadcast every parameter; returns once all engines serve ``policy_version``."""
        self._client.version = policy_version
        self._sender.send_weights()
        return policy_version

    def close(self) -> None:
        self._sender.shutdown()


class _VersionedClient:
    """vLLM's trainer engine calls ``finish_weight_update()`` without a version: supply ours."""

    def __init__(self, inner: WeightSyncClient):
        self.inner = inner
        self.version = 0

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.inner.init_weight_transfer_engine(init_info)

    def start_weight_update(self) -> None:
        self.inner.start_weight_update()

    def update_weights(self, update_info: dict[str, Any]) -> None:
        self.inner.update_weights(update_info)

    def finish_weight_update(self, weight_version: Optional[str] = None) -> None:
        self.inner.finish_weight_update(str(self.version))
