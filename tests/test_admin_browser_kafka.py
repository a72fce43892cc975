"""The admin page in real headless Chromium (Debian's, driven by Playwright) against a real broker,
a stream worker, a sink worker and the fake CRM: create an endpoint, subscribe two activities,
filter, a template error, a delivery seen in Status, retries then a dead letter, its replay,
disable, delete. Screenshots of each tab go to test-artifacts/admin/."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from conftest import ROOT, produce, seed_events, worker_env

from activity_sync.admin.api import serve
from activity_sync.admin.keys import ApiKey
from activity_sync.devtools.browser import chromium
from sinks.providers.webhook.fake import FakeCRM
from core.topics import Topics

KEY = ApiKey("ops", "admin", ("*",), "browser-test-key-0123456789")
ARTIFACTS = ROOT / "test-artifacts" / "admin"


async def eventually(check, timeout: float = 60, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if await check():
                return
        except AssertionError:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def sign_in(page, url: str | None = None, key: ApiKey = KEY) -> None:
    """Open the page (when ``url`` is given) and sign in with ``key`` (the admin key)."""
    if url:
        await page.goto(url)
    await page.fill("[data-testid=api-key]", key.secret)
    await page.click("[data-testid=sign-in]")
    await page.wait_for_selector(f"[data-testid=who]:has-text('signed in as {key.id} ')")


async def webhook_form(page, name: str, url: str, tenant: str | None = "DEMO") -> None:
    """Open Create and fill a webhook endpoint's name, tenant (None: leave the form's) and URL."""
    await page.click("[data-testid=create-endpoint]")
    await page.fill("[data-testid=ep-name]", name)
    await page.select_option("[data-testid=ep-provider]", "webhook")
    if tenant is not None:
        await page.fill("[data-testid=ep-tenant]", tenant)
    await page.fill("[data-testid=setting-url]", url)


async def until_page(read, ok, timeout: float = 30) -> None:
    """Poll the page from Python (not page.wait_for_function, whose string predicates the page's strict
    CSP can refuse to evaluate)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ok(await read()):
        if loop.time() > deadline:
            raise AssertionError("the page did not get there")
        await asyncio.sleep(0.1)


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    path = chromium()
    assert path, "Chromium is missing: `make test` installs Debian's chromium (activity_sync/devtools/browser.py)"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


