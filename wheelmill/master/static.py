"""Serves the publisher's output directory, with PEP 691 content negotiation on /simple/.

This is the embedded server's twin of deploy/nginx.conf: directories answer with their index
file, /simple/ pages pick index.json or index.html by the Accept header, and every answer carries
an ETag and Last-Modified so pip's HTTP cache revalidates instead of downloading again.

It is a bare ASGI app, not a framework route: pip and uv ask for /simple/NAME/ pages by the
thousand, and routing, request objects and path resolution cost several times the open, fstat
and read that the answer needs. Redirects, errors and large files, which are rare, go through
Starlette's responses.
"""

import errno
import os
import stat
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from pathlib import Path

from packaging.utils import InvalidName, canonicalize_name
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

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
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP)


def _etag(status: os.stat_result, variant: str) -> str:
    """A strong validator from size and mtime; the variant keeps JSON and HTML answers apart."""
    return f'"{status.st_mtime_ns:x}-{status.st_size:x}-{variant}"'


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> bytes:
    """Last-Modified for an mtime: pages share few distinct seconds, so most answers hit the cache."""
    return formatdate(seconds, usegmt=True).encode()


@lru_cache(maxsize=256)
def _negotiate(accept: str | None) -> SimpleFormat | None:
    """`negotiate`, remembered: clients send a handful of distinct Accept headers, over and over."""
    return negotiate(accept)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _not_modified(scope: Scope, etag: str, status: os.stat_result) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = _header(scope, b"if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag in tags or "*" in tags
    if_modified_since = _header(scope, b"if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False
    return int(status.st_mtime) <= since


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path and sets root_path)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        return path[len(root_path) :]
    return path


class StaticSite:
    """An ASGI app mapping request paths to files of one output directory."""

    def __init__(self, output_dir: Path) -> None:
        self.root = output_dir.resolve()
        self._simple_root = f"{self.root}/simple"

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

    async def _file(
        self, scope: Scope, send: Send, path: str, content_type: str, vary: bool = False
    ) -> Response | None:
        """Answer with `path` (or 304), or return the response to send instead: 404, or a large file.

        Pages are rewritten by rename at any moment, so a page is opened once and its headers
        come from that open file (fstat), never from a separate stat: a stat then an open could
        pair one version's Content-Length with another's bytes. Pages are small and in the page
        cache, so they are read at once, in the event loop. Bigger files (wheels, which are not
        rewritten) go to FileResponse, which streams them and answers Range requests.
        """
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno in _MISSING:
                return PlainTextResponse("404 Not Found\n", status_code=404)
            raise
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return PlainTextResponse("404 Not Found\n", status_code=404)
            etag = _etag(status, path.rpartition(".")[2])
            headers = [(b"etag", etag.encode()), (b"last-modified", _http_date(int(status.st_mtime)))]
            if vary:
                headers.append((b"vary", b"Accept"))
            if _not_modified(scope, etag, status):
                await _send(send, 304, headers, b"")
                return None
            if status.st_size > SMALL_FILE:
                return FileResponse(
                    path, media_type=content_type, headers={k.decode(): v.decode() for k, v in headers},
                    stat_result=status,
                )
            body = b"" if scope["method"] == "HEAD" else _read_all(fd, status.st_size)
        finally:
            os.close(fd)
        headers += ((b"content-type", content_type.encode()), (b"content-length", b"%d" % status.st_size))
        await _send(send, 200, headers, body)
        return None

    async def _simple(self, scope: Scope, send: Send, directory: str) -> Response | None:
        """/simple/ or /simple/NAME/: the format the client accepts, 406 if none, 404 if unknown."""
        chosen = _negotiate(_header(scope, b"accept"))
        if chosen is None:
            if not os.path.isdir(directory):
                return PlainTextResponse("404 Not Found\n", status_code=404)
            return PlainTextResponse(NOT_ACCEPTABLE, status_code=406, headers={"Vary": "Accept"})
        return await self._file(scope, send, f"{directory}/{chosen.filename}", chosen.content_type, vary=True)

    async def _project(self, scope: Scope, send: Send, name: str, slash: bool) -> Response | None:
        """/simple/NAME/: other spellings of the name and the missing slash redirect (PEP 503).

        A canonical name is letters, digits and single hyphens, so the page's path is built
        from it as is: it cannot leave /simple/.
        """
        try:
            canonical = canonicalize_name(name, validate=True)
        except InvalidName:
            return PlainTextResponse("404 Not Found\n", status_code=404)
        if canonical != name or not slash:
            return _redirect(scope, f"/simple/{canonical}/")
        return await self._simple(scope, send, f"{self._simple_root}/{canonical}")

    def _content_type(self, path: Path) -> str:
        simple = self.root / "simple"
        if path.name == "index.json" and simple in (path.parent, path.parent.parent):
            return SimpleFormat.JSON.content_type  # a /simple/ page asked for by its file name
        return CONTENT_TYPES.get(path.suffix, DEFAULT_CONTENT_TYPE)

    async def _answer(self, scope: Scope, send: Send) -> Response | None:
        relative = _route_path(scope).lstrip("/")
        match relative.split("/"):
            case ["simple"]:
                return _redirect(scope, "/simple/")
            case ["simple", ""]:
                return await self._simple(scope, send, self._simple_root)
            case ["simple", name] if name not in DIRECTORY_INDEXES:
                return await self._project(scope, send, name, slash=False)
            case ["simple", name, ""]:
                return await self._project(scope, send, name, slash=True)
        path = self._resolve(relative)
        if path is None:
            return PlainTextResponse("404 Not Found\n", status_code=404)
        if path.is_dir():
            # /logs/ID and /logs/ID/ both answer: pages link with absolute paths.
            path = next((path / name for name in DIRECTORY_INDEXES if (path / name).is_file()), path)
        return await self._file(scope, send, str(path), self._content_type(path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # run alone under a server: nothing to start or stop
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] not in ("GET", "HEAD"):
            response: Response | None = PlainTextResponse(
                "405 Method Not Allowed\n", status_code=405, headers={"Allow": "GET, HEAD"}
            )
        else:
            response = await self._answer(scope, send)
        if response is not None:
            await response(scope, receive, send)


def _read_all(fd: int, size: int) -> bytes:
    data = os.read(fd, size)
    while len(data) < size and (more := os.read(fd, size - len(data))):  # a rare short read
        data += more
    return data


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _redirect(scope: Scope, path: str) -> Response:
    # root_path: the prefix this app is mounted under, if any.
    return RedirectResponse(scope.get("root_path", "") + path, status_code=301)


def make_static_app(output_dir: Path) -> StaticSite:
    """An ASGI app serving `output_dir`; mount it at "/" of the master or run it alone."""
    return StaticSite(output_dir)
