"""The builder protocol: register, claim, heartbeat, upload, complete (DESIGN.md, "Builder protocol").

Routes only translate HTTP to calls on ``wheelmill.db`` and the master's services; every
database write is one short transaction, and uploads stream outside any transaction.

The lease routes (claim, heartbeat, release, complete) and their dependencies are ``async`` and
call the database directly on the event loop: each call is a fraction of a millisecond and SQLite
lets one writer in at a time anyway, while a hop to the thread pool and back costs more than the
query and makes request threads fight over the GIL. Several ``serve`` workers give the parallelism.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from wheelmill.db import builders as builder_sql
from wheelmill.db import jobs as queue_sql
from wheelmill.db.tables import BuilderState
from wheelmill.errors import AuthError, Forbidden, UploadRefused
from wheelmill.master import completion
from wheelmill.master.auth import Caller
from wheelmill.master.context import Master
from wheelmill.master.fields import ByteCount, PlainText
from wheelmill.master.uploads import JobIdentity
from wheelmill.targets import Target

router = APIRouter(prefix="/api/v1")
CLAIM_RETRY_SECONDS = 5


async def get_master(request: Request) -> Master:
    return request.app.state.master


async def get_caller(
    master: Annotated[Master, Depends(get_master)], authorization: Annotated[str | None, Header()] = None
) -> Caller:
    token = bearer_token(authorization)
    if token is None:
        raise AuthError("send the builder token as 'Authorization: Bearer TOKEN'")
    return master.tokens.caller(token)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header; None for any other header or none."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    return authorization.removeprefix("Bearer ").strip()


MasterDep = Annotated[Master, Depends(get_master)]
CallerDep = Annotated[Caller, Depends(get_caller)]


class Registration(BaseModel):
    target: str = Field(description="the target this builder builds, e.g. cp311-cp311-linux_x86_64")
    os: PlainText | None = None
    cpu: PlainText | None = None
    memory_bytes: ByteCount | None = None
    disk_free_bytes: ByteCount | None = None
    versions: dict[str, str] | None = None


class Registered(BaseModel):
    builder_id: int
    name: str
    heartbeat_seconds: float


class ClaimedJob(BaseModel):
    job_id: int
    build_id: int
    lease_id: str
    lease_expires: datetime
    heartbeat_seconds: float
    package: str
    version: str
    target: str
    cflags: str | None
    source_url: str
    source_filename: str
    source_sha256: str
    source_size: int
    time_limit_seconds: float
    index_url: str
    extra_index_url: str
    extra_requirements: list[str]
    smoke_test: bool
    smoke_test_modules: list[str]
    base_packages: list[str] = Field(
        default=[], description="Debian packages every target machine has: left out of the apt line"
    )


class Heartbeat(BaseModel):
    phase: PlainText | None = Field(default=None, max_length=50)
    disk_free_bytes: ByteCount | None = None
    load: float | None = Field(default=None, allow_inf_nan=False)


class HeartbeatAnswer(BaseModel):
    lease_expires: datetime
    action: Literal["continue", "abort", "pause"]


class Completion(BaseModel):
    status: Literal["success", "failed"]
    duration_s: float = Field(ge=0, allow_inf_nan=False)
    files: list[str] = []
    log_gzip_base64: str = ""
    environment: dict[str, Any] = {}
    failure_reason: PlainText | None = Field(default=None, max_length=50)
    failure_detail: PlainText | None = Field(default=None, max_length=2000)
    apt_packages: dict[str, list[str]] = {}
    remedy: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Completed(BaseModel):
    build_id: int
    next: ClaimedJob | None = Field(
        default=None, description="with ?claim_next=true: the builder's next job, as a claim answers"
    )
    retry_after: float | None = Field(
        default=None, description="with ?claim_next=true and no next job: seconds before claiming"
    )


@router.post("/builders", response_model=Registered)
def register(body: Registration, master: MasterDep, caller: CallerDep) -> Registered:
    """A builder starts: it says what it is and which target it builds."""
    Target.parse(body.target)
    with master.db.write() as session:
        builder = builder_sql.get_builder(session, caller.name)
        builder_sql.register(session, builder, body.model_dump())
        answer = Registered(
            builder_id=builder.id, name=builder.name, heartbeat_seconds=heartbeat_seconds(master)
        )
        token_hash = builder.token_hash
    master.tokens.forget(token_hash)  # its target changed
    return answer


@router.post(
    "/jobs/claim",
    response_model=ClaimedJob,
    responses={204: {"description": "no work now; ask again after Retry-After seconds"}},
)
async def claim(master: MasterDep, caller: CallerDep) -> Response:
    """The best open job for the caller's target, with a lease."""
    return json_answer(claim_answer(master, caller))


def claim_answer(master: Master, caller: Caller) -> ClaimedJob | None:
    """Lease the caller its next job, or None when it has none (or may not build now)."""
    if caller.target is None:
        raise Forbidden("register (POST /api/v1/builders) before claiming")
    target_id = claiming_target(master, caller)
    if target_id is None:
        return None
    with master.db.transaction() as tx:
        started = queue_sql.start_claim(tx, target_id, caller.id, master.settings.lease_seconds)
    job = started.result()  # after the COMMIT: on PostgreSQL both came back in one round trip
    return None if job is None else _claimed_job(master, job)


def claiming_target(master: Master, caller: Caller) -> int | None:
    """The caller's target's id, if it may claim now: registered, a known target, not paused,
    and the master has room for the wheels (the disk guard)."""
    if caller.state is not BuilderState.active or master.disk.low():
        return None
    return master.target_ids.get(caller.target or "")


