"""The web console's browser tests: one real control plane (``gpucloud up`` with two simulated
4 x H100 nodes), two funded tenants, and Debian's Chromium driven by Playwright.

Without /usr/bin/chromium (or Playwright) these tests skip, saying so, unless
GPUCLOUD_REQUIRE_BROWSER=1 (CI sets it), when they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gpucloud.client.client import Client
from tests.servers import free_port, kill_job_processes, start_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path(os.environ.get("GPUCLOUD_CHROMIUM", "/usr/bin/chromium"))
REQUIRE = os.environ.get("GPUCLOUD_REQUIRE_BROWSER") == "1"
SCREENSHOTS = Path(
    os.environ.get("GPUCLOUD_SCREENSHOTS", Path(__file__).parents[2] / "docs" / "screenshots")
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--metrics-recording-only",
    "--password-store=basic",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _unavailable(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"a browser is required (GPUCLOUD_REQUIRE_BROWSER=1): {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found: install Debian's Chromium with "
                     "'apt-get install -y chromium' (or set GPUCLOUD_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Console:
    url: str
    admin_token: str
    ann: str  # a member of tenant acme
    bob: str  # a member of tenant beta
    data_dir: Path

    def sdk(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.admin_token)


@pytest.fixture(scope="session")
def console(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    base = tmp_path_factory.mktemp("console")
    data_dir = base / "data"
    server = start_server(data_dir, free_port(), "--simulate-gpus", "4xH100,4xH100",
                          "--stop-grace-s", "2")
    try:
        with Client(server.url, server.token) as admin:
            tokens = {}
            for tenant, user in (("acme", "ann"), ("beta", "bob")):
                admin.create_tenant(tenant)
                tokens[user] = admin.create_user(user, tenant=tenant).token
                admin.topup(tenant, "5000", ref=f"{tenant}-first")
        yield Console(server.url, server.token, tokens["ann"], tokens["bob"], data_dir)
    finally:
        server.stop()
        kill_job_processes(data_dir)


@pytest.fixture
def context(browser: Browser, console: Console) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=console.url, viewport=DESKTOP)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


def sign_in(page: Page, token: str, path: str = "/") -> None:
    """Sign in through the form, with the keyboard only (type the token, press Enter)."""
    page.goto(path)
    page.get_by_label("API token").fill(token)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)


def screenshot(page: Page, name: str, **options: Any) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path
