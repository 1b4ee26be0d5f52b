"""The colours in static/css meet WCAG 2.1 AA, computed from the stylesheets themselves.

Text needs 4.5:1 against its background (1.4.3); input borders and the focus outline need 3:1
against what surrounds them (1.4.11). Each pair below is a place where that text is shown.
The dark theme is declared twice in app.css (for the system setting and for the toggle): the
two blocks must be identical.
"""

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parents[1] / "static" / "css"
APP = (CSS / "app.css").read_text()
HIGHLIGHT = (CSS / "highlight.css").read_text()

TEXT = [
    # surface-2: also a reply's feedback comment; info-bg: a pressed 👍/👎.
    ("text", ["bg", "surface", "surface-2", "code-bg", "warn-bg", "error-bg", "info-bg", "ok-bg"]),
    ("muted", ["bg", "surface", "surface-2", "code-bg", "warn-bg", "info-bg", "ok-bg"]),
    ("accent", ["bg", "surface", "surface-2", "code-bg", "info-bg", "ok-bg"]),  # links
    ("accent-text", ["accent", "accent-hover"]),  # primary buttons, the user's bubbles
    ("danger", ["bg", "surface", "surface-2", "error-bg"]),
    ("danger-text", ["danger"]),
    ("ok", ["bg", "surface"]),
]
UI = [
    ("border-strong", ["bg", "surface"]),
    ("focus", ["bg", "surface", "surface-2"]),
    # A pressed 👍/👎 (feedback): its accent ring against its fill and the reply's bubble.
    ("accent", ["info-bg", "surface-2"]),
]


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def block(selector: str, css: str = APP) -> str:
    start = css.index(selector + " {") + len(selector) + 2
    return css[start : css.index("}", start)]


def variables(text: str) -> dict[str, str]:
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})\b", text))


THEMES = {
    "light": variables(block(":root")),
    "dark": variables(block(':root[data-theme="dark"]')),
}


def pairs(spec):
    for fg, backgrounds in spec:
        for bg in backgrounds:
            yield fg, bg


def test_both_dark_blocks_are_the_same():
    assert variables(block(':root:not([data-theme="light"])')) == THEMES["dark"]
    assert THEMES["light"].keys() == THEMES["dark"].keys()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize(("fg", "bg"), list(pairs(TEXT)))
def test_text_contrast_is_at_least_4_5(theme, fg, bg):
    colours = THEMES[theme]
    assert ratio(colours[fg], colours[bg]) >= 4.5, (theme, fg, bg)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize(("fg", "bg"), list(pairs(UI)))
def test_borders_and_focus_contrast_is_at_least_3(theme, fg, bg):
    colours = THEMES[theme]
    assert ratio(colours[fg], colours[bg]) >= 3, (theme, fg, bg)


@pytest.mark.parametrize(
    ("theme", "part", "background"),
    [
        ("light", HIGHLIGHT.split(':root[data-theme="dark"]')[0], "#f8f8f8"),
        ("dark", HIGHLIGHT[HIGHLIGHT.index("@media") :], "#272822"),
    ],
)
def test_code_highlighting_contrast(theme, part, background):
    assert f"background: {background}" in part
    rules = re.findall(
        r"\.hl-(\w+) \{ color: (#[0-9A-Fa-f]{3,6})(?:; background-color: (#\w+))?", part
    )
    assert len(rules) > 40
    low = [
        (n, c, round(ratio(c, bg or background), 2))
        for n, c, bg in rules
        if ratio(c, bg or background) < 4.5
    ]
    assert low == [], theme
