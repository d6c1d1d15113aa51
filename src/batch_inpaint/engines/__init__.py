"""Engines: the Clipdrop API and a local OpenCV inpainter, behind one small interface."""

from .base import Engine, InpaintRequest, InpaintResult
from .fake import FakeEngine

__all__ = ["Engine", "FakeEngine", "InpaintRequest", "InpaintResult"]
