"""Limiters: who may send when. `ProcessLimiter` paces one run; `Unlimited` does not pace at all."""

from .base import Limiter, Unlimited
from .pace import Pace, Slowdown
from .process import ProcessLimiter

__all__ = ["Limiter", "Pace", "ProcessLimiter", "Slowdown", "Unlimited"]
