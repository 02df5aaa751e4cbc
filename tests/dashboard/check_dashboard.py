"""Checks the live dashboard in a headless browser against the query API.

    python check_dashboard.py BASE_URL SCREENSHOT_PATH [--token T] [--timeout 60]

Opens BASE_URL/dashboard, waits for the live feed, checks that the page's numbers (its
`data-metric` / `data-value` attributes) equal the query API's — per campaign clicks and
conversions and the total conversions from the `conversion_funnel` store, and every
`happytimes.facts.*` output count — checks that the page updates without reloading, and takes a
full-page screenshot. Exits 1 with a clear message (and the browser's console errors) on any
failure. Needs playwright (tests/rig/browser.sh bin prints a python that has it) and
/usr/bin/chromium.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

FACTS_PREFIX = "happytimes.facts."


class CheckFailed(Exception):
    pass


class Api:
    def __init__(self, base, token):
        self.base, self.token = base, token

    def get(self, path):
        request = urllib.request.Request(self.base + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            raise CheckFailed(f"GET {path}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from e

    def store_of(self, node):
        """The queryable store of a topology node (its dataset on the page)."""
        stores = [s for s in self.get("/v1/stores")["stores"] if s.get("node") == node and s.get("queryable", True)]
        if not stores:
            raise CheckFailed(f"no queryable store for node {node!r} in /v1/stores")
        stores.sort(key=lambda s: s.get("kind") != "aggregate")
        return stores[0]["name"]

    def expected(self, funnel_store):
        """The metrics the page must show, as the API computes them now."""
        body = self.get(f"/v1/stores/{urllib.parse.quote(funnel_store, safe='')}/range?limit=100000")
        if body.get("truncated"):
            raise CheckFailed(f"store {funnel_store} is truncated at limit=100000")
        want = {}
        total = 0
        for entry in body["entries"]:
            value = entry["value"]
            campaign = value.get("campaign")
            name = "(none)" if campaign is None else str(campaign)
            for field in ("clicks", "conversions"):
                metric = f"campaign.{name}.{field}"
                want[metric] = want.get(metric, 0) + (value.get(field) or 0)
            total += value.get("conversions") or 0
        want["stage.conversion"] = total
        for topic, count in self.get("/v1/outputs")["outputs"].items():
            if topic.startswith(FACTS_PREFIX):
                want["facts." + topic[len(FACTS_PREFIX):]] = count
        return want


def page_metrics(page):
    """Every data-metric on the page, by name: its data-value as a number (or the raw text)."""
    raw = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-metric]')]
             .map(e => [e.getAttribute('data-metric'), e.getAttribute('data-value')]))"""
    )
    out = {}
    for name, value in raw.items():
        try:
            number = float(value)
            out[name] = int(number) if number.is_integer() else number
        except (TypeError, ValueError, OverflowError):
            out[name] = value
    return out


def same(a, b):
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-9


def compare_numbers(page, api, funnel_store):
    """Each metric must equal the API before or after reading the page, in one of ~15 tries
    (traffic keeps flowing). Returns the number of metrics checked."""
    matched, last = set(), {}
    for attempt in range(15):
        before = api.expected(funnel_store)
        shown = page_metrics(page)
        after = api.expected(funnel_store)
        for name in set(before) | set(after):
            got = shown.get(name)
            if same(got, before.get(name)) or same(got, after.get(name)):
                matched.add(name)
            else:
                last[name] = (got, before.get(name), after.get(name))
        wanted = set(before) | set(after)
        if wanted and wanted <= matched:
            return len(wanted)
        time.sleep(1)
    missing = sorted(wanted - matched)
    lines = [f"  {name}: page {last[name][0]!r}, API {last[name][1]!r} then {last[name][2]!r}" for name in missing]
    raise CheckFailed("page numbers never matched the API for:\n" + "\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("screenshot")
    parser.add_argument("--token")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    api = Api(base, args.token)
    timeout_ms = args.timeout * 1000
    errors = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("console", lambda m: errors.append(f"console error: {m.text} ({m.location.get('url', '?')})")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            url = base + "/dashboard" + (f"?access_token={urllib.parse.quote(args.token, safe='')}" if args.token else "")
            try:
                page.goto(url, timeout=timeout_ms)
                # 1-2. Connected, with the conversion numbers drawn.
                try:
                    page.wait_for_selector('body[data-connected="true"] [data-metric="stage.conversion"][data-value]',
                                           state="attached", timeout=timeout_ms)
                except PlaywrightError as e:
                    raise CheckFailed(f"the page did not connect and show stage.conversion within {args.timeout:g} s") from e

                # 3. The page's numbers equal the API's.
                checked = compare_numbers(page, api, api.store_of("conversion_funnel"))

                # 4. It updates without reloading.
                page.evaluate("window.__noReload = 1")
                start = page.evaluate("""() => [Number(document.body.dataset.seq),
                    Number(document.querySelector('[data-metric="outputs.total"]')?.getAttribute('data-value'))]""")
                try:
                    page.wait_for_function(
                        """([seq, total]) => Number(document.body.dataset.seq) > seq &&
                            Number(document.querySelector('[data-metric="outputs.total"]')?.getAttribute('data-value')) > total""",
                        arg=start, timeout=timeout_ms)
                except PlaywrightError as e:
                    raise CheckFailed(f"seq and outputs.total did not both increase within {args.timeout:g} s "
                                      f"(from seq {start[0]}, outputs.total {start[1]})") from e
                if page.evaluate("window.__noReload") != 1:
                    raise CheckFailed("the page reloaded (window.__noReload is gone)")
                seq_now = page.evaluate("Number(document.body.dataset.seq)")

                # 5. A screenshot.
                page.screenshot(path=args.screenshot, full_page=True)
                if errors:
                    raise CheckFailed("the page logged errors")
            except CheckFailed as e:
                print(f"dashboard check FAILED: {e}", file=sys.stderr)
                for line in errors:
                    print("  " + line, file=sys.stderr)
                try:
                    page.screenshot(path=args.screenshot, full_page=True)
                    print(f"  screenshot of the failure: {args.screenshot}", file=sys.stderr)
                except PlaywrightError:
                    pass
                return 1
        finally:
            browser.close()
    print(f"dashboard ok: {checked} metrics equal the API, seq {start[0]} -> {seq_now}, screenshot {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
