"""What every chart drawn by static/chart.js must do in a real browser (a Playwright page): a time axis,
a value scale with its unit, and a value shown on hover. Shared by the browser tests of every page with
charts."""

from __future__ import annotations

HOVER_VALUE = """([id, unit]) => {
  const tip = document.querySelector(`#${id} .tchart-tip`);
  const lines = Array.from(tip.querySelectorAll("div"), (d) => d.textContent);
  return !tip.hidden && lines.some((l) => l.includes(unit) && /[1-9]/.test(l.split(": ").slice(-1)[0]))
    ? tip.textContent : "";
}"""


def check_chart(page, fig: str, unit: str) -> str:  # type: ignore[no-untyped-def]
    """The chart `fig` has a time axis and a value scale with `unit`, and shows a (non-zero) value with
    `unit` on hover somewhere along it; returns that hover text."""
    page.wait_for_selector(f"#{fig}[data-state=drawn]", timeout=10_000)
    x_labels = page.locator(f"#{fig} .x-axis text").all_text_contents()
    y_labels = page.locator(f"#{fig} .y-axis text").all_text_contents()
    assert len(x_labels) >= 2 and all(":" in t or " " in t for t in x_labels), (fig, x_labels)
    assert len(y_labels) >= 3 and any(unit in t for t in y_labels), (fig, y_labels)
    svg = page.locator(f"#{fig} .tchart-body svg")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    for i in range(60):  # right to left: the newest points first
        page.mouse.move(box["x"] + box["width"] * (0.995 - i / 60), box["y"] + box["height"] / 2)
        text = page.evaluate(HOVER_VALUE, [fig, unit])
        if text:
            return str(text)
    src = page.get_attribute(f"#{fig}", "data-src")
    answer = page.evaluate("s => fetch(s).then((r) => r.text())", src)
    tip = page.inner_text(f"#{fig} .tchart-tip")
    raise AssertionError(
        f"{fig}: no value with {unit!r} shown on hover (last: {tip!r}; {src}: {answer[:400]})"
    )
