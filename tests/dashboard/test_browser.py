"""The dashboard in a real browser: Playwright drives Debian's chromium (headless) against a
real engine process and a real worker running ``fixtures.demo_workflows``.

Skipped, with the reason, when playwright or /usr/bin/chromium is missing, except on CI
(``CI=true``), which installs chromium and so fails instead. ``SCHED_UPDATE_SCREENSHOTS=1``
writes the screenshots into docs/screenshots/ (otherwise into a temporary folder).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.harness import ROOT, Engine, Stack, running_stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
LIVE_MS = 15_000
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _missing() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no `playwright install`)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return ""


@dataclass
class Site:
    stack: Stack
    engine: Engine
    password: str
    shots: Path

    @property
    def url(self) -> str:
        return self.engine.url

    def start(self, workflow_type: str, workflow_id: str, input: Any = None) -> None:
        r = httpx.post(self.url + "/api/workflows", timeout=10,
                       headers={"Authorization": f"Bearer {self.stack.token}"},
                       json={"workflow_type": workflow_type, "workflow_id": workflow_id,
                             "input": input})
        assert r.status_code == 201, r.text

    def signal(self, workflow_id: str, name: str, input: Any = None) -> None:
        r = httpx.post(f"{self.url}/api/workflows/{workflow_id}/signals", timeout=10,
                       headers={"Authorization": f"Bearer {self.stack.token}"},
                       json={"name": name, "input": input})
        assert r.status_code == 202, r.text

    def result(self, workflow_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/workflows/{workflow_id}/result?wait=20", timeout=30,
                      headers={"Authorization": f"Bearer {self.stack.token}"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run on CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with running_stack(tmp) as stack:
        password = secrets.token_urlsafe(12)
        stack.manage("shell", "-c", "from django.contrib.auth.models import User; "
                     f"User.objects.create_superuser('admin', '', '{password}')")
        engine = stack.engine(log=tmp / "engine.log")
        stack.worker("fixtures.demo_workflows", engine=engine, log=tmp / "worker.log")
        shots = SCREENSHOTS if os.environ.get("SCHED_UPDATE_SCREENSHOTS") == "1" else tmp
        yield Site(stack, engine, password, shots)


def _log_in(page: Page, site: Site, password: str) -> None:
    page.fill("#id_username", "admin")
    page.fill("#id_password", password)
    page.click("button[type=submit]")


@pytest.fixture(scope="module")
def context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.url)
    ctx.set_default_timeout(LIVE_MS)
    page = ctx.new_page()
    page.goto("/login/")
    _log_in(page, site, site.password)
    page.wait_for_url(site.url + "/")
    page.close()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    p = context.new_page()
    yield p
    p.close()


def expect(page_or_locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(page_or_locator)


def accept_next_dialog(page: Page) -> list[str]:
    seen: list[str] = []

    def on_dialog(dialog: Any) -> None:
        seen.append(dialog.message)
        dialog.accept()

    page.once("dialog", on_dialog)
    return seen


# ---- tests ---------------------------------------------------------------------------------


def test_login(browser: Browser, site: Site) -> None:
    ctx = browser.new_context(base_url=site.url)
    page = ctx.new_page()
    page.goto("/workers/")
    assert "/login/?next=/workers/" in page.url
    _log_in(page, site, "wrong password")
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
    _log_in(page, site, site.password)
    page.wait_for_url(site.url + "/workers/")
    expect(page.locator("h1")).to_have_text("Workers")
    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/login/$"))
    ctx.close()


def test_start_from_the_form_watch_it_live_and_signal_it(page: Page, site: Site) -> None:
    page.goto("/")
    page.click("text=Start a workflow >> nth=0")
    page.fill("#id_workflow_type", "approval")
    page.fill("#id_workflow_id", "approval-ui")
    page.fill("#id_input", '{"timeout": 300}')
    asked = accept_next_dialog(page)
    page.click("button:has-text('Start')")
    page.wait_for_url(re.compile(r".*/workflows/approval-ui\?run_id="))
    assert asked == ["Start this workflow?"]
    expect(page.locator(".messages")).to_contain_text("Started approval 'approval-ui'.")
    expect(page.locator("#run-status")).to_have_text("running")
    # The worker runs the first workflow task: its timer shows up without a reload.
    page.evaluate("window.__sameDocument = true")
    expect(page.locator(".pending-timers")).to_contain_text("timer #", timeout=LIVE_MS)
    expect(page.locator('.tl-row[data-kind="timer"]')).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True

    page.fill("#id_name", "approve")
    page.fill("#id_input", '"Grace"')
    asked = accept_next_dialog(page)
    page.click("#signal-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Signal 'approve' sent.")
    assert asked and "Send this signal" in asked[0]
    expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("#run-result")).to_contain_text('"approved by Grace"')
    expect(page.locator("table.signals")).to_contain_text("approve")
    expect(page.locator("#signal-form")).to_have_count(0)  # closed: no more actions


def test_page_updates_live_when_a_signal_arrives_elsewhere(page: Page, site: Site) -> None:
    site.start("approval", "approval-live", {"timeout": 300})
    page.goto("/workflows/approval-live")
    expect(page.locator(".pending-timers")).to_contain_text("timer #", timeout=LIVE_MS)
    page.evaluate("window.__sameDocument = true")
    site.signal("approval-live", "approve", "Ada")
    expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("#run-result")).to_contain_text("approved by Ada")
    expect(page.locator(".tl-track .tl-mark.mark-signal")).to_have_count(1)
    expect(page.locator("table.events")).to_contain_text("WorkflowExecutionCompleted")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
    expect(page.locator("#actions")).to_contain_text("no more actions")
    # Polling stops once the run is closed.
    expect(page.locator("#run-live")).not_to_have_attribute("hx-trigger", re.compile(".+"))


def test_list_and_filters(page: Page, site: Site) -> None:
    site.start("hello", "hello-1", "Ada")
    site.start("hello", "hello-2", "Grace")
    site.start("long_sleep", "sleepy-1", 600)
    site.start("order", "order-1", {"order_id": 1, "items": ["book"], "amount": 12})
    for workflow_id in ("hello-1", "hello-2"):
        assert site.result(workflow_id)["status"] == "completed"
    page.goto("/")
    rows = page.locator("table.runs tbody tr")
    expect(page.locator("tr[data-workflow-id='sleepy-1']")).to_be_visible()
    expect(page.locator("tr[data-workflow-id='hello-1'] .chip")).to_have_text("completed")

    page.click(".chips a[data-status='running']")
    expect(page.locator("tr[data-workflow-id='sleepy-1']")).to_be_visible()
    expect(page.locator("tr[data-workflow-id='hello-1']")).to_have_count(0)
    expect(page.locator(".chips a.active")).to_have_attribute("data-status", "running")

    page.goto("/")
    page.fill("input[name=workflow_type]", "hello")
    page.select_option("select[name=range]", "1h")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(2)
    expect(page.locator("tr[data-workflow-id='hello-2']")).to_be_visible()

    page.goto("/")
    page.fill("input[name=workflow_id]", "hello-2")
    page.press("input[name=workflow_id]", "Enter")
    expect(rows).to_have_count(1)
    page.click("tr[data-workflow-id='hello-2'] a")
    expect(page.locator("#run-result")).to_contain_text("Hello, Grace!")

    # The order workflow's payment fails twice: its timeline shows the retries.
    assert site.result("order-1")["status"] == "completed"
    page.goto("/")
    page.screenshot(path=str(site.shots / "workflow-list.png"))
    page.goto("/workflows/order-1")
    expect(page.locator(".tl-row[data-kind='activity']")).to_have_count(3)
    expect(page.locator(".retry")).to_contain_text("attempt 3")
    page.screenshot(path=str(site.shots / "workflow-page.png"))


def test_cancel(page: Page, site: Site) -> None:
    site.start("long_sleep", "sleepy-cancel", 600)
    page.goto("/workflows/sleepy-cancel")
    expect(page.locator(".pending-timers")).to_contain_text("timer #", timeout=LIVE_MS)
    page.screenshot(path=str(site.shots / "workflow-running.png"))
    page.fill("#cancel_reason", "not needed")
    asked = accept_next_dialog(page)
    page.click("#cancel-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Cancellation requested")
    assert asked and "Request cancellation" in asked[0]
    expect(page.locator("#run-status")).to_have_text("canceled", timeout=LIVE_MS)
    expect(page.locator("table.events")).to_contain_text("WorkflowExecutionCancelRequested")


def test_terminate_asks_first(page: Page, site: Site) -> None:
    site.start("approval", "approval-term", {"timeout": 300})
    page.goto("/workflows/approval-term")
    page.fill("#terminate_reason", "stuck")
    page.once("dialog", lambda d: d.dismiss())
    page.click("#terminate-form button[type=submit]")
    expect(page.locator("#run-status")).to_have_text("running")  # said no: nothing happened
    asked = accept_next_dialog(page)
    page.click("#terminate-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Workflow terminated.")
    assert asked and "Terminate approval-term" in asked[0]
    expect(page.locator("#run-status")).to_have_text("terminated")
    expect(page.locator("table.events")).to_contain_text("WorkflowExecutionTerminated")


def test_bad_input_gives_clear_messages(page: Page, site: Site) -> None:
    page.goto("/start/")
    page.fill("#id_workflow_type", "hello")
    page.fill("#id_input", "{oops")
    accept_next_dialog(page)
    page.click("button:has-text('Start')")
    expect(page.locator(".field-error")).to_contain_text("Not valid JSON")
    assert page.url.endswith("/start/")

    site.start("approval", "approval-bad", {"timeout": 300})
    page.goto("/start/")
    page.fill("#id_workflow_type", "approval")
    page.fill("#id_workflow_id", "approval-bad")
    accept_next_dialog(page)
    page.click("button:has-text('Start')")
    expect(page.get_by_role("alert")).to_contain_text("already")

    page.goto("/workflows/approval-bad")
    page.fill("#id_name", "approve")
    page.fill("#id_input", "Grace")  # not JSON: a string needs quotes
    accept_next_dialog(page)
    page.click("#signal-form button[type=submit]")
    expect(page.locator("#signal-form .field-error")).to_contain_text("Not valid JSON")
    expect(page.locator("#run-status")).to_have_text("running")

    response = page.goto("/workflows/" + "x" * 10_000)
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("no such workflow")


def test_workers_page(page: Page, site: Site) -> None:
    page.goto("/workers/")
    row = page.locator("table.workers tbody tr").first
    expect(row).to_contain_text("default")
    expect(row).to_contain_text("approval")
    expect(row).to_contain_text("greet")
    expect(row.locator(".in-flight")).to_have_text(re.compile(r"\d+ / \d+"))


def test_screenshots_are_small(site: Site) -> None:
    for name in ("workflow-list.png", "workflow-page.png"):
        path = site.shots / name
        assert path.exists() and path.stat().st_size < 400_000
    if site.shots != SCREENSHOTS and os.environ.get("SCHED_KEEP_SCREENSHOTS"):
        shutil.copytree(site.shots, os.environ["SCHED_KEEP_SCREENSHOTS"], dirs_exist_ok=True)


def test_a_signaller_sees_only_the_signal_form(browser: Browser, site: Site) -> None:
    """A user who may view runs and signal them, nothing else: only that form is shown, it
    works, and the pages of the other actions are refused."""
    password = secrets.token_urlsafe(12)
    site.stack.manage("shell", "-c", (
        "from django.contrib.auth.models import Permission, User; "
        f"u = User.objects.create_user('signaller', '', '{password}'); "
        "u.user_permissions.add(*Permission.objects.filter(codename__in="
        "['view_execution', 'signal_workflow']))"))
    site.start("approval", "approval-roles", {"timeout": 300})
    ctx = browser.new_context(base_url=site.url)
    ctx.set_default_timeout(LIVE_MS)
    page = ctx.new_page()
    page.goto("/login/")
    page.fill("#id_username", "signaller")
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(site.url + "/")
    expect(page.locator("header nav")).not_to_contain_text("Start a workflow")
    expect(page.locator("header nav")).not_to_contain_text("Workers")
    page.goto("/workflows/approval-roles")
    expect(page.locator("#signal-form")).to_be_visible()
    expect(page.locator("#cancel-form")).to_have_count(0)
    expect(page.locator("#terminate-form")).to_have_count(0)
    page.fill("#id_name", "approve")
    page.fill("#id_input", '"Grace"')
    accept_next_dialog(page)
    page.click("#signal-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Signal 'approve' sent.")
    response = page.goto("/start/")
    assert response is not None and response.status == 403
    expect(page.locator("main")).to_contain_text("workflows.start_workflow")
    ctx.close()
    assert site.result("approval-roles")["status"] == "completed"
