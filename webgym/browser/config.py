"""`BrowserConfig`: how Chromium is launched and how long each page operation may take.

Imports nothing from webgym.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from webgym.browser.errors import ChromiumNotFound

DEFAULT_EXECUTABLE = "/usr/bin/chromium"
EXECUTABLE_ENV_VAR = "WEBGYM_CHROMIUM"

DEFAULT_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--disable-extensions",
)


def _default_executable() -> str:
    return os.environ.get(EXECUTABLE_ENV_VAR) or DEFAULT_EXECUTABLE


@dataclass(frozen=True)
class BrowserConfig:
    """Launch and timeout settings.

    Launch settings (`executable_path`, `headless`, `args`, `launch_timeout_s`) are shared by
    every tab of one `BrowserHost`; the others apply per tab.
    ``screenshot_format`` is "jpeg" by default: cheaper to encode and decode than PNG, and two
    captures of an unchanged page decode to identical pixels (JPEG encoding is deterministic).
    """

    executable_path: str = field(default_factory=_default_executable)
    headless: bool = True
    args: tuple[str, ...] = DEFAULT_ARGS
    launch_timeout_s: float = 10.0
    navigation_timeout_s: float = 10.0
    action_timeout_s: float = 5.0
    screenshot_timeout_s: float = 5.0
    viewport: tuple[int, int] = (1280, 720)  # (width, height)
    java_script_enabled: bool = True
    screenshot_format: str = "jpeg"  # "jpeg" or "png"
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.screenshot_format not in ("jpeg", "png"):
            raise ValueError(
                f"screenshot_format must be 'jpeg' or 'png', not {self.screenshot_format!r}"
            )

    def launch_key(self) -> tuple:
        """The settings that must agree for two tabs to share one browser."""
        return (self.executable_path, self.headless, tuple(self.args))

    def check_executable(self) -> None:
        """Raise `ChromiumNotFound` with install advice if the executable is missing."""
        path = self.executable_path
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ChromiumNotFound(
                f"Chromium not found at {path}: install Debian's package "
                f"(apt-get install -y chromium) or set {EXECUTABLE_ENV_VAR}"
            )
