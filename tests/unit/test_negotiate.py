"""PEP 691 content negotiation from Accept headers."""

import pytest

from wheelmill.publish.negotiate import SimpleFormat, negotiate, parse_accept

PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP, SimpleFormat.JSON),
        (FIREFOX, SimpleFormat.TEXT_HTML),
        ("application/vnd.pypi.simple.v1+json", SimpleFormat.JSON),
        ("application/vnd.pypi.simple.v1+html", SimpleFormat.HTML),
        ("text/html", SimpleFormat.TEXT_HTML),
        ("application/vnd.pypi.simple.latest+json", SimpleFormat.JSON),
        ("application/vnd.pypi.simple.latest+html", SimpleFormat.HTML),
        ("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", SimpleFormat.JSON),
    ],
)
def test_clients_get_their_format(accept: str, expected: SimpleFormat) -> None:
    assert negotiate(accept) is expected


def test_higher_quality_wins_whatever_the_order() -> None:
    assert negotiate("text/html;q=0.2, application/vnd.pypi.simple.v1+json;q=0.9") is SimpleFormat.JSON
    assert negotiate("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.9") is SimpleFormat.TEXT_HTML
    assert negotiate("application/vnd.pypi.simple.v1+html;q=0.7, text/html;q=0.3") is SimpleFormat.HTML


def test_named_type_beats_wildcard_at_equal_quality() -> None:
    assert negotiate("*/*, application/vnd.pypi.simple.v1+json") is SimpleFormat.JSON
    assert negotiate("application/*, text/html;q=0.5") is SimpleFormat.JSON


@pytest.mark.parametrize("accept", [None, "", "   ", "*/*", "text/*"])
def test_anything_means_text_html(accept: str | None) -> None:
    assert negotiate(accept) is SimpleFormat.TEXT_HTML


def test_more_specific_range_sets_the_quality() -> None:
    # text/html is refused outright even though */* would accept it.
    assert negotiate("text/html;q=0, */*;q=0.1") is SimpleFormat.JSON
    assert negotiate("text/*;q=0.9, text/html;q=0.1, application/vnd.pypi.simple.v1+json;q=0.5") is (
        SimpleFormat.JSON
    )


@pytest.mark.parametrize(
    "accept",
    [
        "text/plain",
        "application/json",
        "application/vnd.pypi.simple.v2+json",
        "application/vnd.pypi.simple.v1+json;q=0",
        "*/*;q=0",
        "text/html;q=0, application/vnd.pypi.simple.v1+json;q=0.000, application/*;q=0",
    ],
)
def test_nothing_acceptable_is_none(accept: str) -> None:
    assert negotiate(accept) is None


def test_malformed_ranges_are_dropped() -> None:
    assert parse_accept("garbage, text/html;q=high, text/html;q=2, application/vnd.pypi.simple.v1+json") == [
        ("application/vnd.pypi.simple.v1+json", 1.0)
    ]
    assert negotiate("garbage") is None


def test_formats_name_their_file_and_content_type() -> None:
    assert SimpleFormat.JSON.filename == "index.json"
    assert SimpleFormat.JSON.content_type == "application/vnd.pypi.simple.v1+json"
    assert SimpleFormat.HTML.filename == "index.html"
    assert SimpleFormat.HTML.content_type == "application/vnd.pypi.simple.v1+html; charset=utf-8"
    assert SimpleFormat.TEXT_HTML.content_type == "text/html; charset=utf-8"
