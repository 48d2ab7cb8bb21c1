"""The dashboard at ``/`` in a real headless Chromium against ``stockmon serve`` and the KIS mock."""

from __future__ import annotations

import pytest
from serve_support import Service

pytestmark = pytest.mark.slow


def test_dashboard_shows_live_prices_and_adds_a_key(service: Service, chromium: str) -> None:
    """The page asks the key once, shows changing prices, and a key added there gets its own row."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            prompts: list[str] = []

            def answer(dialog: object) -> None:
                prompts.append("asked")
                dialog.accept(service.key)  # type: ignore[attr-defined]

            page.on("dialog", answer)
            page.goto(service.url + "/")
            price = page.locator('tr[data-key="005930"] td.price')
            price.wait_for(timeout=10_000)
            page.wait_for_function(
                "() => document.querySelector('tr[data-key=\"005930\"] td.price').textContent !== ''",
                timeout=10_000,
            )
            first = price.text_content()
            page.wait_for_function(
                "(p) => document.querySelector('tr[data-key=\"005930\"] td.price').textContent !== p",
                arg=first,
                timeout=15_000,
            )
            page.wait_for_function(
                "() => document.getElementById('st-socket').textContent.includes('open')",
                timeout=10_000,
            )
            page.select_option("#add-tr", "H0STCNT0")
            page.fill("#add-key", "000660")
            page.click("#add button")
            page.wait_for_function(
                "() => { const c = document.querySelector('tr[data-key=\"000660\"] td.price');"
                " return c !== null && c.textContent !== ''; }",
                timeout=15_000,
            )
            page.reload()
            page.locator('tr[data-key="005930"]').wait_for(timeout=10_000)
            assert prompts == ["asked"]  # kept for the tab: not asked again after a reload
            assert service.key not in page.url
        finally:
            browser.close()
