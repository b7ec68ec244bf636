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
