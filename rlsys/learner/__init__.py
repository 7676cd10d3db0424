"""The learner: DeepSpeed ZeRO ranks that turn TrainBatches into optimiser steps.

Import-light: importing this package loads neither deepspeed nor the model code. ``Learner`` is
resolved lazily from ``rlsys.learner.engine`` (the only module that imports deepspeed).
"""
from __future__ import annotations


def __getattr__(name: str):
    if name == "Learner":
        from rlsys.learner.engine import Learner

        return Learner
    raise AttributeError(f"module 'rlsys.learner' has no attribute {name!r}")
