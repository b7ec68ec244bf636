"""How tests, benchmarks and `make screenshots` launch Debian's chromium under Playwright (no browser
download): one list of flags for all of them."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def log_in(page, base: str, password: str, *, name: str = "admin") -> None:  # type: ignore[no-untyped-def]
    """Sign `page` in on the dashboard's login form at `base` and wait for the Overview."""
    if not page.url.startswith(base + "/login"):
        page.goto(base + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(base + "/")