async def test_an_operator_runs_the_integration_from_the_page(settings, tmp_path, spawn, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    crm = await FakeCRM().start()
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    env = worker_env(settings, tmp_path, ACTIVITY_SYNC_RETRY_DELAYS="1 1 1 1", ACTIVITY_SYNC_RETRY_WINDOW_S="4",
                     ACTIVITY_SYNC_INLINE_RETRIES="0")
    spawn(["-m", "streams.app"], env, "stream")
    spawn(["-m", "sinks.pool"], env, "sink-pool")  # as make run does: nothing is started by hand for crm-ui
    requests_elsewhere: list[str] = []
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("request", lambda r: None if r.url.startswith(f"http://127.0.0.1:{port}/")
            else requests_elsewhere.append(r.url))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        base = f"http://127.0.0.1:{port}"
        await page.goto(base + "/")
        await page.fill("[data-testid=api-key]", "wrong-key-wrong-key")
        await page.click("[data-testid=sign-in]")
        await page.wait_for_selector("[data-testid=message].bad")
        assert "API key" in await page.text_content("[data-testid=message]")
        await sign_in(page)

        # ---- create an endpoint with its provider's settings form and two subscriptions
        await webhook_form(page, "crm-ui", crm.url)
        await page.fill("[data-testid=setting-batch_size]", "5000")  # over the webhook's limit of 1000
        await page.check("[data-testid=ep-sub-DiscussionMessageCreate]")
        await page.check("[data-testid=ep-sub-CommunityMemberJoin]")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=dialog-error]:has-text('batch_size')")
        assert await page.get_attribute("[data-testid=setting-batch_size]", "class") == "invalid"
        await page.fill("[data-testid=setting-batch_size]", "50")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=counts-crm-ui]:has-text('2 / 0')")
        await page.screenshot(path=str(ARTIFACTS / "endpoints.png"), full_page=True)

        # ---- subscriptions: filter by category, by name as you type; a template with an unknown variable
        await page.click("[data-testid=tab-subscriptions]")
        await page.select_option("[data-testid=filter-category]", ["Communities"])
        # the unfiltered table holds CommunityMemberJoin too: wait for the filtered answer itself
        await until_page(lambda: page.eval_on_selector_all("[data-testid=subscription-rows] tr",
                                                           "rs => rs.map(r => r.dataset.code)"),
                         lambda codes: "CommunityMemberJoin" in codes and "DiscussionMessageCreate" not in codes)
        await page.select_option("[data-testid=filter-category]", [])
        await page.type("[data-testid=filter-name]", "discussionmessagec", delay=20)
        await until_page(lambda: page.locator("[data-testid=subscription-rows] tr").count(), lambda n: n == 1)
        assert await page.text_content("[data-testid=subscription-rows] tr td") == "DiscussionMessageCreate"
        await page.click("[data-testid=sub-edit-DiscussionMessageCreate]")
        await page.click("[data-testid=sub-endpoint-edit-crm-ui]")
        await page.fill("[data-testid=sub-description]", "{AuthorDisplayName} wrote {NoSuchThing}")
        await page.click("[data-testid=sub-save]")
        await page.wait_for_selector("[data-testid=sub-error]:has-text('NoSuchThing')")
        await page.fill("[data-testid=sub-description]", '{AuthorDisplayName} posted "{Subject}"')
        await page.fill("[data-testid=sub-code1]", "COMMUNITY")
        await page.click("[data-testid=sub-save]")
        await page.wait_for_selector("[data-testid=message]:has-text('saved')")
        await page.screenshot(path=str(ARTIFACTS / "subscriptions.png"), full_page=True)
        await page.click("[data-testid=dialog-cancel]")

        # ---- a produced activity appears as delivered in Status
        seeds = seed_events()
        await produce(settings, Topics(settings.topic_prefix).raw, [(None, json.dumps(dict(seeds[0], ActivityKey="ui-1"))
                                                                     .encode())])
        await page.click("[data-testid=tab-status]")
        await page.wait_for_selector("[data-testid=delivered-crm-ui]:has-text('1')", timeout=90_000)
        assert crm.stored["ui-1"]["description"] == f'{seeds[0]["AuthorDisplayName"]} posted "{seeds[0]["Subject"]}"'
        assert crm.stored["ui-1"]["writeback_code1"] == "COMMUNITY"
        # ---- a polling source's position and lag on the Status tab (its cursor in source.offsets)
        import time as _time

        topics = Topics(settings.topic_prefix)
        source = {"name": "alida-ui", "kind": "alida", "tenant": "DEMO", "enabled": True, "settings": {}}
        await produce(settings, topics.config, [(b"source:alida-ui", json.dumps(source).encode())])
        cursor = {"updated": "2026-12-01T10:00:00.0000000Z", "id": "ev-ui-7", "records": 12, "activities": 11,
                  "caught_up_at": _time.time()}
        await produce(settings, topics.source_offsets, [(b"alida-ui", json.dumps(cursor).encode())])
        await page.wait_for_selector("[data-testid=source-cursor-alida-ui]:has-text('ev-ui-7')", timeout=30_000)
        assert "12 / 11" in await page.inner_text("[data-testid=source-counts-alida-ui]")
        assert " s" in await page.inner_text("[data-testid=source-lag-alida-ui]")
        await page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)

        # ---- the CRM fails: retries, then (the window is 4 s here) the dead letter
        crm.control({"fail": {"status": 503, "seconds": 600}})
        await produce(settings, Topics(settings.topic_prefix).raw, [(None, json.dumps(dict(seeds[0], ActivityKey="ui-2"))
                                                                     .encode())])
        await page.wait_for_selector("[data-testid=last-error-crm-ui]:has-text('503')", timeout=90_000)
        await page.wait_for_selector("[data-testid=dead-crm-ui]:has-text('1')", timeout=90_000)
        status = next(s for s in state.status(KEY) if s["endpoint"] == "crm-ui")
        assert status["retried"] >= 1 and status["dead"] == 1
        await page.click("[data-testid=tab-dead]")
        await page.wait_for_selector("[data-testid=dead-row-ui-2]")
        await page.check("[data-testid=dead-select-ui-2]")
        await page.click("[data-testid=replay-dry-run]")
        await page.wait_for_selector("[data-testid=replay-result]:has-text('1 would be replayed')")
        await page.screenshot(path=str(ARTIFACTS / "dead-letters.png"), full_page=True)
        crm.control({"fail": {"status": 503, "count": 0, "seconds": 0}})
        crm._fail_until = 0
        await page.click("[data-testid=replay-confirm]")
        await page.wait_for_selector("[data-testid=replay-result]:has-text('replayed 1')")
        await eventually(lambda: _stored(crm, "ui-2"), 90, "the replayed activity at the CRM")
        await page.click("[data-testid=tab-status]")  # the last error is history once deliveries go again
        await page.wait_for_selector("[data-testid=last-error-crm-ui]:has-text('delivering again')", timeout=60_000)

        # ---- disable, then delete: its subscriptions go too
        await page.click("[data-testid=tab-endpoints]")
        await page.click("[data-testid=toggle-crm-ui]")
        await page.wait_for_selector("[data-testid=toggle-crm-ui]:has-text('Disabled')")
        await page.click("[data-testid=delete-crm-ui]")
        await page.wait_for_selector("[data-testid=delete-summary]:has-text('2 activity subscription')")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=toggle-crm-ui]", state="detached")
        await page.click("[data-testid=tab-subscriptions]")
        await page.fill("[data-testid=filter-name]", "")
        await page.select_option("[data-testid=filter-subscribed]", "subscribed")
        await until_page(lambda: page.text_content("[data-testid=subscription-rows]"), lambda t: "crm-ui" not in t)
        await page.click("[data-testid=tab-audit]")
        await page.wait_for_selector("[data-testid=audit-rows] tr:has-text('delete endpoint')")
        await page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()
        await crm.stop()
    assert requests_elsewhere == [], "the page requested something outside this server"
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    for tab in ("endpoints", "subscriptions", "status", "dead-letters", "audit"):
        assert (ARTIFACTS / f"{tab}.png").stat().st_size > 5000
    shutil.copytree(ARTIFACTS, tmp_path / "screenshots")


