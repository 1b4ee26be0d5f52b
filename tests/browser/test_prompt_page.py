"""The Prompt tab in real Chromium: edit the prompt twice, see the history, a diff, roll back."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import login
from tests.factories import make_project, make_user

pytestmark = pytest.mark.browser


def save(page, content, note):
    page.fill("#content", content)
    page.fill("#note", note)
    with page.expect_navigation():  # POST, then the redirect back to the tab
        page.click("text=Save and make live")


def test_edit_twice_history_diff_and_roll_back(app, live_server, page, shot):
    owner = make_user(app, email="ada@example.com", name="Ada")
    project_id = make_project(app, owner, name="Support bot", system_prompt="You are terse.")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}")
    page.click("nav.tabs >> text=Prompt")
    page.wait_for_url(f"{live_server}/projects/{project_id}/prompts")
    assert page.locator("nav.tabs a[aria-current=page]").inner_text() == "Prompt"
    assert page.input_value("#content") == "You are terse."

    save(page, "You are terse.\nAnswer in English.", "English only")
    assert page.is_visible("text=Saved as version 2; it is now live.")
    save(page, "You are terse and kind.\nAnswer in English.\nCite sources.", "Kinder, with sources")
    assert page.is_visible("text=Saved as version 3; it is now live.")
    save(page, "You are terse and kind.\nAnswer in English.\nCite sources.", "")
    assert page.is_visible("text=No changes: version 3 already has this text and settings.")

    items = page.locator(".history-item")
    assert items.count() == 3
    assert [t.split()[0] for t in items.locator(".history-main").all_inner_texts()] == [
        "v3",
        "v2",
        "v1",
    ]
    assert items.nth(0).locator(".badge").inner_text() == "production"
    assert items.nth(0).locator(".note").inner_text() == "Kinder, with sources"
    assert items.nth(1).locator(".note").inner_text() == "English only"

    items.nth(0).get_by_role("link", name="Diff with v2").click()
    page.wait_for_url("**/prompts/diff?from=2&to=3")
    assert page.inner_text("#diff-title") == "Changes from v2 to v3"
    assert page.locator("pre.diff .diff-add").all_inner_texts() == [
        "+You are terse and kind.",
        "+Cite sources.",
    ]
    assert page.locator("pre.diff .diff-del").all_inner_texts() == ["-You are terse."]
    assert " ".join(page.inner_text("#diff-stats").split()) == "+2 −1 lines changed"
    labels = page.locator('#settings-diff tr[data-field="labels"] td')
    assert [" ".join(t.split()) for t in labels.all_inner_texts()] == ["none", "production"]
    assert page.locator(".history-item.is-compared").count() == 2
    shot(page, "prompt-history", full_page=True)

    # Compare any two versions with the form.
    page.select_option("#cmp-from", "1")
    page.select_option("#cmp-to", "3")
    page.click("text=Show diff")
    expect(page.locator("#diff-title")).to_have_text("Changes from v1 to v3")

    # Roll back to v1: nothing is renumbered, v1 is live again.
    page.locator(".history-item", has_text="v1").get_by_role("button", name="Make v1 live").click()
    page.wait_for_url(f"{live_server}/projects/{project_id}/prompts")
    assert page.is_visible("text=Version 1 is live.")
    active = page.locator(".history-item.is-active")
    assert active.locator(".history-main strong").inner_text() == "v1"
    assert page.locator(".history-item").count() == 3
    assert page.input_value("#content") == "You are terse."
    assert page.problems == []


def test_the_prompt_is_edited_with_the_project(app, live_server, page, shot):
    owner = make_user(app, email="ada@example.com", name="Ada")
    project_id = make_project(app, owner, name="Support bot", system_prompt="You are terse.")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}")
    page.click("text=Edit")
    page.wait_for_url(f"{live_server}/projects/{project_id}/update")
    expect(page.get_by_label("System prompt")).to_have_value("You are terse.")
    page.get_by_label("Description (optional)").fill("Answers questions about our product.")
    page.get_by_label("System prompt").fill("You are terse.\nAlways answer in English.")
    shot(page, "project-edit", full_page=True)
    with page.expect_navigation():
        page.click("button:has-text('Save')")
    expect(page.locator(".flashes")).to_contain_text("the prompt is now version 2")

    page.click("nav.tabs >> text=Prompt")
    items = page.locator(".history-item")
    expect(items).to_have_count(2)
    expect(items.nth(0).locator(".note")).to_have_text("Edited with the project")
    expect(items.nth(0).locator(".badge")).to_have_text("production")
    assert page.input_value("#content") == "You are terse.\nAlways answer in English."