def _claimed_job(master: Master, job: queue_sql.Claim) -> ClaimedJob:
    settings = master.settings
    return ClaimedJob(
        job_id=job.job_id,
        build_id=job.build_id,
        lease_id=job.lease_id,
        lease_expires=job.lease_expires,
        heartbeat_seconds=heartbeat_seconds(master),
        package=job.package,
        version=job.version,
        target=job.target,
        cflags=job.cflags,
        source_url=job.source_url,
        source_filename=job.source_filename,
        source_sha256=job.source_sha256,
        source_size=job.source_size,
        time_limit_seconds=settings.build_timeout,
        index_url=settings.resolved_base_url + "simple/",
        extra_index_url=settings.upstream,
        extra_requirements=[
            *settings.build_requirements.get(job.package, []),
            *([job.remedy] if job.remedy else []),
        ],
        smoke_test=settings.smoke_test and job.package not in settings.smoke_test_skip,
        smoke_test_modules=settings.smoke_test_modules.get(job.package, []),
        base_packages=settings.base_image_packages,
    )


@router.post("/leases/{lease_id}/heartbeat", response_model=HeartbeatAnswer)
async def heartbeat(lease_id: str, body: Heartbeat, master: MasterDep, caller: CallerDep) -> HeartbeatAnswer:
    """Extend the lease; the answer says whether to go on."""
    with master.db.write() as session:
        state = builder_sql.touch(
            session, caller.id, phase=body.phase, load=body.load, disk_free_bytes=body.disk_free_bytes
        )
        if state is BuilderState.killed:
            queue_sql.hand_back(session, lease_id, caller.id, "build aborted by an admin")
        else:
            expires = queue_sql.extend_lease(session, lease_id, caller.id, master.settings.lease_seconds)
    if state is BuilderState.killed:  # its uploads, if any, will never be completed
        master.staging.drop(lease_id)
        return HeartbeatAnswer(lease_expires=datetime.now().astimezone(), action="abort")
    action = "pause" if state is BuilderState.paused else "continue"
    return HeartbeatAnswer(lease_expires=expires, action=action)


@router.post("/leases/{lease_id}/release", status_code=204)
async def release(lease_id: str, master: MasterDep, caller: CallerDep) -> Response:
    """The builder is stopping: the job goes back to the queue at once instead of at lease expiry.

    On the event loop like the other lease calls: a fleet stopping together sends hundreds at
    once, and in the thread pool each held its transaction open while it waited for the GIL
    (on PostgreSQL, 145 ms "idle in transaction", holding the job's row lock)."""
    with master.db.write() as session:
        queue_sql.hand_back(session, lease_id, caller.id, "released by a stopping builder")
    master.staging.drop(lease_id)
    return Response(status_code=204)


@router.put("/leases/{lease_id}/files/{filename}", status_code=201)
async def upload(
    lease_id: str,
    filename: str,
    request: Request,
    master: MasterDep,
    caller: CallerDep,
    x_sha256: Annotated[str, Header(pattern="^[0-9a-fA-F]{64}$")],
    content_length: Annotated[int, Header(ge=0)],
) -> dict[str, str]:
    """Stream one wheel into staging; the master checks hash, size, archive and job itself."""
    job = _job_identity(master, lease_id, caller)
    staged = await master.staging.receive(
        job,
        filename,
        request.stream(),
        declared_sha256=x_sha256,
        declared_size=content_length,
        limit=master.settings.max_upload_bytes,
    )
    return {"filename": staged.filename, "sha256": staged.sha256}


@router.post("/leases/{lease_id}/complete", response_model=Completed)
async def complete(
    lease_id: str, body: Completion, master: MasterDep, caller: CallerDep, claim_next: bool = False
) -> Response:
    """The build ended: record it (and its uploaded wheels) in one transaction.

    With ``claim_next``, the answer also carries the builder's next job, as ``/jobs/claim``
    would lease it: a busy fleet makes one call per build instead of two.
    """
    return json_answer(complete_answer(master, caller, lease_id, body, claim_next=claim_next))


def complete_answer(
    master: Master, caller: Caller, lease_id: str, body: Completion, *, claim_next: bool
) -> Completed:
    try:
        log_gzip = base64.b64decode(body.log_gzip_base64, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise UploadRefused("log_gzip_base64 is not valid base64", reason="log") from exc
    report = completion.Report(
        success=body.status == "success",
        duration_s=body.duration_s,
        files=tuple(body.files),
        log_gzip=log_gzip,
        environment=body.environment,
        failure_reason=body.failure_reason,
        failure_detail=body.failure_detail,
        apt_packages=body.apt_packages,
        remedy=body.remedy,
    )
    next_target = claiming_target(master, caller) if claim_next else None
    done = completion.complete(master, caller.id, lease_id, report, next_target=next_target)
    answer = Completed(build_id=done.build_id)
    if done.next is not None:
        answer.next = _claimed_job(master, done.next)
    elif claim_next:
        answer.retry_after = CLAIM_RETRY_SECONDS
    return answer


def json_answer(answer: BaseModel | None) -> Response:
    """The answer, serialised once (FastAPI would validate our own model against itself again);
    None is "no work now": 204, ask again after Retry-After seconds."""
    if answer is None:
        return Response(status_code=204, headers={"Retry-After": str(CLAIM_RETRY_SECONDS)})
    return Response(answer.model_dump_json(), media_type="application/json")


def heartbeat_seconds(master: Master) -> float:
    return max(1.0, master.settings.lease_seconds / 4)


def _job_identity(master: Master, lease_id: str, caller: Caller) -> JobIdentity:
    with master.db.read() as session:
        held = queue_sql.lease(session, lease_id, caller.id)
    return JobIdentity(
        lease_id=lease_id,
        package=held.package,
        version=held.version,
        target=Target.parse(caller.target or ""),
    )