async def _stored(crm, key: str) -> bool:
    return key in crm.stored


async def test_replay_from_the_page_takes_exactly_the_rows_ticked(settings, browser):
    """Issue 18: dead letters of two endpoints ticked together are all replayed (the dry run names
    them), nothing ticked replays nothing, and the Replayed column shows the replay at once."""
    from core import headers as H
    from sinks.contract import FatalError

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        for name in ("left", "right"):
            await state.create_endpoint(KEY, {"name": name, "provider_type": "membership", "provider": "webhook",
                                              "tenant": "DEMO", "settings": {"url": "http://127.0.0.1:9/none"}})
        t = Topics(settings.topic_prefix)
        for ep, key in (("left", "l-1"), ("right", "r-1")):
            await produce(settings, t.dead, [(b"k", b"value")], headers=H.dead_letter(
                "deliver", (t.enriched, 0, 1), FatalError("HTTP 400: refused"), endpoint=ep, tenant="DEMO",
                activity_key=key))
        await sign_in(page, f"http://127.0.0.1:{port}/")
        await page.click("[data-testid=tab-dead]")
        await page.wait_for_selector("[data-testid=dead-row-r-1]", timeout=30_000)
        await page.click("[data-testid=replay-dry-run]")  # nothing ticked
        await page.wait_for_selector("[data-testid=replay-result]:has-text('nothing selected')")
        assert await page.is_disabled("[data-testid=replay-confirm]")
        await page.check("[data-testid=dead-select-all]")
        await page.click("[data-testid=replay-dry-run]")
        await page.wait_for_selector("[data-testid=replay-result]:has-text('2 would be replayed')")
        await page.screenshot(path=str(ARTIFACTS / "dead-letters-two-endpoints.png"), full_page=True)
        await page.click("[data-testid=replay-confirm]")
        await page.wait_for_selector("[data-testid=replay-result]:has-text('replayed 2')")
        for key in ("l-1", "r-1"):
            assert (await page.text_content(f"[data-testid=dead-row-{key}] td:nth-child(8)")).strip() == "yes"
        # a long list is paged, 50 rows a page; a row ticked on one page is replayed from another
        for i in range(60):
            await produce(settings, t.dead, [(b"k", b"value")], headers=H.dead_letter(
                "deliver", (t.enriched, 0, 10 + i), FatalError("HTTP 400: refused"), endpoint="left", tenant="DEMO",
                activity_key=f"p-{i:02d}"))
        await page.click("[data-testid=dead-refresh]")
        await page.wait_for_selector("[data-testid=dead-page]:has-text('rows 1–50 of 62')", timeout=30_000)
        first = await page.eval_on_selector("#dead-rows tr:not([hidden]) input:not(:disabled)", "c => c.value")
        first_key = f"dead-row-{first}"
        await page.check(f"[data-testid=dead-select-{first}]")
        await page.click("[data-testid=dead-next]")
        await page.wait_for_selector("[data-testid=dead-page]:has-text('rows 51–62 of 62, 1 ticked')")
        assert not await page.is_visible(f"[data-testid={first_key}]")
        await page.click("[data-testid=replay-dry-run]")
        await page.wait_for_selector("[data-testid=replay-result]:has-text('1 would be replayed')")
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()


