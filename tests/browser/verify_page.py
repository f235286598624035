"""Drives the gateway's verify page in a real browser: Debian's Chromium,
through Playwright (its own browser downloads are not used).

    verify_page.py BASE_URL FILE...

For each file: opens BASE_URL/verify, picks the file through the input's
label (as a screen-reader user would find it), waits for the answer, and
prints one JSON line: {"file", "verdict", "details": {name: value}, "meaning",
"busy"}. Set LIKENESS_CHROMIUM to use another browser binary.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

LABEL = "Image to check (JPEG, PNG or WebP)"


def main():
    base, files = sys.argv[1], sys.argv[2:]
    chromium = os.environ.get("LIKENESS_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        for path in files:
            page.goto(base + "/verify")
            page.get_by_label(LABEL).set_input_files(path)
            page.wait_for_function(
                "() => { const v = document.getElementById('verdict').textContent;"
                " return v !== '' && v !== 'Checking…'"
                " && document.getElementById('result').getAttribute('aria-busy') === 'false'; }",
                timeout=60000,
            )
            details = page.eval_on_selector_all(
                "#details dt",
                "dts => Object.fromEntries(dts.map(dt => [dt.textContent, dt.nextElementSibling.textContent]))",
            )
            print(json.dumps({
                "file": path,
                "verdict": page.text_content("#verdict"),
                "details": details,
                "meaning": page.text_content("#meaning"),
                "console_errors": errors[:],
            }), flush=True)
        browser.close()


if __name__ == "__main__":
    main()
