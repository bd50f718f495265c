"""The operations console in a real browser (Debian's headless Chromium through its
chromedriver): an agency key cannot enter; an operator signs in, sees a dead letter
the follow-up service really refused, redrives it, and the record is applied once
and audited. The session cookie is HttpOnly and SameSite=Strict, and an action
without the session's CSRF token is refused. A screenshot of the pipeline page is
saved to .local/screenshots/console-pipeline.png."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.factories import case_created
from tests.helpers import DEMO_KEYS, free_port, poll_until
from tests.ops.conftest import Followup, Kafka, Ops
from tests.ops.test_redrive import TRIGGERS, _applied, _outcome

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / ".local" / "screenshots" / "console-pipeline.png"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is not installed: deploy/local/browser.sh install", pytrace=False)
    os.environ["SE_OFFLINE"] = "true"  # Selenium never downloads a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
async def console(ops: Ops) -> AsyncIterator[str]:
    """The ops app (already started by its fixture) served over HTTP for the browser."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(ops.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await poll_until(lambda: _started(server), bool, timeout=10, what="the console served")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started


async def _in(browser: WebDriver, step: Any, *args: Any) -> Any:
    """A blocking WebDriver call, off the event loop that serves the console."""
    return await asyncio.to_thread(step, *args)


def _sign_in(browser: WebDriver, url: str, key: str) -> None:
    browser.get(f"{url}/console/pipeline")
    field = browser.find_element(By.ID, "api_key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.ID, "sign-in").click()


def _text(browser: WebDriver, element_id: str) -> str:
    """The element's text once the page that has it is loaded (a form's submission
    navigates after the click returns)."""
    found = WebDriverWait(browser, 15).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )
    return str(found.text)


async def test_an_operator_signs_in_and_redrives_a_dead_letter_once(
    browser: WebDriver, console: str, kafka: Kafka, followup: Followup, ops: Ops
) -> None:
    db = await asyncpg.connect(followup.dsn)
    try:
        await db.execute(TRIGGERS)
        case_id = uuid.uuid4()
        reference = f"PE-PIU-2026-{uuid.uuid4().int % 10**6:06d}"
        await db.execute("INSERT INTO ops_test_block VALUES ($1)", case_id)
        event = await kafka.publish(case_created(case_id, reference))
        await poll_until(lambda: _outcome(db, event.id), lambda o: o == "dead_lettered")

        # An agency's key does not open the console.
        await _in(browser, _sign_in, browser, console, DEMO_KEYS["ong-amanecer"])
        assert "Only operations keys may enter" in await _in(browser, _text, browser, "flash")
        assert await _in(browser, browser.get_cookies) == []

        await _in(browser, _sign_in, browser, console, DEMO_KEYS["enlace-ops"])
        assert await _in(browser, _text, browser, "signed-in-as") == "enlace-ops"
        (cookie,) = await _in(browser, browser.get_cookies)
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert await _in(browser, browser.save_screenshot, str(SCREENSHOT))

        # The planted dead letter is listed; the cause fixed, the operator redrives it.
        listing = f"{console}/console/dead-letters?service=followup&status=open"

        async def row() -> Any:
            await _in(browser, browser.get, listing)
            rows = await _in(browser, browser.find_elements, By.CSS_SELECTOR, "tr.dead-letter")
            texts = [await _in(browser, lambda r: r.text, r) for r in rows]
            return next((r for r, t in zip(rows, texts, strict=True) if reference in t), None)

        planted = await poll_until(row, lambda r: r is not None, what="the dead letter listed")
        await db.execute("DELETE FROM ops_test_block WHERE case_id = $1", case_id)
        await _in(browser, lambda: planted.find_element(By.NAME, "records").click())
        await _in(browser, lambda: browser.find_element(By.ID, "reason").send_keys("fixed"))
        await _in(browser, lambda: browser.find_element(By.ID, "redrive").click())
        assert "Redriven" in await _in(browser, _text, browser, "flash")

        await poll_until(lambda: _outcome(db, event.id), lambda o: o == "applied")
        assert await _applied(db, case_id) == 1
        await _in(browser, browser.get, f"{console}/console/audit")
        audit = await _in(browser, _text, browser, "audit")
        assert "enlace-ops redrive" in audit
        assert "fixed" in audit

        # An action without the session's CSRF token is refused, and changes nothing.
        async with httpx.AsyncClient(
            base_url=console, cookies={"enlace_ops_session": cookie["value"]}
        ) as client:
            forged = await client.post(
                "/console/dead-letters/action",
                data={
                    "csrf": "forged",
                    "action": "discard",
                    "reason": "x",
                    "records": "protection.cases.v1.dlq:0:0",
                },
            )
        assert forged.status_code == 403
        assert "another site" in forged.text
    finally:
        await db.close()
