"""Run one build contained, bounded and recorded: in bubblewrap when usable, else unconfined.

Every mode: an empty environment plus the build's own variables, stdin from /dev/null, a new
session, a timeout that kills the whole tree, rlimits, a log capped to its head and tail, and a
watched scratch size. bubblewrap adds a read-only system with a curated /etc, no view of the host's
/root, /home, /work or /tmp, and its own user, PID and network namespaces; the network is loopback
plus the index proxy (netproxy.py). Inside, launcher.py starts each command: it relays the proxy
and kills the build once the builder is gone, which bubblewrap alone does not always do. Outside,
warden.py starts bubblewrap and does the same for a sandbox that dies before the launcher runs.

A build root (``wheelmill builder --root DIR``, a Debian userland of another architecture run by
qemu-user) takes the host system's place: its /usr, top-level links and /etc entries are mounted
instead, with this machine's CA bundle over its own (a local CA must reach pip inside), and the
launcher runs on the root's Python. Everything else is the same sandbox.

Processes and memory. RLIMIT_NPROC cannot contain a fork bomb here: it is per uid, and the kernel
exempts uid 0, which the sandbox's uid 1000 maps to when the builder runs as root. So each run
gets its own cgroup v1 `pids` child (pids.max) when the builder may create one, and a `memory`
child (memory.limit_in_bytes, the whole tree's RSS) likewise; the cgroups also let the sandbox kill
every process of the build, setsid'd daemons included. RLIMIT_DATA caps each process's heap, so a
huge allocation fails at once with ENOMEM instead of swapping. Without a pids cgroup only
RLIMIT_NPROC is left, which binds an unprivileged builder and not root.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from wheelmill.builder import launcher, warden
from wheelmill.builder.netproxy import NetProxy
from wheelmill.errors import SandboxUnavailable

log = logging.getLogger(__name__)

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_ROOT = Path("/")
ROOT_PYTHON = "/usr/bin/python3"  # a build root's interpreter, as the sandbox sees it
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_UID = 1000
SANDBOX_HOSTNAME = "wheelmill-build"
RUN_DIR = "/run/wheelmill"  # in the sandbox: passwd, group, hosts, the proxy socket and launcher
PROXY_PORT = 3128  # in the sandbox's own network namespace, so always free
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
# What builds need from /etc; the rest (shadow, ssh keys, the builder's own configuration, pip.conf,
# resolv.conf: there is no DNS in the sandbox) stays out. passwd, group and hosts are generated.
ETC_ENTRIES = (
    "alternatives", "ssl", "ca-certificates", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "os-release",
    "debian_version", "localtime", "timezone", "nsswitch.conf", "host.conf", "gai.conf", "protocols",
    "services", "mime.types", "magic", "perl", "xml", "sgml", "fonts", "terminfo",
)  # fmt: skip
# The launcher runs on the system's Python, already in the sandbox's /usr; failing that, on the
# builder's own, bound in for it.
_BUILDER_PYTHON = Path(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
LAUNCHER_PYTHON = Path(ROOT_PYTHON) if Path(ROOT_PYTHON).exists() else _BUILDER_PYTHON
MEMORY_EVIDENCE = (b"MemoryError", b"Cannot allocate memory", b"out of memory", b"std::bad_alloc")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3600.0
    memory_bytes: int | None = 4 * 2**30  # each process's heap, and the whole tree's RSS with cgroups
    max_processes: int | None = 512
    cpu_seconds: int | None = None
    log_bytes: int = 8 * 2**20  # the log kept: head and tail halves with a cut marker
    scratch_bytes: int | None = 10 * 2**30  # the work dir is watched; the build is stopped past this


@dataclass
class SandboxResult:
    returncode: int | None  # None when killed by us
    killed_reason: str | None  # None | "timeout" | "memory" | "scratch" | "cancelled"
    duration_s: float
    log: bytes  # the capped combined stdout and stderr
    log_truncated: bool
    mode: str  # "bubblewrap" | "unconfined"


def make_sandbox(
    mode: str = "auto",
    allowed_hosts: Sequence[str] = (),
    *,
    root: Path | None = None,
    bwrap_path: str = "bwrap",
) -> Sandbox:
    """The sandbox the configuration asks for: "auto", "required" (bubblewrap or raise) or "none".

    A build ``root`` can only be used through bubblewrap, whatever the mode.
    """
    if mode not in ("auto", "required", "none"):
        raise ValueError(f"sandbox mode must be auto, required or none, got {mode!r}")
    if root is not None:
        return _rooted_sandbox(mode, allowed_hosts, root, bwrap_path)
    if mode == "none":
        return Sandbox(None, allowed_hosts)
    bwrap = shutil.which(bwrap_path)
    problem = _bwrap_problem(bwrap) if bwrap else f"{bwrap_path!r} not found"
    if problem is None:
        return Sandbox(bwrap, allowed_hosts)
    if mode == "required":
        raise SandboxUnavailable(f"bubblewrap is required but not usable: {problem}")
    _warn_unconfined(problem)
    return Sandbox(None, allowed_hosts)


def _rooted_sandbox(mode: str, allowed_hosts: Sequence[str], root: Path, bwrap_path: str) -> Sandbox:
    if mode == "none":
        raise SandboxUnavailable(
            f'a build root ({str(root)!r}) is used through bubblewrap; sandbox = "none" cannot'
        )
    if not (root / ROOT_PYTHON.lstrip("/")).exists():
        raise SandboxUnavailable(
            f"{str(root)!r} is not a build root (no {ROOT_PYTHON}): see wheelmill builder-root create"
        )
    bwrap = shutil.which(bwrap_path)
    problem = _bwrap_problem(bwrap, root.resolve()) if bwrap else f"{bwrap_path!r} not found"
    if problem is not None:
        raise SandboxUnavailable(f"cannot build in the root {str(root)!r}: {problem}")
    assert bwrap is not None
    return Sandbox(bwrap, allowed_hosts, root.resolve())


@functools.cache
def _bwrap_problem(bwrap: str, root: Path = HOST_ROOT) -> str | None:
    """Why bwrap cannot run a sandbox here (None if it can): try the real namespaces once."""
    argv = [bwrap, *_namespace_args(), *_system_args(root), "--", "/bin/true"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    problem = done.stderr.decode(errors="replace").strip()
    if "Exec format error" in problem:
        problem += (
            " (this machine cannot run the root's programs: its architecture is not registered with "
            "binfmt_misc; `sudo wheelmill builder-root create` registers qemu-user for it)"
        )
    return problem


_warned = threading.Event()


def _warn_unconfined(problem: str) -> None:
    if not _warned.is_set():
        _warned.set()
        log.warning(
            "BUILDS ARE NOT SANDBOXED: bubblewrap is not usable (%s). Builds run with a fresh HOME, no "
            "stdin, rlimits and a timeout, but can read and write this machine's files and reach any "
            'network host. Install bubblewrap, or set sandbox = "required" to refuse to build.',
            problem,
        )


def _namespace_args() -> list[str]:
    return [
        "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID), "--hostname", SANDBOX_HOSTNAME, "--die-with-parent",
        "--new-session", "--cap-drop", "ALL",
    ]  # fmt: skip


def _system_args(root: Path = HOST_ROOT) -> list[str]:
    """A read-only /usr with the distribution's top-level links or directories, /proc and /dev,
    from this machine or from a build root."""
    args = ["--ro-bind", str(root / "usr"), "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = root / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    for name in ETC_ENTRIES:
        if (root / "etc" / name).exists():
            args += ["--ro-bind", str(root / "etc" / name), f"/etc/{name}"]
    if root != HOST_ROOT and (root / CA_BUNDLE.lstrip("/")).exists() and Path(CA_BUNDLE).exists():
        args += ["--ro-bind", CA_BUNDLE, CA_BUNDLE]
    return [*args, "--proc", "/proc", "--dev", "/dev"]


class Sandbox:
    """Runs build commands in one mode, with one network allowlist, on this machine's system or a root's."""

    def __init__(self, bwrap: str | None, allowed_hosts: Sequence[str], root: Path | None = None) -> None:
        self.bwrap = bwrap
        self.allowed_hosts = list(allowed_hosts)
        self.root = root

    def output(self, argv: list[str], timeout_s: float = 300.0) -> str:
        """What a short command prints in this sandbox's system, without network; raises if it fails.

        How a builder asks a build root about itself: its interpreter's target, its compiler.
        """
        quiet = Sandbox(self.bwrap, (), self.root)
        with tempfile.TemporaryDirectory(prefix="wheelmill-probe-") as scratch:
            result = quiet.run(argv, workdir=Path(scratch), env={}, limits=Limits(timeout_s=timeout_s))
        text = result.log.decode(errors="replace")
        if result.returncode != 0:
            ended = result.killed_reason or f"exit {result.returncode}"
            raise SandboxUnavailable(f"{argv[0]} failed in the sandbox ({ended}): {text[-1000:]}")
        return text

    @property
    def mode(self) -> str:
        return "unconfined" if self.bwrap is None else "bubblewrap"

    def run(
        self,
        argv: list[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        readonly_paths: Sequence[Path] = (),
        cancel: threading.Event | None = None,
    ) -> SandboxResult:
        """Run argv in workdir (which gets home/ and tmp/) and return how it ended.

        Setting cancel (the master aborted the job) kills the build with reason "cancelled".
        """
        workdir = workdir.resolve()
        for name in ("home", "tmp"):
            (workdir / name).mkdir(exist_ok=True)
        with ExitStack() as stack:
            cgroups = stack.enter_context(_Cgroups(limits))
            proxy_url = None
            lifeline: int | None = None
            if self.bwrap is None:
                if self.allowed_hosts:
                    proxy_url = stack.enter_context(NetProxy(self.allowed_hosts)).url
            else:
                rundir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wheelmill-run-")))
                binds = list(readonly_paths)
                proxy: list[str] = []
                if self.allowed_hosts:
                    stack.enter_context(NetProxy(self.allowed_hosts, rundir / "proxy.sock"))
                    proxy_url = f"http://127.0.0.1:{PROXY_PORT}"
                    proxy = ["--proxy", f"{RUN_DIR}/proxy.sock", str(PROXY_PORT)]
                lifeline = _lifeline(stack)
                shutil.copyfile(launcher.__file__, rundir / "launcher.py")
                python = ROOT_PYTHON if self.root else str(LAUNCHER_PYTHON)
                argv = [python, "-I", "-S", f"{RUN_DIR}/launcher.py", str(lifeline), *proxy, "--", *argv]
                if not self.root and not LAUNCHER_PYTHON.is_relative_to("/usr"):
                    binds.append(Path(sys.base_prefix))
                args = _bwrap_args(workdir, binds, rundir, self.root or HOST_ROOT)
                bwrap = [self.bwrap, *args, "--", *argv]
                argv = [sys.executable, "-I", "-S", warden.__file__, str(lifeline), "--", *bwrap]
            build_env = _environment(workdir, env, proxy_url)
            result = _supervise(argv, workdir, build_env, limits, cgroups, cancel, self.mode, lifeline)
        return result


def _lifeline(stack: ExitStack) -> int:
    """A pipe whose write end only this process holds, closed with ``stack``; the read end goes to
    the sandbox's launcher, which sees end of file once this process is gone (launcher.py)."""
    read_end, write_end = os.pipe()
    stack.callback(os.close, write_end)
    stack.callback(os.close, read_end)
    return read_end


