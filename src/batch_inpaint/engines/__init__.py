"""Engines: the Clipdrop API and a local OpenCV inpainter, behind one small interface, and a test double."""

from .base import Engine, InpaintRequest, InpaintResult, clipdrop_shaping, local_shaping
from .fake import FakeEngine

__all__ = ["Engine", "FakeEngine", "InpaintRequest", "InpaintResult", "clipdrop_shaping", "local_shaping"]
