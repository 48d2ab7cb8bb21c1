"""The dashboard at ``/`` in a real headless Chromium against ``stockmon serve`` and the KIS mock."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from serve_support import Service, start_service

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


def test_dashboard_shows_a_broker_stall_and_its_end(tmp_path: Path, chromium: str) -> None:
    """The broker goes silent past a ping interval: the page says 'stalled', then recovers."""
    from playwright.sync_api import sync_playwright

    runs = start_service(tmp_path, tick_rate_hz=2.0, time_scale=20.0)
    service = next(runs)
    interval = service.spec.clause("KA-PING").number("interval_s")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.on("dialog", lambda d: d.accept(service.key))  # type: ignore[attr-defined]
                page.goto(service.url + "/")
                inbound = page.locator("#st-inbound")
                page.wait_for_function(
                    "() => document.getElementById('st-inbound').textContent.includes('ago')",
                    timeout=10_000,
                )
                assert "stalled" not in (inbound.get_attribute("class") or "")
                httpx.post(
                    service.mock.rest_url + "/_mock/faults/stall",
                    json={"seconds": 4 * interval},
                ).raise_for_status()
                page.wait_for_function(
                    "() => document.getElementById('st-inbound').classList.contains('stalled')",
                    timeout=15_000,
                )
                assert "stalled: no frame for" in (inbound.text_content() or "")
                assert page.locator('tr[data-key="005930"].stale').count() == 1
                page.wait_for_function(
                    "() => !document.getElementById('st-inbound').classList.contains('stalled')",
                    timeout=20_000,
                )
            finally:
                browser.close()
    finally:
        runs.close()