def _bwrap_args(workdir: Path, readonly_paths: Sequence[Path], rundir: Path, root: Path) -> list[str]:
    """The sandbox around a build: namespaces, the system read-only, workdir and /tmp writable."""
    (rundir / "passwd").write_text(
        f"root:x:0:0:root:/nonexistent:/bin/sh\n"
        f"build:x:{SANDBOX_UID}:{SANDBOX_UID}:build:{workdir / 'home'}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (rundir / "group").write_text(f"root:x:0:\nbuild:x:{SANDBOX_UID}:\nnogroup:x:65534:\n")
    (rundir / "hosts").write_text(f"127.0.0.1 localhost {SANDBOX_HOSTNAME}\n::1 localhost\n")
    args = [*_namespace_args(), *_system_args(root)]
    for name in ("passwd", "group", "hosts"):
        args += ["--ro-bind", str(rundir / name), f"/etc/{name}"]
    # /tmp is the build's TMPDIR too, so tools that ignore TMPDIR write into the watched scratch.
    # It comes first: the tools (a builder's venv made in /tmp, say) and a workdir under the host's
    # /tmp are then mounted over it, not hidden by it.
    args += ["--bind", str(workdir / "tmp"), "/tmp"]
    for path in readonly_paths:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(workdir), str(workdir),
             "--ro-bind", str(rundir), RUN_DIR, "--remount-ro", "/", "--chdir", str(workdir)]  # fmt: skip
    return args


