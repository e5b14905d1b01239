"""A real browser (Debian's chromium, driven by Playwright) uses the app: predict, add a label, see statistics."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import pytest
from app_testing import app_config, image_bytes, served
from playwright.sync_api import expect, sync_playwright

from app.application import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (Playwright's own browser download needs internet access)."""
    if shutil.which(CHROMIUM) is None:
        subprocess.run("apt-get update && apt-get install -y chromium", shell=True, check=True)
    return CHROMIUM


def replace_upload(page, path) -> None:
    """Upload another image and wait for its prediction (the previous one is removed first)."""
    page.locator("#upload button[aria-label='Clear']").click()
    expect(page.locator("#latency input")).to_have_value("", timeout=30_000)
    page.locator("#upload input[type=file]").set_input_files(str(path))
    # By accessible name: Gradio 6 renders the name as two spans (stem, extension), whose text may be split.
    expect(page.locator("#upload").get_by_role("cell", name=path.name)).to_be_visible(timeout=30_000)
    expect(page.locator("#latency input")).not_to_have_value("", timeout=30_000)


@pytest.mark.browser
def test_user_predicts_adds_a_label_and_sees_statistics_change(clearml_server, checkpoints, chromium, tmp_path):
    project = f"app-test-{uuid.uuid4().hex[:8]}"
    config = app_config(tmp_path / "feedback", "--project", project, "--dataset-project", project)
    app = create_app(config, None, model=served(checkpoints["two"], "model-two"))
    photos = []
    for index, class_name in enumerate(["cat", "dog", "cat"]):
        photos.append(tmp_path / f"my-pet-{index}.png")
        photos[-1].write_bytes(image_bytes(class_name, 900 + index, size=128))
    with app, app.serve(background=True, quiet=True) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(server.url)
        expect(page.locator("#served-model")).to_contain_text("model-two", timeout=30_000)

        page.locator("#upload input[type=file]").set_input_files(str(photos[0]))
        expect(page.locator("#prediction")).to_contain_text("cat", timeout=30_000)
        expect(page.locator("#prediction")).to_contain_text("dog")
        expect(page.locator("#latency input")).not_to_have_value("", timeout=10_000)

        page.get_by_role("tab", name="Statistics").click()
        counts = page.locator("#feedback-counts")
        expect(counts).to_contain_text("0 pending, 0 published", timeout=30_000)
        page.get_by_role("tab", name="Classify").click()

        page.locator("#confirm").click()  # the model was right
        expect(page.locator("#feedback-message")).to_contain_text("Stored as cat", timeout=30_000)

        replace_upload(page, photos[1])
        page.locator("#new-label textarea").fill("not a label!")
        page.locator("#submit-new-label").click()
        expect(page.get_by_text(re.compile("use only lowercase letters")).first).to_be_visible(timeout=30_000)
        page.locator("#new-label textarea").fill("Rabbit")
        page.locator("#submit-new-label").click()
        expect(page.locator("#feedback-message")).to_contain_text("Stored as rabbit", timeout=30_000)

        replace_upload(page, photos[2])
        page.locator("#class input").click()
        page.get_by_role("option", name="rabbit").click()  # the label added a moment ago is offered
        page.locator("#submit-class").click()
        expect(page.locator("#feedback-message")).to_contain_text("Stored as rabbit", timeout=30_000)

        page.get_by_role("tab", name="Statistics").click()
        expect(counts).to_contain_text("3 pending, 0 published", timeout=30_000)
        expect(counts).to_contain_text(re.compile(r"cat\s+1\s+0"))
        expect(counts).to_contain_text(re.compile(r"rabbit\s+2\s+0"))
        browser.close()
    stored = {item.original_name: (item.label, item.prediction) for item in app.service.store.items()}
    assert stored == {
        "my-pet-0.png": ("cat", "cat"),
        "my-pet-1.png": ("rabbit", "dog"),
        "my-pet-2.png": ("rabbit", "cat"),
    }


@pytest.mark.browser
def test_reviewer_labels_two_uncertain_uploads_with_the_keyboard(checkpoints, chromium, tmp_path):
    app = create_app(
        app_config(tmp_path / "feedback", "--review-keep"), None, model=served(checkpoints["two"], "model-two")
    )
    with app:
        for index, class_name in enumerate(["cat", "dog", "cat"]):
            app.service.predict(image_bytes(class_name, 950 + index, size=96))
        queue = app.service.review
        first, second, third = (item.sha256 for item in queue.items())
        with app.serve(background=True, quiet=True) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url)
            page.get_by_role("tab", name="Review").click()
            info = page.locator("#review-info")
            expect(info).to_contain_text("3 upload(s) to review", timeout=30_000)
            page.locator("#review-label textarea").fill("rabbit")
            page.locator("#review-label textarea").press("Enter")
            expect(info).to_contain_text("Stored as rabbit", timeout=30_000)
            expect(info).to_contain_text("2 upload(s) to review")
            page.locator("#review-label textarea").fill("dog")
            page.locator("#review-label textarea").press("Enter")
            expect(info).to_contain_text("1 upload(s) to review", timeout=30_000)
            browser.close()
    stored = {item.sha256: item.label for item in app.service.store.items()}
    assert stored == {first: "rabbit", second: "dog"}
    assert [item.sha256 for item in queue.items()] == [third]