async def test_a_bulk_schedule_is_set_from_the_form(settings, browser):
    """Issue 18: the interval schedule (the seed's bulk write-back) from the endpoint form, not only YAML."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/")
        await webhook_form(page, "bulk-crm", "http://127.0.0.1:9/activities")
        await page.fill("[data-testid=setting-schedule]", "every 30m")
        form = await page.inner_text("[data-testid=settings-form]")  # human labels, the raw name beside, help
        assert "Timeout (seconds)" in form and "timeout_s" in form and "HMAC secret (environment variable)" in form
        await page.screenshot(path=str(ARTIFACTS / "endpoint-schedule.png"), full_page=True)
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=edit-bulk-crm]")
        ep = state.endpoint(KEY, "bulk-crm")
        assert ep["settings"]["schedule"] in ("every 30m", {"every": "30m"}, {"every": 1800.0}), ep["settings"]
        # only what the operator set is stored, so a later change of a default applies to it
        assert set(ep["settings"]) == {"url", "schedule"}, ep["settings"]
        await page.click("[data-testid=edit-bulk-crm]")  # the saved schedule reads back in the form
        assert "30" in await page.input_value("[data-testid=setting-schedule]")
        # the audit says what changed, field by field
        await page.fill("[data-testid=setting-url]", "http://127.0.0.1:9/v2/activities")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=message]:has-text('saved')")
        await page.click("[data-testid=tab-audit]")
        first = page.locator("[data-testid=audit-rows] tr").first
        await first.locator("[data-testid=audit-changes]:has-text('settings.url')").wait_for()
        text = await first.inner_text()
        assert "http://127.0.0.1:9/activities → http://127.0.0.1:9/v2/activities" in text, text
        assert "schedule" not in text  # unchanged fields are not listed
        await page.screenshot(path=str(ARTIFACTS / "audit-changes.png"), full_page=True)
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()


async def test_a_subscription_is_removed_in_its_own_dialog_variables_insert_at_the_cursor_and_sign_out(
        settings, browser):
    """Issue 18: Remove in a subscription's Edit dialog; merge variables are buttons that insert at the
    cursor; once signed in the key is no longer in an editable field, and Sign out forgets it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/")
        assert not await page.is_visible("[data-testid=api-key]") and await page.is_visible("[data-testid=sign-out]")
        await webhook_form(page, "crm-rm", "http://127.0.0.1:9/activities")
        # the long checklist: search narrows it, select-all ticks only what is shown, a count says how many
        await page.fill("[data-testid=ep-sub-search]", "alida")
        await page.click("[data-testid=ep-sub-all]")
        alida = await page.eval_on_selector_all("[data-testid=ep-subscriptions] input:checked", "xs => xs.map(x => x.value)")
        assert alida and all(c.startswith("Alida") for c in alida), alida
        assert f"{len(alida)} of " in await page.text_content("[data-testid=ep-sub-count]")
        await page.click("[data-testid=ep-sub-none]")
        await page.fill("[data-testid=ep-sub-search]", "no-such-code")
        assert await page.get_attribute("[data-testid=ep-subscriptions]", "data-empty") == "no activity code matches"
        await page.fill("[data-testid=ep-sub-search]", "")
        await page.check("[data-testid=ep-sub-DiscussionMessageCreate]")
        assert (await page.text_content("[data-testid=ep-sub-count]")).startswith("1 of ")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=counts-crm-rm]:has-text('1 / 0')")
        await page.fill("[data-testid=ep-filter]", "nothing-like-it")  # the endpoint list's filter and empty state
        await page.wait_for_selector("[data-testid=ep-empty]:has-text('no endpoint matches')")
        await page.fill("[data-testid=ep-filter]", "crm-r")
        await page.wait_for_selector("[data-testid=ep-count]:has-text('1 of 1 endpoint(s)')")
        await page.click("[data-testid=tab-subscriptions]")
        await page.type("[data-testid=filter-name]", "zzz-nothing", delay=5)
        await page.wait_for_selector("[data-testid=subscription-rows]:has-text('no activity code matches the filters')")
        await page.click("[data-testid=filter-clear]")
        await page.wait_for_selector("[data-testid=sub-row-DiscussionMessageCreate]")
        assert await page.input_value("[data-testid=filter-name]") == ""
        await page.click("[data-testid=sub-edit-DiscussionMessageCreate]")
        await page.click("[data-testid=sub-endpoint-edit-crm-rm]")
        await page.fill("[data-testid=sub-description]", "posted  today")
        await page.eval_on_selector("[data-testid=sub-description]", "a => { a.selectionStart = a.selectionEnd = 7; }")
        await page.click("[data-testid=sub-var-AuthorDisplayName]")
        assert await page.input_value("[data-testid=sub-description]") == "posted {AuthorDisplayName} today"
        await page.screenshot(path=str(ARTIFACTS / "subscription-edit.png"), full_page=True)
        await page.click("[data-testid=sub-endpoint-remove-crm-rm]")
        await page.wait_for_selector("[data-testid=message]:has-text('removed')")
        await page.wait_for_selector("[data-testid=sub-endpoints]:has-text('No endpoint receives this activity')")
        await eventually(lambda: asyncio.sleep(0, not any(sub.endpoint == "crm-rm"
                                                          for sub in state.routing.subscriptions.values())),
                         10, "the subscription's tombstone read back")
        await page.click("[data-testid=dialog-cancel]")
        await page.click("[data-testid=sign-out]")
        await page.wait_for_selector("[data-testid=message]:has-text('signed out')")
        assert await page.is_visible("[data-testid=api-key]") and await page.input_value("[data-testid=api-key]") == ""
        assert await page.evaluate("sessionStorage.getItem('activity-sync-key')") is None
        await page.reload()  # nothing remembered: the page asks for the key again
        assert await page.is_visible("[data-testid=api-key]") and await page.text_content("[data-testid=who]") == ""
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()


