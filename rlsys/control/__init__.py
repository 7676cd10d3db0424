"""Entropy controllers: small state machines turning per-prompt statistics into per-prompt directives.

``make_controller`` picks one by ``EntropyControlConfig.controller``. Plain classes only; the Ray
actor wrapper lives in rlsys/orchestration. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from rlsys.config import EntropyControlConfig
from rlsys.control.aer import AERController
from rlsys.control.base import LEARNER_ENTROPY_KEY, EntropyController
from rlsys.control.replay import ReplayBuffer
from rlsys.control.simple import AsymGRPOController, FixedController, NoneController, SkyworkController
from rlsys.control.uec import UECController

__all__ = [
    "AERController", "AsymGRPOController", "EntropyController", "FixedController", "LEARNER_ENTROPY_KEY",
    "NoneController", "ReplayBuffer", "SkyworkController", "UECController", "make_controller",
]


def make_controller(cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float = 1.0) -> EntropyController:
    """The controller named by ``cfg.controller``.

    ``samples_per_prompt`` (G) and ``prompts_per_step`` (P) size UEC-RL's replay unit and capacity;
    ``regular_temperature`` (rollout.temperature) is what UEC-RL reports for prompts it leaves alone.
    """
    name = cfg.controller
    if name == "none":
        return NoneController()
    if name == "asymgrpo":
        return AsymGRPOController()
    if name == "fixed":
        return FixedController(cfg.coef)
    if name == "skywork":
        return SkyworkController(cfg.coef, cfg.target_entropy, cfg.coef_step, cfg.coef_min, cfg.coef_max)
    if name == "aer":
        return AERController(cfg)
    if name == "uec_rl":
        return UECController(cfg, samples_per_prompt, prompts_per_step, regular_temperature)
    raise ValueError(f"entropy_control.controller={name!r}: expected none | fixed | skywork | aer | "
                     f"uec_rl | asymgrpo")
