"""The web console in a real browser (Debian's Chromium through Playwright) against a real
control plane: sign in, submit from the form, watch the job run and finish live, its cost; a
second tenant cannot see it; the operator quarantines a node and sees it leave the pool; a
change without the CSRF token is refused. Saves a screenshot of each main page."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import PHONE, Console, screenshot, sign_in
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.name || el.id)"""


def amount(text: str) -> Decimal:
    found = re.search(r"-?\d+(?:\.\d+)?", text)
    assert found, f"no amount in {text!r}"
    return Decimal(found.group(0))




def test_sign_in_submit_watch_it_run_and_finish_and_see_its_cost(
    context: BrowserContext, console: Console
) -> None:
    page = context.new_page()
    sign_in(page, console.ann)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator(".whoami")).to_contain_text("ann")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Submit").click()
    page.get_by_label("Command").fill("echo hello from the console; sleep 4; echo done")
    page.get_by_label("Name").fill("console-demo")
    page.get_by_label("GPUs per node").fill("2")
    page.get_by_label("GPU model").select_option("H100")
    page.get_by_label("Environment").fill("MESSAGE=hi")
    with console.sdk(console.ann) as ann:
        quoted = ann.estimate({"command": ["true"], "gpus": 2, "gpu_type": "H100"})
    per_hour = page.locator('[data-estimate="per-hour"]')
    expect(per_hour).to_have_text(f"{quoted.price_per_hour.amount} CNY")  # POST /v1/estimates
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    screenshot(page, "submit", full_page=True)

    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"/jobs/job_[0-9a-z]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__notReloaded = true")

    dashboard = context.new_page()
    dashboard.goto("/")
    expect(dashboard.locator('[data-stat="gpus"]')).to_have_text("2", timeout=20_000)
    expect(dashboard.get_by_role("link", name="console-demo").first).to_be_visible()
    screenshot(dashboard, "dashboard")
    dashboard.close()

    log = page.locator("pre.log")
    expect(log).to_contain_text("hello from the console", timeout=20_000)
    expect(page.locator(".state-line .state")).to_have_text("SUCCEEDED", timeout=30_000)
    expect(log).to_contain_text("done")
    expect(log).to_have_attribute("data-log-complete", "")
    expect(page.locator('[data-fact="exit"]')).to_have_text("0")

    with console.sdk(console.ann) as ann:
        charged = wait_for(
            lambda: sum(Decimal(u.cost) for u in ann.usage() if u.job_id == job_id),
            "the job's charge",
        )
    expect(page.locator('[data-fact="cost"]')).to_have_text(f"{charged:.2f} CNY", timeout=20_000)
    assert amount(page.locator('[data-fact="cost"]').inner_text()) > 0
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded: not live"
    timeline = page.locator(".timeline")
    for state in ("PENDING", "QUEUED", "RUNNING", "SUCCEEDED"):
        expect(timeline).to_contain_text(state)
    screenshot(page, "job", full_page=True)

    usage_and_filters(page, job_id)


def usage_and_filters(page: Page, job_id: str) -> None:
    """The wallet lists the job's usage, charts it and downloads it as CSV; the jobs list
    filters by state."""
    page.get_by_role("link", name="Wallet & usage").click()
    expect(page.get_by_role("link", name="console-demo").first).to_be_visible()
    expect(page.locator("svg.chart")).to_be_visible()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download usage (CSV)").click()
    csv_text = download_info.value.path().read_text()
    assert csv_text.splitlines()[0].startswith("job_id,job_name,gpu_model,gpus,seconds")
    assert job_id in csv_text
    screenshot(page, "wallet", full_page=True)

    page.goto("/jobs?show=finished")
    expect(page.get_by_role("link", name="console-demo")).to_be_visible()
    page.goto("/jobs?state=RUNNING")
    expect(page.get_by_role("link", name="console-demo")).to_have_count(0)