def _environment(workdir: Path, env: Mapping[str, str], proxy_url: str | None) -> dict[str, str]:
    """The build's whole environment: nothing is inherited from the builder."""
    result = {
        "PATH": DEFAULT_PATH,
        "HOME": str(workdir / "home"),
        "TMPDIR": str(workdir / "tmp"),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "file",
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "WHEELMILL_BUILD": "1",
        "SSL_CERT_FILE": CA_BUNDLE,
        "PIP_CERT": CA_BUNDLE,
        "REQUESTS_CA_BUNDLE": CA_BUNDLE,
        **env,
    }
    if proxy_url:
        # Last, so that no caller's NO_PROXY sends the farm's 127.0.0.1 index around the proxy.
        result.update(dict.fromkeys(PROXY_VARIABLES, proxy_url), NO_PROXY="", no_proxy="")
    return result


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup v1 directory for controller, if that hierarchy is mounted."""
    mount = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, fs = line.partition(" - ")
        fstype, _, options = fs.split(" ")[:3]
        if fstype == "cgroup" and controller in options.split(","):
            mount = fields.split(" ")[3:5]  # the hierarchy's root as mounted, and where
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if mount and controller in controllers.split(","):
            root, mountpoint = mount
            return Path(mountpoint, os.path.relpath(path, root))
    return None


class _Cgroups:
    """Per-run cgroup v1 children capping the build's processes and memory, where we may make them."""

    KNOBS = {"pids": "pids.max", "memory": "memory.limit_in_bytes"}

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.paths: dict[str, Path] = {}

    def __enter__(self) -> _Cgroups:
        name = f"wheelmill-{uuid.uuid4().hex[:12]}"
        wanted = {"pids": self.limits.max_processes, "memory": self.limits.memory_bytes}
        for controller, value in wanted.items():
            parent = _own_cgroup(controller) if value is not None else None
            if parent is None:
                continue
            path = parent / name
            try:
                path.mkdir()
                (path / self.KNOBS[controller]).write_text(str(value))
            except OSError as exc:
                log.debug("no %s cgroup for builds: %s", controller, exc)
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            self.paths[controller] = path
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
        for path in self.paths.values():
            for _ in range(100):  # the kernel frees a cgroup a moment after its last task is reaped
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.01)
            else:
                log.warning("could not remove the build's cgroup %s", path)

    def join_fds(self) -> list[int]:
        """Open cgroup.procs files: a child writes "0" to each to join before it execs."""
        return [os.open(path / "cgroup.procs", os.O_WRONLY) for path in self.paths.values()]

    def kill(self) -> None:
        """SIGKILL every process in the build's cgroups, until none is left (a bomb keeps forking)."""
        for path in self.paths.values():
            deadline = time.monotonic() + 5
            while (pids := (path / "cgroup.procs").read_text().split()) and time.monotonic() < deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.01)

    def oom_killed(self) -> bool:
        if "memory" not in self.paths:
            return False
        control = (self.paths["memory"] / "memory.oom_control").read_text().split()
        return "oom_kill" in control and int(control[control.index("oom_kill") + 1]) > 0