async def test_an_activity_code_added_on_the_page_is_subscribed_enriched_and_delivered(settings, tmp_path, spawn,
                                                                                       browser):
    """Issue 18: an admin adds an activity code from the page (category, who it is about, properties,
    default description); a subscription uses it, and the pipeline (stream worker, sink pool) enriches
    and delivers an activity of that code with nothing else changed; retiring it is refused while the
    subscription holds it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    crm = await FakeCRM().start()
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    env = worker_env(settings, tmp_path)
    spawn(["-m", "streams.app"], env, "stream")
    spawn(["-m", "sinks.pool"], env, "sink-pool")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/")
        await page.click("[data-testid=tab-subscriptions]")
        await page.click("[data-testid=add-activity-code]")
        await page.fill("[data-testid=code-name]", "WebinarAttend")
        await page.select_option("[data-testid=code-category]", "Events")
        await page.fill("[data-testid=code-customer-key]", "AttendeeExternalKey")
        await page.fill("[data-testid=code-properties]", "AttendeeExternalKey, WebinarTitle")
        await page.fill("[data-testid=code-description]", "{AttendeeExternalKey} attended {NoSuchProperty}")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=dialog-error]:has-text('NoSuchProperty')")  # the parser's check
        await page.fill("[data-testid=code-description]", '{AttendeeExternalKey} attended "{WebinarTitle}"')
        await page.screenshot(path=str(ARTIFACTS / "activity-code.png"), full_page=True)
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=sub-row-WebinarAttend]")
        assert "Events" in await page.inner_text("[data-testid=sub-row-WebinarAttend]")
        # an endpoint subscribed to it, its description the code's default
        await page.click("[data-testid=tab-endpoints]")
        await webhook_form(page, "crm-codes", crm.url)
        await page.check("[data-testid=ep-sub-WebinarAttend]")
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=counts-crm-codes]:has-text('1 / 0')")
        event = {"ActivityKey": "web-1", "ActivityCode": "WebinarAttend", "TenantCode": "DEMO",
                 "ActivityDate": "2026-12-01T15:00:00Z", "AttendeeExternalKey": "C-0077", "WebinarTitle": "Budgets 101"}
        deadline = asyncio.get_running_loop().time() + 60
        n = 0
        while "web-1" not in crm.stored and not any(k.startswith("web-") for k in crm.stored):
            assert asyncio.get_running_loop().time() < deadline, "the new code's activity was not delivered"
            n += 1  # sent again until the stream worker has read the subscription (each its own key)
            await produce(settings, Topics(settings.topic_prefix).raw,
                          [(None, json.dumps(dict(event, ActivityKey=f"web-{n}")).encode())])
            await asyncio.sleep(1)
        got = next(v for k, v in crm.stored.items() if k.startswith("web-"))
        assert got["category"] == "Events" and got["customer_id"] == "C-0077", got
        assert got["description"] == 'C-0077 attended "Budgets 101"', got
        # retiring a code a subscription holds is refused, with the reason
        await page.click("[data-testid=tab-subscriptions]")
        await page.click("[data-testid=code-edit-WebinarAttend]")
        await page.click("[data-testid=code-retire]")
        await page.wait_for_selector("[data-testid=dialog-error]:has-text('still subscribed')")
        await page.click("[data-testid=dialog-cancel]")
        assert any(a["action"] == "create activity code" and a["target"] == "activity:WebinarAttend"
                   for a in state.audit_entries(KEY, 50))
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()
        await crm.stop()


async def test_a_tenant_keys_template_preview_never_shows_another_tenants_activity(settings, tmp_path, spawn, browser):
    """Issue 18's security item, in the browser: an ACME key previews a template on a code whose
    newest activity is DEMO's; the preview says there is none of its tenants' yet and shows nothing of
    DEMO's member, while a key of every tenant sees it."""
    acme = ApiKey("acme-ops", "admin", ("ACME",), "browser-acme-preview-0123456789")
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY, acme])
    spawn(["-m", "streams.app"], worker_env(settings, tmp_path), "stream")
    seed = next(e for e in seed_events() if e["ActivityCode"] == "DiscussionMessageCreate")
    await produce(settings, Topics(settings.topic_prefix).raw, [(None, json.dumps(dict(seed, TenantCode="DEMO")).encode())])

    async def demo_seen() -> bool:
        return state.preview(KEY, "DiscussionMessageCreate", "{AuthorDisplayName}")["rendered"] is not None

    await eventually(demo_seen, 60, "DEMO's activity in the admin's newest records")
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/", acme)
        await webhook_form(page, "acme-crm", "http://127.0.0.1:9/activities", tenant=None)
        await page.click("[data-testid=dialog-ok]")
        await page.wait_for_selector("[data-testid=edit-acme-crm]")
        await page.click("[data-testid=tab-subscriptions]")
        await page.click("[data-testid=sub-edit-DiscussionMessageCreate]")
        await page.select_option("[data-testid=sub-add-endpoint]", "acme-crm")
        await page.fill("[data-testid=sub-description]", "{AuthorDisplayName} / {AuthorExternalKey} / {TenantCode} / {Body}")
        await page.click("[data-testid=sub-preview]")
        await page.wait_for_selector("[data-testid=sub-preview-result]:not(:empty)")
        shown = await page.text_content("[data-testid=sub-preview-result]")
        assert "no recent DiscussionMessageCreate activity" in shown, shown  # none of ACME's: nothing rendered
        page_text = await page.inner_text("body")
        for leaked in (seed["AuthorDisplayName"], seed["AuthorExternalKey"], "DEMO /"):
            assert leaked not in shown and leaked not in page_text, (leaked, shown)
        await page.screenshot(path=str(ARTIFACTS / "preview-tenant-denied.png"), full_page=True)
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()


