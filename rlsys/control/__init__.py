"""Entropy controllers: small state machines turning per-prompt statistics into per-prompt directives.

``make_controller`` picks one by ``EntropyControlConfig.controller``. Plain classes only; the Ray
actor wrapper lives in rlsys/orchestration. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from typing import Callable

from rlsys.config import EntropyControlConfig
from rlsys.control.aer import AERController
from rlsys.control.base import LEARNER_ENTROPY_KEY, EntropyController
from rlsys.control.hora import HORAController
from rlsys.control.replay import ReplayBuffer
from rlsys.control.simple import AsymGRPOController, FixedController, NoneController, SkyworkController
from rlsys.control.uec import UECController

__all__ = [
    "AERController", "AsymGRPOController", "CONTROLLERS", "EntropyController", "FixedController",
    "HORAController", "LEARNER_ENTROPY_KEY", "NoneController", "ReplayBuffer", "SkyworkController",
    "UECController", "make_controller",
]

# name -> builder(cfg, samples_per_prompt G, prompts_per_step P, regular temperature)
CONTROLLERS: dict[str, Callable[[EntropyControlConfig, int, int, float], EntropyController]] = {
    "none": lambda cfg, G, P, T: NoneController(),
    "asymgrpo": lambda cfg, G, P, T: AsymGRPOController(),
    "fixed": lambda cfg, G, P, T: FixedController(cfg.coef),
    "skywork": lambda cfg, G, P, T: SkyworkController(cfg.coef, cfg.target_entropy, cfg.coef_step, cfg.coef_min,
                                                      cfg.coef_max),
    "aer": lambda cfg, G, P, T: AERController(cfg),
    "uec_rl": lambda cfg, G, P, T: UECController(cfg, G, P, T),
    "hora": lambda cfg, G, P, T: HORAController(cfg, G, P, T),
}


def make_controller(cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float = 1.0) -> EntropyController:
    """The controller named by ``cfg.controller`` (``CONTROLLERS``).

    ``samples_per_prompt`` (G) and ``prompts_per_step`` (P) size UEC-RL's replay unit and capacity and
    HORA's default budget P * (G - n_probe); ``regular_temperature`` (rollout.temperature) is what UEC-RL
    reports for prompts it leaves alone and what HORA's extra samples are drawn at.
    """
    build = CONTROLLERS.get(cfg.controller)
    if build is None:
        raise ValueError(f"entropy_control.controller={cfg.controller!r}: expected {' | '.join(CONTROLLERS)}")
    return build(cfg, samples_per_prompt, prompts_per_step, regular_temperature)
