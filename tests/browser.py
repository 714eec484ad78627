"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright (no browser
download), as a pytest fixture ``page`` and a ``sign_in`` helper."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import sync_playwright

# Playwright's sync API runs an event loop in the test's thread; Django would then refuse the
# ORM calls a test makes between page actions. The loop is Playwright's, not the app's.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium_page(*, height: int = 900, timeout_ms: int = 60_000) -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        tab = browser.new_context(viewport={"width": 1280, "height": height}).new_page()
        tab.set_default_timeout(timeout_ms)
        try:
            yield tab
        finally:
            browser.close()


def sign_in(page: Any, base: str, username: str = "alice", password: str = "alice-pass-123"
            ) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