async def test_the_contacts_tab_finds_pushed_contacts_of_the_keys_tenant(settings, browser):
    acme = ApiKey("acme", "admin", ("ACME",), "browser-acme-key-0123456789")
    entries = [{"tenant": t, "ContactId": cid, "deleted": False, "lists": {"VOL": {"ListName": "Volunteers"}},
                "groups": {"BOARD": {"GroupId": "BOARD", "GroupName": "Board"}},
                "details": {"ContactId": cid, "FirstName": first, "LastName": "Example",
                            "PrimaryEmailAddress": f"{cid.lower()}@example.org"}}
               for t, cid, first in (("ACME", "A-1", "Ana"), ("ACME", "A-2", "Ben"), ("DEMO", "D-1", "Dee"))]
    await produce(settings, Topics(settings.topic_prefix).push_directory,
                  [(f"{e['tenant']}|{e['ContactId']}".encode(), json.dumps(e).encode()) for e in entries])
    runner, state, port = await serve(settings, "127.0.0.1", 0, [acme])
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/", acme)
        assert await page.text_content("[data-testid=who]") == "signed in as acme (admin, tenants ACME)"
        await page.click("[data-testid=create-endpoint]")  # a tenant key's new endpoint starts as its tenant's
        assert await page.input_value("[data-testid=ep-tenant]") == "ACME"
        await page.click("[data-testid=dialog-cancel]")
        await eventually(lambda: asyncio.sleep(0, state.directory.count() == 3), 30, "the directory")
        await page.click("[data-testid=tab-contacts]")
        await page.wait_for_selector("[data-testid=contact-count]:has-text('2 shown of 2')")
        rows = await page.inner_text("[data-testid=contact-rows]")
        assert "Ana Example" in rows and "Ben Example" in rows and "Dee" not in rows
        assert "Board" in rows and "Volunteers" in rows
        await page.fill("[data-testid=contact-name]", "ben")
        await page.click("[data-testid=contact-find]")
        await page.wait_for_selector("[data-testid=contact-count]:has-text('1 shown of 2')")
        assert "A-2" in await page.inner_text("[data-testid=contact-rows]")
        await page.fill("[data-testid=contact-name]", "")
        await page.fill("[data-testid=contact-email]", "d-1@example.org")  # another tenant's contact: not found
        await page.click("[data-testid=contact-find]")
        await page.wait_for_selector("[data-testid=contact-count]:has-text('0 shown of 2')")
        # a Push API key issued on the page, shown once, listed, revoked
        await page.fill("[data-testid=key-id]", "acme-ams")
        await page.fill("[data-testid=key-tenant]", "DEMO")  # not this key's tenant: refused
        await page.click("[data-testid=key-issue-button]")
        await page.wait_for_selector("[data-testid=message].bad")
        await page.fill("[data-testid=key-tenant]", "ACME")
        await page.click("[data-testid=key-issue-button]")
        await page.wait_for_selector("[data-testid=key-new]:has-text('acme-ams.')")
        shown = (await page.inner_text("[data-testid=key-new]")).split("shown once): ")[1].strip()
        assert state.ingest_keys.authenticate(shown) is not None
        assert "acme-ams" in await page.inner_text("[data-testid=key-rows]")
        await page.click("[data-testid=key-revoke-acme-ams]")
        await until_page(lambda: page.inner_text("[data-testid=key-rows]"), lambda t: "acme-ams" not in t)
        assert state.ingest_keys.authenticate(shown) is None
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()