_PR_SET_PDEATHSIG = 1  # prctl(2)
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with(parent: int) -> None:
    """In the child: be killed when the thread that started us dies, as when the builder is SIGKILLed.

    For a build with no lifeline (unconfined): a builder killed between this fork and the exec
    would otherwise leave the build running, parented to init, for good. Armed here before the
    exec (it survives it), and checked: a parent already gone means no build. A sandboxed build's
    warden must outlive the builder to clean up after it, and watches the lifeline instead.
    """
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _preexec(limits: Limits, join_fds: list[int], lifeline: int | None) -> Callable[[], None]:
    """What the child does between fork and exec: tie its life to ours (unless it watches the
    ``lifeline``), join the cgroups and set the rlimits."""
    rlimits = [(resource.RLIMIT_CORE, 0)]
    if limits.memory_bytes is not None:
        rlimits.append((resource.RLIMIT_DATA, limits.memory_bytes))
    if limits.cpu_seconds is not None:
        rlimits.append((resource.RLIMIT_CPU, limits.cpu_seconds))
    if limits.max_processes is not None and not join_fds:
        rlimits.append((resource.RLIMIT_NPROC, limits.max_processes))

    parent = os.getpid()

    def preexec() -> None:
        if lifeline is None:
            _die_with(parent)
        for fd in join_fds:
            os.write(fd, b"0")
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))

    return preexec


