"""The spawn form in a real browser: Playwright driving Debian's Chromium.

One scenario, as a scientist would go through it: log in as alice, search the
dataset picker, page through results, pick a dataset, see only the
environments made for its facility, start, land in JupyterLab on the example
notebook and find the dataset under ``data/<slug>`` in the file browser.

The sync Playwright API needs a thread without a running asyncio loop, so the
test is a plain function. Timeouts are generous: JupyterLab can take half a
minute to come up on a busy two-core machine.
"""

import os
import re
import struct

import yaml

from hub_ext.catalogs import slugify
from hub_ext.demo.command import DEMO_ENVIRONMENTS, DEMO_USERS

from playwright import sync_api as playwright_sync

from .browsertools import chromium, evidence_on_failure, log_in

USER = "alice"
STEP_MS = 30_000  # a form interaction (search round trip, page load)
LAB_MS = 180_000  # server start + JupyterLab's first load
PAGER_SIZE = 2  # the demo catalogue fits on one page of 20; smaller pages make the pager work


def _visible_datasets(catalog_path, user):
    """What ``user`` may see according to the catalogue file itself (public or a shared group)."""
    groups = set(DEMO_USERS[user][1])
    entries = yaml.safe_load(catalog_path.read_text())["datasets"]
    return {e["pid"]: e for e in entries if e.get("public") or groups & set(e.get("access_groups") or [])}


def _offered_envs(facility):
    return {
        e["slug"] for e in DEMO_ENVIRONMENTS["environments"]
        if not e.get("facilities") or facility in e["facilities"]
    }


def _png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def _assert_screenshot(path):
    assert path.is_file()
    width, height = _png_size(path)
    assert width >= 800 and height >= 600, (width, height)
    # a blank page compresses to a few KB; a rendered form or JupyterLab does not
    assert path.stat().st_size > 20_000, path.stat().st_size


def _small_pages(route):
    """Serve the spawn page with a smaller picker page size (only the JS's page size changes)."""
    if route.request.method != "GET":
        route.continue_()
        return
    response = route.fetch()
    body = response.text()
    assert 'data-page-size="20"' in body, "the options form no longer carries data-page-size"
    route.fulfill(response=response, body=body.replace('data-page-size="20"', f'data-page-size="{PAGER_SIZE}"'))


def _rows(page):
    return page.locator("#daas-results tbody tr")


def _row_pids(page):
    return [_rows(page).nth(i).get_attribute("data-pid") for i in range(_rows(page).count())]


def _search(page, text, expected_total):
    """Type into the search box and wait until the count line shows ``expected_total``."""
    page.fill("#daas-search", text)
    word = "dataset" if expected_total == 1 else "datasets"
    pattern = rf"^{expected_total} {word}" + (rf" matching .{re.escape(text)}." if text else "")
    playwright_sync.expect(page.locator("#daas-count")).to_have_text(re.compile(pattern), timeout=STEP_MS)
    playwright_sync.expect(_rows(page)).to_have_count(min(expected_total, PAGER_SIZE), timeout=STEP_MS)


def _dir_item(page, name):
    """The file browser's row for ``name`` (rows also show a modification time)."""
    name_text = page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$"))
    return page.locator(".jp-DirListing-item").filter(has=name_text)


def _env_state(page):
    """slug -> (shown, enabled) for every environment radio in the form."""
    state = {}
    for label in page.locator(".daas-env").all():
        radio = label.locator("input[name=environment]")
        state[radio.get_attribute("value")] = (label.is_visible(), radio.is_enabled())
    return state


