"""Headless Chromium from Debian's ``chromium`` package, driven by Playwright (which downloads no browser
of its own here): one browser for the session, a page per test, and what a page logged."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

#: Screenshots the browser tests keep (CI keeps the folder as the run's artefacts).
ARTIFACTS = Path(os.environ.get("BATCH_INPAINT_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Opened:
    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind in ("error", "pageerror")]

    def images(self) -> list[tuple[str, int]]:
        """Every image element: its source and natural width (0: it did not load)."""
        return [tuple(x) for x in self.page.evaluate("[...document.images].map(i => [i.src, i.naturalWidth])")]

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def open_page(browser: Any, url: str) -> Opened:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    opened = Opened(page)
    page.on("console", lambda m: opened.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: opened.console.append(("pageerror", str(e))))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.wait_for_load_state("load")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=30_000)
    return opened


def launch() -> Iterator[Any]:
    """The browser for a module (the `browser` fixture): skipped where Chromium is missing, except in
    CI (`.ci/run` installs it), where that fails."""
    exe = chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report's tests: apt-get install chromium")
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()
