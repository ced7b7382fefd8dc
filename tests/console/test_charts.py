"""SVG charts: well-formed, every point inside the plot, labels escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.console.charts import Series, line_chart

SVG = "{http://www.w3.org/2000/svg}"
finite = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
points = st.lists(st.tuples(finite, finite), max_size=30).map(sorted)
names = st.text(min_size=1, max_size=12)


def _norm(text: str) -> str:
    """What survives of a text in XML, leaving out what parsers may normalise."""
    return "".join(c for c in text if c.isprintable() and not c.isspace())


@settings(deadline=None)  # a loaded machine must not fail it on time
@given(st.lists(st.tuples(names, points), min_size=1, max_size=3), st.text(max_size=30))
def test_every_point_is_drawn_inside_the_plot(
    lines: list[tuple[str, list[tuple[float, float]]]], title: str
) -> None:
    svg = line_chart(title, [Series(n, p) for n, p in lines], y_min=None)
    root = ET.fromstring(svg)  # well-formed, whatever the names and title hold
    shown = root.find(f"{SVG}title")
    assert shown is not None and _norm(shown.text or "") == _norm(title)
    circles = root.findall(f"{SVG}circle")
    assert len(circles) == sum(len(p) for _, p in lines)
    width, height = (float(v) for v in root.attrib["viewBox"].split()[2:])
    for c in circles:
        assert 0 <= float(c.attrib["cx"]) <= width
        assert 0 <= float(c.attrib["cy"]) <= height
    drawn = root.findall(f"{SVG}path[@class='series']")
    assert [_norm(p.attrib["data-series"]) for p in drawn] == [
        _norm(n) for n, p in lines if p
    ]


def test_no_point_says_so() -> None:
    svg = line_chart("error rate", [Series("candidate", []), Series("baseline", [])])
    assert "no data yet" in svg and "candidate" in svg and "baseline" in svg
