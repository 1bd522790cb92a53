"""Serves the publisher's output directory, with PEP 691 content negotiation on /simple/.

This is the embedded server's twin of deploy/nginx.conf: directories answer with their index
file, /simple/ pages pick index.json or index.html by the Accept header, and every answer carries
an ETag and Last-Modified so pip's HTTP cache revalidates instead of downloading again. Files are
streamed by FileResponse, never read whole.
"""

import os
import stat
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from packaging.utils import InvalidName, canonicalize_name
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from wheelmill.publish.negotiate import SimpleFormat, negotiate

# Served types by suffix; anything else is a download.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".whl": "application/octet-stream",
    ".metadata": "text/plain; charset=utf-8",  # PEP 658: a wheel's METADATA, an RFC 822 text
    ".txt": "text/plain; charset=utf-8",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
SMALL_FILE = 1 << 20  # read whole from one open file; bigger ones are streamed by FileResponse
DIRECTORY_INDEXES = ("index.html", "index.json")
NOT_ACCEPTABLE = (
    "406 Not Acceptable: this index serves application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html and text/html\n"
)


def _etag(status: os.stat_result, variant: str) -> str:
    """A strong validator from size and mtime; the variant keeps JSON and HTML answers apart."""
    return f'"{status.st_mtime_ns:x}-{status.st_size:x}-{variant}"'


def _not_modified(request_headers: Headers, etag: str, status: os.stat_result) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag in tags or "*" in tags
    if_modified_since = request_headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False
    return int(status.st_mtime) <= since


class StaticSite:
    """Maps request paths to files of one output directory and answers with them."""

    def __init__(self, output_dir: Path) -> None:
        self.root = output_dir.resolve()

    def _resolve(self, relative: str) -> Path | None:
        """The file or directory for a URL path, or None if it must not be served.

        Refuses dot segments and dotfiles (the writer's temporary files) and anything that
        resolves outside the root, which also stops symlinks pointing out.
        """
        parts = [part for part in relative.split("/") if part]
        if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
            return None
        path = self.root.joinpath(*parts).resolve()
        if path != self.root and self.root not in path.parents:
            return None
        return path

    def _file_response(self, request: Request, path: Path, content_type: str, vary: bool = False) -> Response:
        """`path` with validators, or 304 when the client's copy is current, or 404.

        Pages are rewritten by rename at any moment, so a page is opened once and its headers
        come from that open file (fstat), never from a separate stat: a stat then an open could
        pair one version's Content-Length with another's bytes. Pages are small and in the page
        cache, so they are read at once, in the event loop. Bigger files (wheels, which are not
        rewritten) go to FileResponse, which streams them and answers Range requests.
        """
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed on every path below
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return PlainTextResponse("404 Not Found\n", status_code=404)
        with handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                return PlainTextResponse("404 Not Found\n", status_code=404)
            etag = _etag(status, path.suffix.lstrip("."))
            headers = {"ETag": etag, "Last-Modified": formatdate(status.st_mtime, usegmt=True)}
            if vary:
                headers["Vary"] = "Accept"
            if _not_modified(request.headers, etag, status):
                return Response(status_code=304, headers=headers)
            if status.st_size > SMALL_FILE:
                return FileResponse(path, media_type=content_type, headers=headers, stat_result=status)
            headers["Content-Length"] = str(status.st_size)
            body = b"" if request.method == "HEAD" else handle.read()
        return Response(body, media_type=content_type, headers=headers)

    def _simple(self, request: Request, base: str) -> Response:
        """/simple/ or /simple/NAME/: the format the client accepts, 406 if none, 404 if unknown."""
        directory = self._resolve(base)
        if directory is None or not directory.is_dir():
            return PlainTextResponse("404 Not Found\n", status_code=404)
        chosen = negotiate(request.headers.get("accept"))
        if chosen is None:
            return PlainTextResponse(NOT_ACCEPTABLE, status_code=406, headers={"Vary": "Accept"})
        return self._file_response(request, directory / chosen.filename, chosen.content_type, vary=True)

    def _project(self, request: Request, name: str, slash: bool) -> Response:
        """/simple/NAME/: other spellings of the name and the missing slash redirect (PEP 503)."""
        try:
            canonical = canonicalize_name(name, validate=True)
        except InvalidName:
            return PlainTextResponse("404 Not Found\n", status_code=404)
        if canonical != name or not slash:
            return self._redirect(request, f"/simple/{canonical}/")
        return self._simple(request, f"/simple/{canonical}/")

    def _redirect(self, request: Request, path: str) -> Response:
        # root_path: the prefix this app is mounted under, if any.
        return RedirectResponse(request.scope.get("root_path", "") + path, status_code=301)

    def _content_type(self, path: Path) -> str:
        simple = self.root / "simple"
        if path.name == "index.json" and simple in (path.parent, path.parent.parent):
            return SimpleFormat.JSON.content_type  # a /simple/ page asked for by its file name
        return CONTENT_TYPES.get(path.suffix, DEFAULT_CONTENT_TYPE)

    async def handle(self, request: Request) -> Response:
        """The one route: every GET and HEAD below the mount point."""
        relative: str = request.path_params["path"]
        match relative.split("/"):
            case ["simple"]:
                return self._redirect(request, "/simple/")
            case ["simple", ""]:
                return self._simple(request, "/simple/")
            case ["simple", name] if name not in DIRECTORY_INDEXES:
                return self._project(request, name, slash=False)
            case ["simple", name, ""]:
                return self._project(request, name, slash=True)
        path = self._resolve(relative)
        if path is None:
            return PlainTextResponse("404 Not Found\n", status_code=404)
        if path.is_dir():
            # /logs/ID and /logs/ID/ both answer: pages link with absolute paths.
            path = next((path / name for name in DIRECTORY_INDEXES if (path / name).is_file()), path)
        return self._file_response(request, path, self._content_type(path))


def make_static_app(output_dir: Path) -> Starlette:
    """An ASGI app serving `output_dir`; mount it at "/" of the master or run it alone."""
    site = StaticSite(output_dir)
    return Starlette(routes=[Route("/{path:path}", site.handle, methods=["GET", "HEAD"])])