async def test_the_report_card_and_a_member_page_with_charts_and_the_printable_export(settings, tmp_path, browser):
    """Scores of tenant DEMO (member.scores), its report card with the category chart, a member's page
    with the score chart and their timeline from the Activity History store, and the HTML export's numbers."""
    import datetime as dt

    from core.avro import SingleObjectCodec
    from core.config import parse_config
    from core.scoring import apply, new_state, parse_model, score_record

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    model = parse_model({"tenant": "DEMO", "points": {"DiscussionMessageCreate": 5, "LibraryEntryView": 1}})
    states = {}
    start = dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc)
    plan = [("C-1", "DiscussionMessageCreate", "Discussions", 0), ("C-1", "DiscussionMessageCreate", "Discussions", 3),
            ("C-1", "LibraryEntryView", "Resource Libraries", 5), ("C-2", "LibraryEntryView", "Resource Libraries", 1),
            ("C-2", "LibraryEntryView", "Resource Libraries", 35), ("C-3", "DiscussionMessageCreate", "Discussions", 40)]
    for i, (m, code, cat, days) in enumerate(plan):
        states[m], _ = apply(states.get(m) or new_state("DEMO", m), model, f"s{i}", code, cat,
                             start + dt.timedelta(days=days))
    codec = SingleObjectCodec(name="member_score")
    topics = Topics(settings.topic_prefix)
    store = tmp_path / "history.db"
    doc = {"scoring": [model.record()],
           "endpoints": [{"name": "history", "provider_type": "activity-history", "provider": "activity-history",
                          "tenant": "DEMO", "settings": {"path": str(store)}}]}
    await produce(settings, topics.config, [(k.encode(), v) for k, v in parse_config(doc).records()])
    await produce(settings, topics.member_scores, [(f"DEMO|{m}".encode(), codec.encode(score_record(s, model, 0)))
                                                   for m, s in states.items()])
    import sqlite3

    from sinks.providers.activity_history.sink import COLUMNS, SCHEMA

    con = sqlite3.connect(store)
    con.executescript(SCHEMA)
    con.executemany(f"INSERT INTO activity_history ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    [("history", f"s{i}", m, None, code, cat, (start + dt.timedelta(days=d)).isoformat(),
                      f"{m} did {code}", None, None, None, "DEMO", "{}", "2026-12-01") for i, (m, code, cat, d)
                     in enumerate(plan)])
    con.commit()
    con.close()
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    page = await browser.new_page(viewport={"width": 1400, "height": 1200})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/")
        await eventually(lambda: asyncio.sleep(0, len(state.member_scores.get("DEMO", {})) == 3), 30, "the scores")
        await page.click("[data-testid=tab-scores]")
        await page.fill("[data-testid=scores-period]", "2026-11")
        await page.click("[data-testid=scores-show]")
        await page.wait_for_selector("[data-testid=card-activities]:has-text('4')")
        assert await page.inner_text("[data-testid=card-active-members]") == "2"
        assert await page.inner_text("[data-testid=card-points]") == "12"  # 5 + 5 + 1, and C-2's 1
        assert await page.evaluate("document.getElementById('chart-categories').toDataURL().length") > 2000
        await page.screenshot(path=str(ARTIFACTS / "scores-report-card.png"), full_page=True)
        await page.click("[data-testid=top-C-1]")
        await page.wait_for_selector("[data-testid=member-title]:has-text('C-1: score 11')")
        assert "rank 1 of 3" in await page.inner_text("[data-testid=member-title]")
        assert len(await page.query_selector_all("[data-testid=timeline-row]")) == 3
        await page.screenshot(path=str(ARTIFACTS / "scores-member.png"), full_page=True)
        await page.select_option("[data-testid=member-category]", "Discussions")  # the timeline by category
        await until_page(lambda: page.query_selector_all("[data-testid=timeline-row]"), lambda rows: len(rows) == 2)
        # the printable export, fetched as the page does: its numbers
        html = await page.evaluate(f"""fetch('/api/v1/scores/report?tenant=DEMO&period=2026-11&format=html',
            {{headers: {{Authorization: 'Bearer {KEY.secret}'}}}}).then(r => r.text())""")
        assert "<td>activities</td><td>4</td>" in html and "<td>C-1</td><td>11" in html
        csv_text = await page.evaluate(f"""fetch('/api/v1/scores/report?tenant=DEMO&period=2026-11&format=csv',
            {{headers: {{Authorization: 'Bearer {KEY.secret}'}}}}).then(r => r.text())""")
        assert "active_members,2,0,2" in csv_text
        (ARTIFACTS / "scores-report-card.html").write_text(html)
        # the model edited on the page: a wrong value names its field; a good one is stored and audited
        await page.click("[data-testid=model-editor] summary")
        editable = json.loads(await page.input_value("[data-testid=scores-model]"))
        assert editable["points"] == {"DiscussionMessageCreate": 5.0, "LibraryEntryView": 1.0}
        await page.fill("[data-testid=scores-model]", json.dumps({**editable, "half_life_days": -3}))
        await page.click("[data-testid=scores-model-save]")
        await page.wait_for_selector("[data-testid=message].bad")
        assert "half_life_days" in await page.text_content("[data-testid=message]")
        await page.fill("[data-testid=scores-model]", json.dumps({**editable, "daily_cap": {"LibraryEntryView": 2}}))
        await page.click("[data-testid=scores-model-save]")
        await page.wait_for_selector("[data-testid=message]:has-text('scoring model of DEMO saved')")
        assert state.scoring["DEMO"].daily_cap == {"LibraryEntryView": 2.0}
        assert any(a["target"] == "scoring:DEMO" and a["action"] == "update" for a in state.audit_log)
        await page.screenshot(path=str(ARTIFACTS / "scores-model.png"), full_page=True)
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()