def test_a_second_tenant_cannot_see_it(context: BrowserContext, console: Console) -> None:
    with console.sdk(console.ann) as ann:
        job = ann.submit_job({"command": ["sh", "-c", "echo secret"], "name": "ann-private"})
        ann.wait_job(job.id, timeout=60, poll_s=0.2)
    page = context.new_page()
    sign_in(page, console.bob)
    page.goto("/jobs")
    expect(page.get_by_text("No jobs match these filters.")).to_be_visible()
    expect(page.get_by_role("link", name="ann-private")).to_have_count(0)
    response = page.goto(f"/jobs/{job.id}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text(f"job '{job.id}' not found")
    log = page.request.get(f"/jobs/{job.id}/log")
    assert log.status == 404 and "secret" not in log.text()
    cancel = page.request.post(f"/jobs/{job.id}/cancel", headers={"X-CSRF-Token": csrf(page)})
    assert cancel.status == 404
    page.goto("/ops/fleet")
    expect(page.get_by_role("alert")).to_contain_text("for operators only")


def csrf(page: Page) -> str:
    page.goto("/")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    return token


def test_operator_quarantines_a_node_and_sees_it_leave_the_pool(
    context: BrowserContext, console: Console
) -> None:
    page = context.new_page()
    sign_in(page, console.admin_token, "/ops/fleet")
    in_pool = page.locator('[data-stat="in-pool"]')
    expect(in_pool).to_have_text("8 of 8")
    node = page.locator('[data-node="local-1"]')
    expect(node.locator(".gpu")).to_have_count(4)
    expect(node).to_contain_text("simulated")

    page.get_by_label("Node", exact=True).first.select_option("local-1")
    page.get_by_label("Reason").fill("ECC errors on gpu2 (drill)")
    page.get_by_role("button", name="Quarantine node").click()
    expect(in_pool).to_have_text("4 of 8")
    expect(node.locator('[data-flag="quarantined"]')).to_be_visible()
    expect(node).to_contain_text("ECC errors on gpu2 (drill)")
    with console.sdk() as admin:
        assert admin.get_node("local-1").quarantined

    # bob's work lands on the node left in the pool; a drill takes one of its GPUs out
    with console.sdk(console.bob) as bob:
        busy = bob.submit_job({"command": ["sh", "-c", "sleep 60"], "name": "bob-train",
                               "gpus": 2, "gpu_type": "H100"})
    first = page.locator('[data-node="local-0"]')
    expect(first.get_by_role("link", name=busy.id)).to_have_count(2, timeout=20_000)
    with console.sdk() as admin:
        admin.inject_fault("local-0", "ecc", gpu=3)
    expect(first.locator(".gpu").nth(3)).to_contain_text("quarantined", timeout=20_000)
    expect(first.locator("details summary")).to_contain_text("Recent faults")
    screenshot(page, "fleet", full_page=True)

    page.locator("#r-node").select_option("local-1")
    page.get_by_role("button", name="Return to service").click()
    expect(node.locator('[data-flag="quarantined"]')).to_have_count(0)
    with console.sdk() as admin:
        assert not admin.get_node("local-1").quarantined

    # the operator sees every tenant's jobs, and cancels bob's from its page
    page.get_by_role("link", name=busy.id).first.click()
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator(".state-line .state")).to_have_text("CANCELLED", timeout=20_000)

    page.get_by_role("link", name="Tenants").click()
    row = page.locator('tr[data-tenant="beta"]')
    before = amount(row.locator("[data-balance]").inner_text())
    page.get_by_label("Tenant", exact=True).select_option("beta")
    page.get_by_label("Amount").fill("250")
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_role("status").first).to_contain_text("Topped up beta")
    assert amount(row.locator("[data-balance]").inner_text()) == before + 250
    screenshot(page, "tenants", full_page=True)

    page.get_by_role("link", name="Revenue").click()
    expect(page.locator("svg.chart")).to_be_visible()
    assert amount(page.locator('[data-total="revenue"]').inner_text()) > 0
    screenshot(page, "revenue", full_page=True)
    page.get_by_role("link", name="Prices").click()
    expect(page.get_by_role("heading", name=re.compile("Price book"))).to_be_visible()
    screenshot(page, "prices", full_page=True)


def test_a_change_without_the_csrf_token_is_refused(
    context: BrowserContext, console: Console
) -> None:
    page = context.new_page()
    sign_in(page, console.ann, "/tokens")
    with console.sdk(console.ann) as ann:
        jobs_before = len(ann.list_jobs())
        tokens_before = len(ann.list_tokens())
    # the browser sends the session cookie; only the token is missing, or wrong
    refused = page.request.post("/jobs/new", form={"command": "echo no", "gpus": "0"})
    assert refused.status == 403
    assert "security token" in refused.text()
    wrong = page.request.post("/tokens", form={"name": "x", "csrf_token": "0" * 64})
    assert wrong.status == 403
    status = page.evaluate(
        """() => fetch('/tokens', {method: 'POST', body: new URLSearchParams({name: 'js'})})
                 .then(r => r.status)"""
    )
    assert status == 403
    with console.sdk(console.ann) as ann:
        assert len(ann.list_jobs()) == jobs_before
        assert len(ann.list_tokens()) == tokens_before
    # with the page's own form (and so its token) the same change goes through
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_have_value(re.compile(r"^gpc_"))
    screenshot(page, "tokens", full_page=True, mask=[page.locator("#new-token")])


def test_keyboard_labels_and_phone_width(browser: Browser, console: Console) -> None:
    ctx = browser.new_context(base_url=console.url, viewport=PHONE)  # type: ignore[arg-type]
    try:
        page = ctx.new_page()
        sign_in(page, console.ann)
        page.goto("/jobs")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        for path in ("/", "/jobs", "/jobs/new", "/wallet", "/tokens"):
            page.goto(path)
            assert page.evaluate(LABELLED) == [], f"unlabelled form fields on {path}"
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{path} is wider than a phone screen by {overflow}px"
        page.goto("/")
        screenshot(page, "dashboard-phone", full_page=True)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile("/login"))
        page.goto("/jobs")
        expect(page.get_by_label("API token")).to_be_visible()
    finally:
        ctx.close()


def test_operator_pages_have_labelled_fields(context: BrowserContext, console: Console) -> None:
    page = context.new_page()
    sign_in(page, console.admin_token)
    for path in ("/ops/fleet", "/ops/tenants", "/ops/revenue", "/ops/prices"):
        page.goto(path)
        assert page.evaluate(LABELLED) == [], f"unlabelled form fields on {path}"

