"""Routing: which answer PyPI gives to each request, before faults and conditional requests."""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote
from xml.parsers.expat import ExpatError

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelmill.testing import pages
from wheelmill.testing.model import Project, Release, UpstreamState

_OFFERS = ("text/html", "application/vnd.pypi.simple.v1+html", pages.SIMPLE_JSON)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def not_found() -> Response:
    return Response(404, b"404 Not Found")


def xmlrpc_fault(code: int, message: str) -> Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True)
    return Response(200, body.encode(), "text/xml")


def select_content_type(accept: str | None) -> str:
    """PEP 691 negotiation as PyPI does it: the client's highest q wins, ties go to HTML, default HTML."""
    ranges: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.setdefault(media.lower(), quality)
    best, best_quality = "text/html", 0.0
    for offer in _OFFERS:
        kind = offer.split("/")[0]
        quality = next((ranges[r] for r in (offer, f"{kind}/*", "*/*") if r in ranges), 0.0)
        if quality > best_quality:
            best, best_quality = offer, quality
    return best


class Router:
    """Maps (method, path) to PyPI's answer, reading the state under its lock."""

    def __init__(self, state: UpstreamState, changelog_page_size: int) -> None:
        self.state = state
        self.changelog_page_size = changelog_page_size
        self.base_url = ""  # set by the server once it knows its port: file URLs are absolute

    def route(self, method: str, path: str, accept: str | None, body: bytes, *, stale: bool) -> Response:
        parts = [unquote(part) for part in path.split("/")[1:]]
        if method == "POST":
            return self._xmlrpc(body) if parts in (["pypi"], ["pypi", ""], ["RPC2"]) else not_found()
        with self.state.lock:
            match parts:
                case ["simple"]:
                    return Response(301, headers={"Location": "/simple/"})
                case ["simple", ""]:
                    return self._simple_index(accept, stale=stale)
                case ["simple", name] | ["simple", name, ""]:
                    return self._simple_detail(name, path.endswith("/"), accept, stale=stale)
                case ["pypi", name, "json"]:
                    return self._json_api(name, None, stale=stale)
                case ["pypi", name, version, "json"]:
                    return self._json_api(name, version, stale=stale)
                case ["files", name, filename]:
                    return self._file(name, filename)
            return not_found()

    def _project(self, name: str, *, stale: bool) -> Project | None:
        project = self.state.projects.get(canonicalize_name(name))
        if project is not None and stale and project.previous is not None:
            project = project.previous
        return None if project is None or project.quarantined else project

    def _simple_index(self, accept: str | None, *, stale: bool) -> Response:
        # A stale index is only told apart by its serial: nothing here keeps old project lists.
        serial = self.state.changelog.last_serial - (1 if stale else 0)
        context = pages.simple_index(list(self.state.projects.values()), max(serial, 0))
        return self._simple_response(context, pages.render_index_html, accept)

    def _simple_detail(self, name: str, slash: bool, accept: str | None, *, stale: bool) -> Response:
        project = self._project(name, stale=stale)
        if project is None:
            return not_found()
        if name != project.canonical_name or not slash:
            return Response(301, headers={"Location": f"/simple/{project.canonical_name}/"})
        context = pages.simple_detail(project, self.base_url)
        return self._simple_response(context, pages.render_detail_html, accept)

    @staticmethod
    def _simple_response(
        context: dict[str, Any], render: Callable[[dict[str, Any]], str], accept: str | None
    ) -> Response:
        content_type = select_content_type(accept)
        if content_type == pages.SIMPLE_JSON:
            body = json.dumps(context).encode()
        else:
            body = render(context).encode()
            content_type += "; charset=utf-8" if content_type == "text/html" else ""
        headers = {"X-PyPI-Last-Serial": str(context["meta"]["_last-serial"]), "Vary": "Accept"}
        return Response(200, body, content_type, headers)

    def _json_api(self, name: str, version: str | None, *, stale: bool) -> Response:
        missing = Response(404, b'{"message": "Not Found"}', "application/json")
        project = self._project(name, stale=stale)
        if project is None:
            return missing
        if name != project.name:
            # PyPI's JSON API redirects to the project's display name, not its canonical name.
            suffix = "json" if version is None else f"{version}/json"
            return Response(301, headers={"Location": f"/pypi/{project.name}/{suffix}"})
        release = project.latest() if version is None else _visible_release(project, version)
        if release is None:
            return missing
        document = pages.json_api(project, release, self.base_url, with_releases=version is None)
        headers = {"X-PyPI-Last-Serial": str(project.last_serial)}
        return Response(200, json.dumps(document).encode(), "application/json", headers)

    def _file(self, name: str, filename: str) -> Response:
        project = self._project(name, stale=False)
        if project is None or name != project.canonical_name:
            return not_found()
        if filename.endswith(".metadata"):
            file = project.visible_file(filename.removesuffix(".metadata"))
            content = None if file is None else file.core_metadata
        else:
            file = project.visible_file(filename)
            content = None if file is None else file.content
        if content is None:
            return not_found()
        return Response(200, content, "application/octet-stream")

    def _xmlrpc(self, body: bytes) -> Response:
        try:
            params, method = xmlrpc.client.loads(body)
        except (ExpatError, xmlrpc.client.ResponseError, ValueError):
            return xmlrpc_fault(-32700, "parse error. not well formed")
        changelog = self.state.changelog
        if method == "changelog_last_serial" and not params:
            with self.state.lock:
                result: Any = changelog.last_serial
        elif method == "changelog_since_serial" and len(params) == 1 and isinstance(params[0], int):
            with self.state.lock:
                result = changelog.since(params[0], self.changelog_page_size)
        elif method in ("changelog_last_serial", "changelog_since_serial"):
            return xmlrpc_fault(-32602, "server error; invalid method params")
        else:
            return xmlrpc_fault(-32601, f"server error; requested method not found: {method!r}")
        body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        return Response(200, body.encode(), "text/xml")


def _visible_release(project: Project, version: str) -> Release | None:
    try:
        wanted = Version(version)
    except InvalidVersion:
        return None
    return next((release for release in project.visible_releases() if release.parsed_version == wanted), None)
