"""The simple repository index: PEP 503 HTML and PEP 691 JSON.

Both formats of a project page render from one context, which is itself the PEP 691 document, so
the two cannot disagree about files, hashes, yanks or metadata (the approach of warehouse's
`api/simple.py`). The root index of every project is streamed: it has one line per project.

A project's HTML page is built from strings, every value through `html.escape`, not from a
template: its markup is fixed by PEP 503 and a full publish renders 175,000 of them, where a
Jinja2 render with autoescaping cost five times as much as the string building (0.14 ms against
0.03 ms a page, the largest part of the index's rendering).
"""

import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from html import escape
from typing import Any

import orjson
from jinja2 import Environment

from wheelmill.publish.model import IndexFile, ProjectIndex

API_VERSION = "1.1"  # PEP 700; clients ignore the PEP 708 `tracks` keys they do not know
_CHUNK_CHARS = 1 << 16


@lru_cache(maxsize=1024)
def upload_time(moment: datetime) -> str:
    """PEP 700's form: ISO 8601 in UTC with a Z, fractional seconds only when there are some.

    Remembered: a build's wheel and its alias, and a release's files, share their time.
    """
    if moment.tzinfo is not None:  # naive times come from the database, in UTC already
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds") + "Z"


# A site-root path ("/files/...") relative to a /simple/NAME/ page: up to the root and down
# again. Relative links keep the index working wherever the site is mounted (PEP 503 allows
# them; PEP 691 resolves them against the page's URL, the same directory for both formats).
_UP_FROM_PROJECT = "../../"


def _yanked(reason: str | None) -> str | bool:
    """PEP 592 in PEP 691 form: False, True when yanked without a reason, else the reason."""
    if reason is None:
        return False
    return reason or True


def _file_entry(file: IndexFile) -> dict[str, Any]:
    """One PEP 691 file dictionary, for a /simple/NAME/ page."""
    metadata: dict[str, str] | bool = (
        {"sha256": file.core_metadata_sha256} if file.core_metadata_sha256 else False
    )
    url = file.url
    entry: dict[str, Any] = {
        "filename": file.filename,
        "url": _UP_FROM_PROJECT + url[1:] if url.startswith("/") else url,  # absolute URLs as they are
        "hashes": {"sha256": file.sha256},
        "requires-python": file.requires_python,
        "yanked": _yanked(file.yanked),
        "core-metadata": metadata,  # PEP 714
        "dist-info-metadata": metadata,  # PEP 658's name, still read by older pip
        "size": file.size,
    }
    if file.upload_time is not None:
        entry["upload-time"] = upload_time(file.upload_time)
    return entry


def project_context(index: ProjectIndex) -> dict[str, Any]:
    """The PEP 691 document of one project: the JSON page as is, and the HTML page's context."""
    meta: dict[str, Any] = {"api-version": API_VERSION, "_last-serial": index.last_serial}
    if index.tracks:
        meta["tracks"] = [index.tracks]
    return {
        "meta": meta,
        "name": index.name,
        "versions": list(index.versions),
        "files": list(map(_file_entry, index.files)),
    }


def dump_json(document: Any) -> bytes:
    """Compact UTF-8 JSON, the bytes `json.dumps(separators=(",", ":"), ensure_ascii=False)` makes.

    orjson, because a full publish encodes 350,000 JSON pages and the standard library took
    seven times as long (0.135 ms against 0.019 ms a project's two documents).
    """
    return orjson.dumps(document)


def render_project_json(context: dict[str, Any]) -> bytes:
    """The PEP 691 JSON page."""
    return dump_json(context)


def _anchor(file: dict[str, Any]) -> str:
    """One file's link with its PEP 503/592/658/714 attributes."""
    attributes = ""
    requires_python = file["requires-python"]
    if requires_python is not None:
        attributes = f' data-requires-python="{escape(requires_python)}"'
    yanked = file["yanked"]
    if yanked is not False:
        attributes += f' data-yanked="{"" if yanked is True else escape(yanked)}"'
    metadata = file["core-metadata"]
    if metadata:
        digest = escape(metadata["sha256"])
        attributes += f' data-core-metadata="sha256={digest}" data-dist-info-metadata="sha256={digest}"'
    href = f"{escape(file['url'])}#sha256={escape(file['hashes']['sha256'])}"
    return f'    <a href="{href}"{attributes}>{escape(file["filename"])}</a><br>\n'


def render_project_html(context: dict[str, Any]) -> bytes:
    """The PEP 503 HTML page, from the same context as the JSON one."""
    meta, name = context["meta"], escape(context["name"])
    tracks = "".join(f'    <meta name="pypi:tracks" content="{escape(u)}">\n' for u in meta.get("tracks", ()))
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n"
        f'    <meta name="pypi:repository-version" content="{escape(meta["api-version"])}">\n{tracks}'
        f"    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
        + "".join(map(_anchor, context["files"]))
        + f"  </body>\n</html>\n<!--SERIAL {int(meta['_last-serial'])}-->\n"
    ).encode()


def _batched(pieces: Iterable[str]) -> Iterator[bytes]:
    """Join small strings into large encoded chunks: one write per piece would dominate."""
    buffer: list[str] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= _CHUNK_CHARS:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    yield "".join(buffer).encode()


def json_array_chunks(head: str, items: Iterable[Any], tail: str) -> Iterator[bytes]:
    """`head`, the items as a JSON array's contents, then `tail`, encoded in large chunks.

    Items are dumped a thousand at a time: one C-level dump per batch is several times faster
    than one per item, and memory stays bounded for the 175,000-project lists.
    """
    yield head.encode()
    iterator, separator = iter(items), b""
    while batch := list(itertools.islice(iterator, 1000)):
        yield separator + dump_json(batch)[1:-1]
        separator = b","
    yield tail.encode()


def root_json_chunks(names: Iterable[str], last_serial: int) -> Iterator[bytes]:
    """The PEP 691 root index, streamed."""
    meta = dump_json({"api-version": API_VERSION, "_last-serial": last_serial}).decode()
    return json_array_chunks(f'{{"meta":{meta},"projects":[', ({"name": name} for name in names), "]}")


def root_html_chunks(env: Environment, names: Iterable[str], last_serial: int) -> Iterator[bytes]:
    """The PEP 503 root index, streamed from its autoescaped template."""
    template = env.get_template("simple_root.html")
    return _batched(template.generate(names=names, last_serial=last_serial, api_version=API_VERSION))
