"""Entropy controllers: small state machines turning per-prompt statistics into per-prompt directives.

``make_controller`` picks one by ``EntropyControlConfig.controller``. Plain classes only; the Ray
actor wrapper lives in rlsys/orchestration. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from rlsys.config import EntropyControlConfig
from rlsys.control.aer import AERController
from rlsys.control.base import LEARNER_ENTROPY_KEY, ControllerSizing, EntropyController
from rlsys.control.hora import HORAController
from rlsys.control.replay import ReplayBuffer
from rlsys.control.simple import AsymGRPOController, FixedController, NoneController, SkyworkController
from rlsys.control.uec import UECController

__all__ = [
    "AERController", "AsymGRPOController", "CONTROLLERS", "ControllerSizing", "EntropyController", "FixedController",
    "HORAController", "LEARNER_ENTROPY_KEY", "NoneController", "ReplayBuffer", "SkyworkController",
    "UECController", "controller_class", "make_controller",
]

# entropy_control.controller -> class. Each class builds itself (``from_config``) and says what the driver
# sizes for it (``regular_samples_per_prompt``, ``replay_capacity``, ``uses_batch_buffer``: rlsys.control.base).
CONTROLLERS: dict[str, type[EntropyController]] = {
    cls.name: cls for cls in (NoneController, AsymGRPOController, FixedController, SkyworkController, AERController,
                              UECController, HORAController)
}


def make_controller(cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float = 1.0) -> EntropyController:
    """The controller named by ``cfg.controller`` (``CONTROLLERS``).

    ``samples_per_prompt`` (G) and ``prompts_per_step`` (P) size HORA's default budget P * (G - n_probe);
    ``regular_temperature`` (rollout.temperature) is what UEC-RL reports for prompts it leaves alone and
    what HORA's extra samples are drawn at.
    """
    return controller_class(cfg).from_config(cfg, samples_per_prompt, prompts_per_step, regular_temperature)


def controller_class(cfg: EntropyControlConfig) -> type[EntropyController]:
    """The class registered under ``cfg.controller`` (``CONTROLLERS``)."""
    cls = CONTROLLERS.get(cfg.controller)
    if cls is None:
        raise ValueError(f"entropy_control.controller={cfg.controller!r}: expected {' | '.join(CONTROLLERS)}")
    return cls
