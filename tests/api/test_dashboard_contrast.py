"""Colour contrast of the dashboard, computed from its stylesheet (WCAG 2.2 §1.4.3
Contrast (Minimum): 4.5:1 for text, and for the text of every control).

Relative luminance and contrast ratio as WCAG 2.x defines them (written here, not taken
from the code under test).  Before the fix the header's "Sign out" button declared
white text and no background, so it showed the browser's button face (#efefef in
Chromium): 1.15:1.
"""

from __future__ import annotations

import re

import pytest

from api.dashboard.routes import STYLE

MINIMUM = 4.5
PAGE_BACKGROUNDS = ("#f6f8fa", "#ffffff")  # body, and the sections/tables on it
CONTROLS = ("a", "header a", "button", "header button", "input", "input::placeholder")


def _rgb(colour: str) -> tuple[float, float, float]:
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(ch * 2 for ch in value)
    r, g, b = (int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return r, g, b


def luminance(colour: str) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def rules(css: str) -> dict[str, dict[str, str]]:
    """selector -> declarations (comma-separated selectors each get the block)."""
    out: dict[str, dict[str, str]] = {}
    for selectors, block in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        decls = {}
        for decl in block.split(";"):
            name, sep, value = decl.partition(":")
            if sep:
                decls[name.strip()] = value.strip()
        for selector in selectors.split(","):
            out.setdefault(selector.strip(), {}).update(decls)
    return out


def _colour(value: str | None) -> str | None:
    if value is None:
        return None
    found = re.search(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", value)
    return found[0] if found else None


def test_the_oracle_against_known_values() -> None:
    # WCAG's own anchors: black on white is 21:1, a colour on itself 1:1; and the
    # bug's figure, white on Chromium's button face.
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#12355b", "#12355b") == pytest.approx(1.0)
    assert contrast("#fff", "#efefef") == pytest.approx(1.15, abs=0.01)


@pytest.mark.parametrize("selector", CONTROLS)
def test_every_control_states_its_colours_and_meets_4_5(selector: str) -> None:
    sheet = rules(STYLE)
    assert selector in sheet, f"{selector} has no rule: the browser default would decide"
    decls = sheet[selector]
    fg = _colour(decls.get("color"))
    assert fg is not None, f"{selector} declares no text colour"
    bg = _colour(decls.get("background") or decls.get("background-color"))
    backgrounds = (bg,) if bg else PAGE_BACKGROUNDS
    if selector in ("button", "header button", "input"):
        assert bg is not None, f"{selector} must declare its background"
    for background in backgrounds:
        assert contrast(fg, background) >= MINIMUM, (selector, fg, background)


def test_all_text_colours_meet_4_5() -> None:
    header_bg = _colour(rules(STYLE)["header"]["background"])
    assert header_bg is not None
    for selector, decls in rules(STYLE).items():
        fg = _colour(decls.get("color"))
        if fg is None or selector.startswith("svg"):
            continue
        own = _colour(decls.get("background"))
        if own:
            backgrounds: tuple[str, ...] = (own,)
        elif selector.startswith("header"):
            backgrounds = (header_bg,)
        else:
            backgrounds = PAGE_BACKGROUNDS
        for background in backgrounds:
            assert contrast(fg, background) >= MINIMUM, (selector, fg, background)


def test_chart_labels_meet_4_5() -> None:
    tick = _colour(rules(STYLE)["svg .tick"]["fill"])
    assert tick is not None and contrast(tick, "#ffffff") >= MINIMUM