class _LogCap:
    """Keeps the first and last halves of a stream, so a flood costs neither memory nor disk."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        self.head += data[:room]
        self.tail += data[room:]
        if len(self.tail) > 2 * self.tail_limit:
            del self.tail[: -self.tail_limit]

    @property
    def cut(self) -> int:
        return max(0, self.total - self.head_limit - self.tail_limit)

    def value(self) -> bytes:
        if not self.cut:
            return bytes(self.head + self.tail)
        tail = self.tail[-self.tail_limit :]
        return bytes(self.head) + f"\n[... {self.cut} bytes cut ...]\n".encode() + bytes(tail)


def _disk_usage(path: Path) -> int:
    """Bytes allocated under path (st_blocks, not following links); races with the build are ignored."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        total += _disk_usage(Path(entry.path))
                except OSError:
                    pass
    except OSError:
        pass
    return total


class _Killer:
    """Kills the build's whole tree; the first reason given while the build still runs is kept."""

    def __init__(self, process: subprocess.Popen[bytes], cgroups: _Cgroups) -> None:
        self.process = process
        self.cgroups = cgroups
        self.reason: str | None = None
        self.lock = threading.Lock()

    def exited(self) -> bool:
        """Whether the leader has exited, without reaping it (its PID keeps the group's id ours)."""
        found = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return found is not None

    def kill(self, reason: str | None = None) -> None:
        with self.lock:
            if reason and self.reason is None and not self.exited():
                self.reason = reason
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.cgroups.kill()


def _watch_scratch(workdir: Path, limit: int | None, killer: _Killer, stop: threading.Event) -> None:
    """Kill the build once workdir holds more than limit bytes; scan less often when scans are slow."""
    pause = 1.0
    while limit is not None and not stop.wait(pause):
        started = time.monotonic()
        if _disk_usage(workdir) > limit:
            log.info("build passed its scratch limit of %d bytes in %s", limit, workdir)
            killer.kill("scratch")
            return
        pause = max(1.0, 20 * (time.monotonic() - started))


def _supervise(
    argv: list[str],
    workdir: Path,
    env: dict[str, str],
    limits: Limits,
    cgroups: _Cgroups,
    cancel: threading.Event | None,
    mode: str,
    lifeline: int | None = None,
) -> SandboxResult:
    """Start argv, read its output into the capped log, enforce the limits, reap everything."""
    output = _LogCap(limits.log_bytes)
    join_fds = cgroups.join_fds()
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir,
            env=env, start_new_session=True, preexec_fn=_preexec(limits, join_fds, lifeline),
            pass_fds=() if lifeline is None else (lifeline,),
        )  # fmt: skip
    finally:
        for fd in join_fds:
            os.close(fd)
    killer = _Killer(process, cgroups)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_scratch, args=(workdir, limits.scratch_bytes, killer, stop))
    watcher.start()
    assert process.stdout is not None
    deadline = started + limits.timeout_s
    drain_until = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                log.info("build passed its timeout of %ss in %s", limits.timeout_s, workdir)
                killer.kill("timeout")
                deadline = float("inf")
            if cancel is not None and cancel.is_set():
                killer.kill("cancelled")
                cancel = None
            ready, _, _ = select.select([process.stdout], [], [], min(0.5, max(0.0, deadline - now)))
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                output.feed(chunk)
            elif killer.exited():
                # The leader is gone but something holds the pipe: kill it, then stop waiting for it
                # (in unconfined mode without cgroups a setsid'd daemon can escape the kill).
                killer.kill()
                drain_until = drain_until or now + 2.0
                if now > drain_until:
                    break
    finally:
        killer.kill()
        stop.set()
        watcher.join()
        process.stdout.close()
        returncode = process.wait()
    duration = time.monotonic() - started
    reason = killer.reason or _memory_reason(returncode, output, cgroups)
    return SandboxResult(
        returncode=None if killer.reason else returncode,
        killed_reason=reason,
        duration_s=duration,
        log=output.value(),
        log_truncated=output.cut > 0,
        mode=mode,
    )


def _memory_reason(returncode: int, output: _LogCap, cgroups: _Cgroups) -> str | None:
    """Say "memory" when a failed build shows want of memory: an OOM kill, a SIGKILL, ENOMEM in the log."""
    if returncode == 0:
        return None
    sigkilled = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    tail = output.value()[-4096:]
    if cgroups.oom_killed() or sigkilled or any(word in tail for word in MEMORY_EVIDENCE):
        return "memory"
    return None
