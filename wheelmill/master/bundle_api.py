"""Offline bundles over HTTP: ``POST /api/v1/bundles``, its status, its .tar.gz, and the /bundle/ page.

Creating a bundle queues builds, so when the farm has an admin token it takes that token
(``Authorization: Bearer TOKEN``; the page asks for it in its form). With no admin token, as in the
embedded default that listens on 127.0.0.1 only, whoever reaches the master may create one. A
bundle's id is random: whoever holds it may read the status and download the bundle.
"""

from __future__ import annotations

import hmac
import threading
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from wheelmill.bundle.model import Bundle, State
from wheelmill.bundle.service import BundleService
from wheelmill.errors import AuthError, WheelmillError
from wheelmill.master.context import Master
from wheelmill.master.fields import PlainText
from wheelmill.publish.pages import file_size

router = APIRouter()
REFRESH_SECONDS = 5
MAX_FORM_BYTES = 4 * 2**20
_templates = Environment(
    loader=PackageLoader("wheelmill.bundle", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["file_size"] = file_size
_service_lock = threading.Lock()


class BundleRequest(BaseModel):
    requirements: PlainText = Field(
        max_length=100_000, description="requirements.txt text, one requirement a line"
    )
    target: PlainText = Field(max_length=100, description="e.g. cp311-cp311-linux_armv7l")
    installed: PlainText = Field(
        default="", max_length=MAX_FORM_BYTES, description="pip freeze or pip inspect output"
    )


class ItemOut(BaseModel):
    name: str
    version: str
    status: str
    reason: str | None
    log_url: str | None


class WheelOut(BaseModel):
    name: str
    version: str
    filename: str
    size: int
    sha256: str


class LeftOut(BaseModel):
    name: str
    version: str


class BundleOut(BaseModel):
    id: str
    target: str
    state: State
    requirements: list[str]
    items: list[ItemOut]
    wheels: list[WheelOut]
    left_out: list[LeftOut]
    total_size: int
    error: str | None
    status_url: str
    page_url: str
    download_url: str | None  # once ready


def get_service(request: Request) -> BundleService:
    """One service per app, made on first use: it holds the per-bundle locks."""
    with _service_lock:
        if not hasattr(request.app.state, "bundles"):
            request.app.state.bundles = BundleService(request.app.state.master)
        return request.app.state.bundles


ServiceDep = Annotated[BundleService, Depends(get_service)]


@router.post("/api/v1/bundles", status_code=202, response_model=BundleOut)
def create_bundle(
    body: BundleRequest,
    service: ServiceDep,
    response: Response,
    authorization: Annotated[str | None, Header()] = None,
) -> BundleOut:
    """Resolve and start a bundle; poll ``status_url`` until ``state`` is ready or failed."""
    _authorise(service.master, (authorization or "").removeprefix("Bearer ").strip())
    bundle = service.create(body.requirements, body.target, body.installed)
    out = describe(service.master, bundle)
    response.headers["Location"] = out.status_url
    return out


@router.get("/api/v1/bundles/{bundle_id}", response_model=BundleOut)
def bundle_status(bundle_id: str, service: ServiceDep) -> BundleOut:
    return describe(service.master, service.get(bundle_id))


@router.get("/api/v1/bundles/{bundle_id}/bundle.tar.gz", response_model=None)
def download(bundle_id: str, service: ServiceDep) -> Response:
    bundle = service.get(bundle_id)
    if bundle.state is not State.ready:
        detail = f"bundle {bundle_id} is {bundle.state}, not ready"
        return JSONResponse({"error": "NotReady", "detail": detail}, status_code=409)
    return FileResponse(service.archive(bundle), media_type="application/gzip", filename=bundle.archive_name)


@router.get("/bundle/", response_class=HTMLResponse)
def form_page(service: ServiceDep) -> HTMLResponse:
    return _form(service.master, {}, None)


@router.post("/bundle/", response_class=HTMLResponse, response_model=None)
async def form_submit(request: Request, service: ServiceDep) -> Response:
    """The page's form: the same service as the API, then the status page."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _form(service.master, {}, f"the form is larger than {file_size(MAX_FORM_BYTES)}", 413)
    fields = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
    try:
        _authorise(service.master, fields.get("token", ""))
        bundle = await run_in_threadpool(
            service.create,
            fields.get("requirements", ""),
            fields.get("target", ""),
            fields.get("installed", ""),
        )
    except WheelmillError as exc:  # shown on the form, beside what was typed, to be fixed there
        return _form(service.master, fields, str(exc), 422)
    return RedirectResponse(describe(service.master, bundle).page_url, status_code=303)


@router.get("/bundle/{bundle_id}/", response_class=HTMLResponse)
def status_page(bundle_id: str, service: ServiceDep) -> HTMLResponse:
    bundle = service.get(bundle_id)
    page = _templates.get_template("status.html").render(
        bundle=describe(service.master, bundle),
        refresh=REFRESH_SECONDS if bundle.state is State.building else None,
    )
    return HTMLResponse(page)


def describe(master: Master, bundle: Bundle) -> BundleOut:
    """The one view of a bundle that the API returns and the status page shows."""
    base = master.settings.resolved_base_url
    status_url = f"{base}api/v1/bundles/{bundle.id}"
    return BundleOut(
        id=bundle.id,
        target=bundle.target,
        state=bundle.state,
        requirements=bundle.requirements,
        items=[
            ItemOut(
                name=item.name,
                version=item.version,
                status=item.status,
                reason=item.reason,
                log_url=f"{base}logs/{item.build_id}/" if item.build_id else None,
            )
            for item in bundle.items
        ],
        wheels=[WheelOut(**vars(wheel)) for wheel in bundle.wheels],
        left_out=[LeftOut(name=name, version=version) for name, version in bundle.left_out],
        total_size=bundle.total_size,
        error=bundle.error,
        status_url=status_url,
        page_url=f"{base}bundle/{bundle.id}/",
        download_url=f"{status_url}/bundle.tar.gz" if bundle.state is State.ready else None,
    )


def _authorise(master: Master, token: str) -> None:
    expected = master.settings.admin_token
    if expected and not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthError("creating a bundle needs this farm's admin token")


def _form(master: Master, fields: dict[str, str], error: str | None, status: int = 200) -> HTMLResponse:
    page = _templates.get_template("form.html").render(
        targets=sorted(master.target_ids),
        fields=fields,
        error=error,
        needs_token=bool(master.settings.admin_token),
    )
    return HTMLResponse(page, status_code=status)
