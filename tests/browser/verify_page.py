"""Drives the gateway's verify page in a real browser: Debian's Chromium,
through Playwright (its own browser downloads are not used).

    verify_page.py BASE_URL [--feedback COMMENT] ITEM...

For each item: opens BASE_URL/verify; a file is picked through the file
input's label, a URL (http...) typed into the address field and sent with
its button, as a person (or a screen-reader user, finding them by label)
would. Waits for the answer and prints one JSON line: {"file", "verdict",
"details": {name: value}, "meaning", "console_errors"}. With --feedback,
after the last item it opens the feedback disclosure, says the verdict is
wrong with COMMENT, and prints {"feedback": what the page then says}. Set
LIKENESS_CHROMIUM to use another browser binary.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

LABEL = "Image to check (JPEG, PNG or WebP)"
URL_LABEL = "Or the image's web address (https)"


def main():
    base, items = sys.argv[1], sys.argv[2:]
    feedback = None
    if items[:1] == ["--feedback"]:
        feedback, items = items[1], items[2:]
    chromium = os.environ.get("LIKENESS_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        for item in items:
            page.goto(base + "/verify")
            if item.startswith("http"):
                page.get_by_label(URL_LABEL).fill(item)
                page.get_by_role("button", name="Check address").click()
            else:
                page.get_by_label(LABEL).set_input_files(item)
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
                "file": item,
                "verdict": page.text_content("#verdict"),
                "details": details,
                "meaning": page.text_content("#meaning"),
                "console_errors": errors[:],
            }), flush=True)
        if feedback is not None:
            page.get_by_text("Is this verdict right? Tell us").click()
            page.get_by_label("wrong", exact=True).check()
            page.get_by_label("Anything to add").fill(feedback)
            page.get_by_role("button", name="Send feedback").click()
            page.wait_for_function("() => document.getElementById('thanks').textContent !== ''", timeout=30000)
            print(json.dumps({"feedback": page.text_content("#thanks"), "console_errors": errors[:]}), flush=True)
        browser.close()


if __name__ == "__main__":
    main()
