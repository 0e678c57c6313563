"""Screenshot of Label Studio's labelling page showing gdc's brush masks (docs/label-studio.png).

    python docs/integrations/screenshot.py URL EMAIL PASSWORD PROJECT TASK

Drives Debian's Chromium (/usr/bin/chromium) with Playwright; run it after
benchmarks/annotation_tools.py, which saves gdc's regions as each task's annotation.
"""
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

url, email, password, project, task = sys.argv[1:6]
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/user/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.goto(f"{url}/projects/{project}/data?task={task}")
    page.wait_for_selector("canvas", timeout=60_000)
    page.wait_for_timeout(3000)  # the brush layers render after the image
    page.screenshot(path=str(Path(__file__).parents[1] / "label-studio.png"))
    browser.close()