def test_pick_dataset_and_environment_then_reach_jupyterlab(demo_hub, tmp_path):
    visible = _visible_datasets(demo_hub.catalog_path, USER)
    hidden_pid = "xfel:p900001:r0100"
    assert hidden_pid not in visible and len(visible) > PAGER_SIZE
    target = next(pid for pid, e in visible.items() if "lysozyme" in e["title"].lower())
    target_facility = visible[target]["facility"]
    other = next(pid for pid, e in visible.items() if _offered_envs(e["facility"]) != _offered_envs(target_facility))
    env_slug = next(
        e["slug"] for e in DEMO_ENVIRONMENTS["environments"] if e.get("facilities") == [target_facility]
    )
    form_png, lab_png = tmp_path / "spawn-form.png", tmp_path / "jupyterlab.png"

    try:
        with chromium(step_ms=STEP_MS) as page, evidence_on_failure(page, demo_hub, tmp_path):
            page.route(lambda url: url.rstrip("/").endswith("/hub/spawn"), _small_pages)

            # -- log in through the hub's own login page
            log_in(page, demo_hub, USER)
            page.goto(f"{demo_hub.url}/hub/spawn")
            playwright_sync.expect(page.locator("#daas-form")).to_be_visible()
            assert page.locator("#daas-error").count() == 0

            # -- search: the server answers, the table follows; the hidden dataset never shows up
            _search(page, "lysozyme", 1)
            assert _row_pids(page) == [target]
            _search(page, "900001", 0)
            _search(page, "commissioning", 0)
            _search(page, "no-such-dataset-zzz", 0)
            assert page.locator("#daas-pageinfo").inner_text() == ""

            # -- the pager walks every visible dataset exactly once, then stops
            _search(page, "", len(visible))
            seen = []
            for _ in range(len(visible) + 1):  # a pager that never ends fails, not hangs
                seen += _row_pids(page)
                if page.locator("#daas-next").is_disabled():
                    break
                before = _row_pids(page)
                page.click("#daas-next")
                playwright_sync.expect(_rows(page).first).not_to_have_attribute("data-pid", before[0])
            assert sorted(seen) == sorted(visible) and hidden_pid not in seen
            assert page.locator("#daas-prev").is_enabled()
            assert page.locator("#daas-pageinfo").inner_text().endswith(f"of {len(visible)}")

            # -- a dataset of another facility offers a different set of environments
            _search(page, visible[other]["title"], 1)
            _rows(page).first.click()
            state = _env_state(page)
            assert {s for s, (shown, on) in state.items() if shown and on} == _offered_envs(visible[other]["facility"])
            assert all(shown == on for shown, on in state.values())

            # -- the dataset we want; only its facility's environments are offered
            _search(page, "lysozyme", 1)
            _rows(page).first.click()
            playwright_sync.expect(page.locator("#daas-dataset")).to_have_value(target)
            playwright_sync.expect(_rows(page).first).to_have_class(re.compile("daas-selected"))
            state = _env_state(page)
            assert {s for s, (shown, on) in state.items() if shown and on} == _offered_envs(target_facility)
            assert {s for s, (shown, on) in state.items() if not shown and not on} == set(state) - _offered_envs(target_facility)

            # -- Start without an environment: the form says which choice is missing, Start stays usable
            assert page.locator(".daas-env input:checked").count() == 0
            start = page.locator("#spawn_form [type=submit]")
            start.click()
            missing = page.locator("#daas-missing")
            playwright_sync.expect(missing).to_be_visible()
            message = missing.inner_text()
            assert "Choose a software environment" in message and visible[target]["title"] in message
            for e in DEMO_ENVIRONMENTS["environments"]:
                assert (e["display_name"] in message) == (e["slug"] in _offered_envs(target_facility))
            assert start.is_visible() and start.is_enabled()  # no endless spinner
            assert not page.locator(".feedback-widget").is_visible()
            assert page.url.rstrip("/").endswith("/hub/spawn") and demo_hub.server_state(USER) is None

            # -- a dataset for which the catalogue names an environment gets it preselected
            spectra = next((pid for pid, e in visible.items() if e.get("environment")), None)
            if spectra:
                _search(page, visible[spectra]["title"], 1)
                _rows(page).first.click()
                named = page.locator(f".daas-env input[value='{visible[spectra]['environment']}']")
                playwright_sync.expect(named).to_be_checked()
                playwright_sync.expect(missing).to_be_hidden()
                _search(page, "lysozyme", 1)
                _rows(page).first.click()
                playwright_sync.expect(page.locator("#daas-dataset")).to_have_value(target)

            page.check(f".daas-env input[value='{env_slug}']")
            playwright_sync.expect(missing).to_be_hidden()
            assert "lysozyme" in page.locator("#daas-chosen-title").inner_text().lower()
            page.screenshot(path=str(form_png), full_page=True)

            # -- start, and wait for JupyterLab on the environment's default_url
            page.click("#spawn_form [type=submit]")
            page.wait_for_url(re.compile(rf"/user/{USER}/lab"), timeout=LAB_MS)
            notebook_tab = page.locator(".lm-TabBar-tab", has_text="nxmx_conversion.ipynb")
            playwright_sync.expect(notebook_tab.first).to_be_visible(timeout=LAB_MS)

            # -- the dataset, in the file browser: home -> data -> <slug> -> its files
            slug = slugify(target)
            listing = page.locator(".jp-DirListing-content")
            page.locator(".jp-BreadCrumbs-home").first.click()
            _dir_item(page, "data").dblclick()
            item = _dir_item(page, slug)
            playwright_sync.expect(item).to_be_visible()
            item.dblclick()
            playwright_sync.expect(listing).to_contain_text(re.compile(r"\.h5"), timeout=STEP_MS)
            playwright_sync.expect(page.locator(".jp-BreadCrumbs").first).to_contain_text(f"data/{slug}")
            expected_files = sorted(f for f in os.listdir(visible[target]["path"]) if not f.startswith("."))
            shown_files = sorted(listing.locator(".jp-DirListing-itemText").all_inner_texts())
            assert shown_files == expected_files
            page.screenshot(path=str(lab_png))

            # the same through the server's contents API, with the browser's own session
            r = page.request.get(f"{demo_hub.url}/user/{USER}/api/contents/data")
            assert r.ok, r.status
            assert slug in {c["name"] for c in r.json()["content"]}
    finally:
        if demo_hub.server_state(USER) is not None:
            demo_hub.stop_server(USER)

    _assert_screenshot(form_png)
    _assert_screenshot(lab_png)
