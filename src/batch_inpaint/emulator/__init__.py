"""A local stand-in for the Clipdrop cleanup API: auth, credits, rate limit, validation and faults."""

from .app import EmulatorConfig, create_app
from .server import serve

__all__ = ["EmulatorConfig", "create_app", "serve"]
