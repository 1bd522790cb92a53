"""PEP 691 content negotiation: which simple-index format answers an Accept header.

Pure functions, no I/O: the embedded server calls this per request and the tests check it alone.
Matching follows RFC 9110 section 12.5.1: each format takes the quality of the most specific media
range that matches it and q=0 means "not acceptable". At equal quality a format the client names
beats one reached through a wildcard; remaining ties go to text/html, which every client reads
(PEP 691 keeps it the default for clients that do not ask for a format), then to JSON.
"""

import enum

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

# PEP 691: "latest" names whatever version the server serves, today v1.
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}


class SimpleFormat(enum.Enum):
    """A format of /simple/ pages, in server preference order, with the file that holds it."""

    TEXT_HTML = TEXT_HTML
    JSON = JSON_V1
    HTML = HTML_V1

    @property
    def filename(self) -> str:
        """The file in a /simple/ directory that holds this format."""
        return "index.json" if self is SimpleFormat.JSON else "index.html"

    @property
    def content_type(self) -> str:
        """The Content-Type header of the answer."""
        return self.value if self is SimpleFormat.JSON else f"{self.value}; charset=utf-8"


def _parse_quality(value: str) -> float | None:
    """RFC 9110 qvalue: 0 to 1 with at most three decimals; None when malformed."""
    try:
        quality = float(value)
    except ValueError:
        return None
    return quality if 0.0 <= quality <= 1.0 else None


def parse_accept(header: str) -> list[tuple[str, float]]:
    """The (media range, quality) pairs of an Accept header, lowercased; malformed ones dropped."""
    ranges = []
    for item in header.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        media_range = media_range.lower()
        if media_range.count("/") != 1:
            continue
        quality: float | None = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                quality = _parse_quality(value.strip())
        if quality is not None:
            ranges.append((_ALIASES.get(media_range, media_range), quality))
    return ranges


def _specificity(media_range: str, media_type: str) -> int:
    """How precisely `media_range` names `media_type`: 2 exact, 1 type/*, 0 */*, -1 no match."""
    if media_range == media_type:
        return 2
    if media_range == "*/*":
        return 0
    major, _, minor = media_range.partition("/")
    return 1 if minor == "*" and media_type.startswith(f"{major}/") else -1


def match(media_type: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The quality the client gives `media_type` and how specifically: its best-fitting range."""
    best_specificity, quality = -1, 0.0
    for media_range, range_quality in ranges:
        specificity = _specificity(media_range, media_type)
        if specificity > best_specificity:
            best_specificity, quality = specificity, range_quality
    return quality, best_specificity


def negotiate(accept: str | None) -> SimpleFormat | None:
    """The format to answer with, or None when nothing the client accepts is served (406).

    A missing or blank header means the client takes anything (RFC 9110).
    """
    ranges = parse_accept(accept) if accept and accept.strip() else [("*/*", 1.0)]
    best, best_key = None, (0.0, -1)
    for candidate in SimpleFormat:  # in preference order: only a strictly better key wins
        key = match(candidate.value, ranges)
        if key[0] > 0 and key > best_key:
            best, best_key = candidate, key
    return best
