"""The Files tab in real Chromium: two files uploaded with per-file progress, the list refreshed
in place, a hostile name shown as text, download, "use in chat", delete with confirmation, and
the size limit said before anything is sent."""

from pathlib import Path

import pytest

from tests.browser.helpers import login
from tests.factories import make_project, make_user

pytestmark = pytest.mark.browser


def test_upload_download_use_and_delete_files(app, live_server, page, shot):
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner, name="Docs bot")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}")
    page.click("nav.tabs >> text=Files")
    page.wait_for_url(f"{live_server}/projects/{project_id}/files")
    assert page.is_visible("#no-files")

    big = b"# Handbook\n\n" + b"Refunds are accepted within 30 days.\n" * 60_000  # ~2.2 MB
    page.set_input_files(
        "#file-input",
        [
            {"name": "handbook.md", "mimeType": "text/markdown", "buffer": big},
            {
                "name": "<img src=x onerror=alert(1)>.txt",
                "mimeType": "text/plain",
                "buffer": b"hostile name",
            },
        ],
    )
    page.click("#upload-button")
    page.locator(".upload-item.is-done").nth(1).wait_for()  # (CSP forbids wait_for_function)
    bars = page.eval_on_selector_all("#upload-queue progress", "els => els.map(e => e.value)")
    assert bars == [100, 100]
    assert page.locator(".upload-status").all_inner_texts() == ["Uploaded.", "Uploaded."]

    # The list was refreshed in place, without a reload.
    rows = page.locator("table.files tbody tr")
    rows.nth(1).wait_for()
    names = page.locator("td.file-name").all_inner_texts()
    assert sorted(names) == ["handbook.md", "img src=x onerror=alert(1).txt"]
    handbook = page.locator("tr", has=page.locator("td.file-name", has_text="handbook.md"))
    assert "chars" in handbook.locator(".text-status").inner_text()

    with page.expect_download() as info:
        handbook.locator("td.file-name a").click()
    download = info.value
    assert download.suggested_filename == "handbook.md"
    assert Path(download.path()).read_bytes() == big

    handbook.locator("button", has_text="Use in chat").click()
    page.wait_for_selector("text=handbook.md is used in chat.")
    assert page.locator("button[aria-pressed=true]").inner_text() == "In chat ✓"

    shot(page, "files", full_page=True)

    hostile = page.locator("tr", has=page.locator("td.file-name", has_text="onerror"))
    hostile.locator("a.danger-link").click()
    assert page.inner_text("h1") == "Delete “img src=x onerror=alert(1).txt”?"
    page.click("text=Delete file")
    page.wait_for_selector("text=Deleted img src=x onerror=alert(1).txt.")
    assert page.locator("td.file-name").all_inner_texts() == ["handbook.md"]
    assert page.problems == []


def test_oversize_file_is_refused_in_the_page(app, live_server, page):
    app.config["MAX_UPLOAD_MB"] = 1
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner, name="Docs bot")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/files")
    page.set_input_files(
        "#file-input",
        [{"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * (2 * 1024 * 1024)}],
    )
    page.click("#upload-button")
    page.wait_for_selector(".upload-item.is-error")
    assert "larger than the 1 MB limit" in page.inner_text(".upload-status")
    assert page.is_visible("#no-files")


def test_a_pdf_shows_extracting_then_its_outcome_without_a_reload(app, live_server, page, shot):
    """PDF text is extracted in the server's sandbox after the upload answers: the row says
    "extracting…", and the page refreshes itself until the outcome is there."""
    from tools.pdfs import bomb_pdf

    app.config.update(EXTRACT_CPU_SECONDS=1)
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner, name="Docs bot")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/files")
    page.set_input_files(
        "#file-input", [{"name": "bomb.pdf", "mimeType": "application/pdf", "buffer": bomb_pdf()}]
    )
    page.click("#upload-button")
    page.wait_for_selector("td.text-pending >> text=extracting…")
    shot(page, "files-extracting", full_page=True)
    page.wait_for_selector("td.text-too_complex >> text=too complex to extract", timeout=20_000)
    assert "1 s of CPU" in page.inner_text("td.text-too_complex")
    assert page.inner_text("td.chat-cell") == "No text for chat"  # not offered at all
    assert page.locator("button", has_text="Use in chat").count() == 0
    assert page.problems == []


class TestWithTheOpenAICopy:
    """OpenAI Files is configured (the fake server) and .docx is an added type."""

    @pytest.fixture
    def config_overrides(self, fake):
        from app.filetypes import parse_extensions

        fake.reset()
        return fake.app_config(
            openrouter=False, UPLOAD_ALLOWED_EXTENSIONS=parse_extensions("builtin,.docx")
        )

    def test_a_failed_copy_says_why_and_retry_the_copy_fixes_it(
        self, app, live_server, page, shot, fake
    ):
        owner = make_user(app, email="ada@example.com")
        project_id = make_project(app, owner, name="Docs bot")
        login(page, live_server, owner)
        page.goto(f"{live_server}/projects/{project_id}/files")
        assert "Also .docx, kept as they are (no text for chat)." in page.inner_text("#upload-help")

        docx = b"PK\x03\x04" + bytes(range(256)) * 8
        fake.script("files", {"status": 503, "message": "The server is overloaded."})
        page.set_input_files(
            "#file-input",
            [
                {"name": "plan.docx", "mimeType": "application/octet-stream", "buffer": docx},
                {"name": "notes.md", "mimeType": "text/markdown", "buffer": b"# Notes\n"},
            ],
        )
        page.click("#upload-button")
        page.locator(".upload-item.is-done").nth(1).wait_for()
        assert page.locator(".upload-status").all_inner_texts() == ["Uploaded.", "Uploaded."]

        plan = page.locator("tr", has=page.locator("td.file-name", has_text="plan.docx"))
        plan.locator("td.sync-failed").wait_for()
        failed = plan.locator("td.sync-failed").inner_text()
        assert "Copy failed" in failed
        assert (
            "OpenAI had a problem on its side; retry the copy later. "
            "OpenAI said: The server is overloaded."
        ) in failed
        assert plan.locator("td.chat-cell").inner_text() == "No text for chat"
        assert plan.locator("td.chat-cell button").count() == 0
        notes = page.locator("tr", has=page.locator("td.file-name", has_text="notes.md"))
        notes.locator("td.sync-synced").wait_for()  # the copies are jobs: the list refreshes
        assert notes.locator("td.sync-synced").inner_text() == "copied"
        assert notes.locator("button", has_text="Use in chat").is_enabled()

        shot(page, "files-openai", full_page=True)

        plan.locator("button", has_text="Retry the copy").click()
        page.wait_for_selector("text=Copying plan.docx to OpenAI…")
        plan = page.locator("tr", has=page.locator("td.file-name", has_text="plan.docx"))
        plan.locator("td.sync-synced").wait_for()
        assert plan.locator("td.sync-synced").inner_text() == "copied"
        assert page.locator("button", has_text="Retry the copy").count() == 0
        copies = {f["filename"]: f for f in fake.files.values()}
        assert copies["plan.docx"]["content"] == docx
        assert copies["plan.docx"]["purpose"] == "assistants"
        assert page.problems == []