async def test_a_list_built_on_the_page_with_a_preview_count_and_its_reconciliation(settings, tmp_path, browser,
                                                                                     monkeypatch):
    """The Lists tab: members' states (lists.state) and a list's members (list.members) as the list stage
    writes them; a list built from rules with the preview count moving as rules change, saved; the
    reconciliation view against the fake marketing platform's partner API."""
    import time

    from core.config import parse_config
    from core.lists import apply_activity, new_state
    from sinks.providers.informz.fake import FakeInformz

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fake = await FakeInformz(hour_s=0).start()
    monkeypatch.setenv("TEST_INFORMZ_PASSWORD", fake.password)
    topics = Topics(settings.topic_prefix)
    now = time.time()
    plan = {"M1": ["DiscussionMessageCreate", "LibraryEntryView"], "M2": ["DiscussionMessageCreate"],
            "M3": ["LibraryEntryView"], "M4": ["DiscussionMessageCreate"]}
    states = {}
    for m, codes in plan.items():
        st = new_state("DEMO", m)
        for i, code in enumerate(codes):
            apply_activity(st, f"{m}-{i}", code, "Discussions" if code.startswith("Disc") else "Resource Libraries",
                           now - 3600, {}, now)
        states[m] = st
    doc = {"lists": [{"tenant": "DEMO", "name": "Informz Posters", "criteria": {"activity": {"codes": [
               "DiscussionMessageCreate"]}}}],
           "endpoints": [{"name": "tmp", "provider": "informz", "tenant": "DEMO", "settings": {
               "url": fake.url, "brand_id": fake.brand_id, "brand": fake.brand, "username": fake.user,
               "password_env": "TEST_INFORMZ_PASSWORD"}}]}
    await produce(settings, topics.config, [(k.encode(), v) for k, v in parse_config(doc).records()])
    await produce(settings, topics.lists_state, [(f"DEMO|{m}".encode(), json.dumps(s).encode()) for m, s in states.items()])
    emails = {"M1": "m1@example.org", "M2": "shared@example.org", "M4": "Shared@example.org"}
    await produce(settings, topics.list_members, [(f"DEMO|informz-posters|{m}".encode(), json.dumps(
        {"tenant": "DEMO", "list": "informz-posters", "member": m, "email": e}).encode()) for m, e in emails.items()])
    g = fake.new_group("Posters", "informz-posters")  # synced before: one subscriber since unsubscribed
    g["members"] = {"M1": fake.upsert_subscriber("m1@example.org", "M1"),
                    "M2": fake.upsert_subscriber("shared@example.org", "M2")}
    fake.subscribers["m1@example.org"]["status"] = "unsubscribed"
    root = ApiKey("root", "super", ("*",), KEY.secret)
    runner, state, port = await serve(settings, "127.0.0.1", 0, [root])
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        await sign_in(page, f"http://127.0.0.1:{port}/", root)
        await eventually(lambda: asyncio.sleep(0, len(state.lists.states.get("DEMO", {})) == 4
                                               and state.lists.count("DEMO", "informz-posters") == 3), 30, "lists")
        await page.click("[data-testid=tab-lists]")
        await page.wait_for_selector("[data-testid=list-count-informz-posters]:has-text('3')")
        await page.fill("[data-testid=list-tenant]", "DEMO")
        await page.fill("[data-testid=list-name]", "Informz Posters Not Reading")
        await page.select_option("[data-testid=rule-what] >> nth=0", "code:DiscussionMessageCreate")
        await page.wait_for_selector("[data-testid=list-preview]:has-text('3 members match now')")
        await page.click("[data-testid=list-add-rule]")
        await page.select_option("[data-testid=rule-kind] >> nth=1", "never")
        await page.select_option("[data-testid=rule-what] >> nth=1", "code:LibraryEntryView")
        await page.wait_for_selector("[data-testid=list-preview]:has-text('2 members match now')")
        assert "M2" in await page.inner_text("[data-testid=list-preview]")
        criteria = json.loads(await page.input_value("[data-testid=list-criteria]"))
        assert criteria == {"all": [{"activity": {"codes": ["DiscussionMessageCreate"]}},
                                    {"never": {"codes": ["LibraryEntryView"]}}]}
        await page.screenshot(path=str(ARTIFACTS / "lists-builder.png"), full_page=True)
        await page.fill("[data-testid=list-criteria]", '{"activity": {"codes": ["DiscussionMessageCreate"], "within": "soon"}}')
        await page.wait_for_selector("[data-testid=list-preview].error:has-text('within')")
        await page.fill("[data-testid=list-criteria]", json.dumps(criteria))
        await page.click("[data-testid=list-save]")
        await page.wait_for_selector("[data-testid=list-row-informz-posters-not-reading]")
        assert state.lists.defs["DEMO"]["informz-posters-not-reading"].target_group == "Posters Not Reading"
        await page.click("[data-testid=list-reconcile-informz-posters]")
        await page.wait_for_selector("[data-testid=reconcile-reasons] li")
        text = await page.inner_text("[data-testid=list-reconciliation]")
        assert "Members in the community\t3" in text and "Subscribers in the target group\t1" in text
        assert "shared@example.org: M2, M4" in text and "m1@example.org" in text
        await page.screenshot(path=str(ARTIFACTS / "lists-reconciliation.png"), full_page=True)
    finally:
        await page.close()
        await runner.cleanup()
        await state.stop()
        await fake.stop()
