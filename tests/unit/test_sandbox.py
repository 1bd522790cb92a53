"""The build sandbox, with real bubblewrap and real processes: what a hostile build can and cannot do."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import command_name, processes_with
from wheelmill.builder.buildenv import describe_environment
from wheelmill.builder.sandbox import Limits, Sandbox, SandboxResult, make_sandbox
from wheelmill.errors import SandboxUnavailable

SYSTEM_PYTHON = "/usr/bin/python3"  # visible in the sandbox without extra binds
QUICK = Limits(timeout_s=30)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return make_sandbox("required")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "build"
    path.mkdir()
    return path


def run_sh(sandbox: Sandbox, workdir: Path, script: str, limits: Limits = QUICK, **kwargs) -> SandboxResult:
    return sandbox.run(["/bin/sh", "-c", script], workdir=workdir, env={}, limits=limits, **kwargs)


def run_py(sandbox: Sandbox, workdir: Path, code: str, limits: Limits = QUICK) -> SandboxResult:
    return sandbox.run([SYSTEM_PYTHON, "-c", code], workdir=workdir, env={}, limits=limits)


def fingerprint(path: Path) -> tuple[str, float] | None:
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real HTTP server on the host's 127.0.0.1, serving a directory."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], root
    server.shutdown()
    server.server_close()


def test_home_writes_land_in_workdir_and_host_home_is_untouched(sandbox: Sandbox, workdir: Path) -> None:
    bashrc = Path("/root/.bashrc")
    before = fingerprint(bashrc)
    result = run_sh(sandbox, workdir, "echo 'alias ls=rm' >> ~/.bashrc && echo pwned >> /root/.bashrc")
    assert result.returncode != 0  # /root is not there to write to
    assert (workdir / "home" / ".bashrc").read_text() == "alias ls=rm\n"
    assert fingerprint(bashrc) == before


def test_host_secrets_and_directories_are_not_visible(sandbox: Sandbox, workdir: Path) -> None:
    token = Path(f"/root/.wheelmill-test-token-{uuid.uuid4().hex}")
    token.write_text("s3cret")
    try:
        result = run_sh(
            sandbox, workdir, f"cat {token}; ls /root /home /work /etc/shadow /etc/ssh; cat /etc/shadow; true"
        )
    finally:
        token.unlink()
    assert b"s3cret" not in result.log
    assert b"No such file or directory" in result.log
    assert b"root:" not in result.log  # /etc/shadow's first line


def test_environment_is_only_what_the_builder_gives(
    sandbox: Sandbox, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHEELMILL_TOKEN", "s3cret")
    result = sandbox.run(
        ["/usr/bin/env"],
        workdir=workdir,
        env={"PIP_INDEX_URL": "http://127.0.0.1:8000/simple/"},
        limits=QUICK,
    )
    env = dict(line.split("=", 1) for line in result.log.decode().splitlines())
    assert b"s3cret" not in result.log
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:8000/simple/"
    assert env["HOME"] == str(workdir / "home") and env["TMPDIR"] == str(workdir / "tmp")
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["PIP_NO_INPUT"] == "1" and env["WHEELMILL_BUILD"] == "1"
    assert set(env) == {
        "PATH", "HOME", "TMPDIR", "LANG", "GIT_TERMINAL_PROMPT", "GIT_ALLOW_PROTOCOL", "PIP_NO_INPUT",
        "PIP_DISABLE_PIP_VERSION_CHECK", "WHEELMILL_BUILD", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE",
        "PIP_INDEX_URL", "PWD",  # bubblewrap's --chdir sets PWD
    }  # fmt: skip


def test_reading_stdin_gets_end_of_file(sandbox: Sandbox, workdir: Path) -> None:
    result = run_py(sandbox, workdir, "input('Password: ')")
    assert result.returncode == 1 and b"EOFError" in result.log
    assert result.duration_s < 5


@pytest.mark.slow
def test_timeout_kills_the_build_and_its_daemons(sandbox: Sandbox, workdir: Path) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    result = run_sh(
        sandbox, workdir, f"sleep {marker} & setsid sleep {marker} & while :; do :; done", Limits(timeout_s=1)
    )
    assert (result.returncode, result.killed_reason) == (None, "timeout")
    assert result.duration_s < 5
    assert processes_with(marker) == []


@pytest.mark.slow
def test_daemon_left_by_a_finished_build_is_killed(sandbox: Sandbox, workdir: Path) -> None:
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    result = run_sh(sandbox, workdir, f"setsid sleep {marker} > /dev/null 2>&1 & echo done")
    assert (result.returncode, result.log) == (0, b"done\n")
    assert processes_with(marker) == []


@pytest.mark.slow
def test_a_build_being_started_dies_with_the_builder(tmp_path: Path) -> None:
    """A builder SIGKILLed between starting a build's process and bubblewrap arming its own
    --die-with-parent must not leave the build running: the sandbox arms it before the exec."""
    marker = f"wheelmill-orphan-{uuid.uuid4().hex}"
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from wheelmill.builder.sandbox import Limits, _preexec\n"
            f"argv = ['/bin/sh', '-c', 'sleep 300 # {marker}']\n"
            "subprocess.Popen(argv, preexec_fn=_preexec(Limits(), [], None))\n"
            "print('started', flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
    )
    with starter:
        assert starter.stdout is not None and starter.stdout.readline() == b"started\n"
        assert processes_with(marker)
        starter.kill()
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


@pytest.mark.slow
def test_a_builder_killed_as_its_sandbox_starts_leaves_no_sandbox(tmp_path: Path) -> None:
    """Killed the moment bubblewrap appears, before the sandbox's launcher ties the build to the
    builder: the warden outside the sandbox ends it instead (warden.py)."""
    starter = (
        "import sys\n"
        "from pathlib import Path\n"
        "from wheelmill.builder.sandbox import Limits, make_sandbox\n"
        "argv = ['/bin/sh', '-c', 'sleep 300 # ' + sys.argv[2]]\n"
        "make_sandbox('required').run(argv, workdir=Path(sys.argv[1]), env={}, limits=Limits())\n"
    )
    for attempt in range(5):
        marker = f"wheelmill-start-{uuid.uuid4().hex}"
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        builder = subprocess.Popen([sys.executable, "-c", starter, str(workdir), marker])
        deadline = time.monotonic() + 30
        while not any(command_name(pid) == "bwrap" for pid in processes_with(marker)):
            assert time.monotonic() < deadline and builder.poll() is None, "the sandbox never started"
        builder.kill()
        builder.wait()
        deadline = time.monotonic() + 10
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(marker) == [], f"attempt {attempt}: the sandbox outlived its builder"


def test_fork_bomb_is_contained_and_the_next_build_works(sandbox: Sandbox, workdir: Path) -> None:
    marker = f"bomb-{uuid.uuid4().hex}"
    # Each process forks until refused, then retries now and then: the population stays at the cap.
    bomb = f"# {marker}\nimport os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
    bomb += "        time.sleep(1)"
    limits = Limits(timeout_s=3, max_processes=100)
    thread = threading.Thread(target=run_py, args=(sandbox, workdir, bomb, limits))
    thread.start()
    peak = 0
    while thread.is_alive():
        peak = max(peak, len(processes_with(marker)))
        time.sleep(0.05)
    assert 80 < peak <= 100
    assert processes_with(marker) == []
    assert run_sh(sandbox, workdir, "echo still fine").log == b"still fine\n"


def test_allocating_50_gb_fails_for_want_of_memory(sandbox: Sandbox, workdir: Path) -> None:
    result = run_py(sandbox, workdir, "b = bytearray(50 * 2**30)")
    assert result.killed_reason == "memory"
    assert result.returncode not in (0, None)
    assert b"MemoryError" in result.log


@pytest.mark.slow
def test_parallel_jobs_together_over_the_memory_limit_fail_for_want_of_memory(
    sandbox: Sandbox, workdir: Path
) -> None:
    # Like `make -j4`: four workers of 60 MB, each under the limit, together over it; make fails.
    code = (
        "import os, time\n"
        "workers = []\n"
        "for _ in range(4):\n"
        "    if (pid := os.fork()) == 0:\n"
        "        b = b'x' * (60 * 2**20)\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
        "    workers.append(pid)\n"
        "raise SystemExit(any(os.waitpid(pid, 0)[1] for pid in workers))\n"
    )
    result = run_py(sandbox, workdir, code, Limits(timeout_s=30, memory_bytes=200 * 2**20))
    assert (result.returncode, result.killed_reason) == (1, "memory")


def test_output_flood_is_capped_to_head_and_tail(sandbox: Sandbox, workdir: Path) -> None:
    code = "import sys\nsys.stdout.write('FIRST\\n' + 'x' * 1023 * 100 * 1024 + '\\nLAST\\n')"
    result = run_py(sandbox, workdir, code, Limits(timeout_s=30, log_bytes=2**20))
    assert result.returncode == 0 and result.log_truncated
    assert len(result.log) < 2**20 + 100
    assert result.log.startswith(b"FIRST\n") and result.log.endswith(b"x\nLAST\n")
    assert b" bytes cut ...]" in result.log


@pytest.mark.slow
def test_scratch_space_past_its_limit_stops_the_build(sandbox: Sandbox, workdir: Path) -> None:
    result = run_sh(
        sandbox, workdir, "head -c 64M /dev/zero > big; sleep 30", Limits(scratch_bytes=32 * 2**20)
    )
    assert (result.returncode, result.killed_reason) == (None, "scratch")
    assert result.duration_s < 10


def test_network_is_refused_at_once(sandbox: Sandbox, workdir: Path) -> None:
    code = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=30)"
    result = run_py(sandbox, workdir, code)
    assert result.returncode == 1 and b"Network is unreachable" in result.log
    assert result.duration_s < 2


def test_git_clone_and_curl_fail_fast_without_prompting(sandbox: Sandbox, workdir: Path) -> None:
    result = run_sh(
        sandbox, workdir,
        "git clone https://github.com/pypa/sampleproject; echo git=$?; "
        "curl -sS https://example.com; echo curl=$?",
    )  # fmt: skip
    assert b"git=128" in result.log and b"curl=6" in result.log
    assert b"Username" not in result.log
    assert result.duration_s < 5


def test_proxy_lets_the_build_reach_allowed_hosts_only(
    workdir: Path, http_server: tuple[int, Path], tmp_path: Path
) -> None:
    port, served = http_server
    (served / "hello.txt").write_text("hello from the farm index")
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    other_port = other.server_address[1]
    sandbox = make_sandbox("required", [f"127.0.0.1:{port}"])
    code = (
        "import urllib.request, urllib.error\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/hello.txt').read().decode())\n"
        "try:\n"
        f"    urllib.request.urlopen('http://127.0.0.1:{other_port}/')\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print(exc.code, exc.read().decode())\n"
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
    )
    try:
        result = sandbox.run([SYSTEM_PYTHON, "-u", "-c", code], workdir=workdir, env={}, limits=QUICK)
    finally:
        other.server_close()
    lines = result.log.decode().splitlines()
    assert lines[0] == "hello from the farm index"
    assert lines[1] == f"403 wheelmill proxy: 127.0.0.1:{other_port} is not an allowed host for builds"
    assert "Connection refused" in lines[-1]  # the index is reachable through the proxy only


@pytest.mark.slow
def test_pip_builds_a_wheel_and_fetches_from_the_farm_index_through_the_proxy(
    workdir: Path, http_server: tuple[int, Path]
) -> None:
    port, served = http_server
    project = workdir / "tiny"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny"\nversion = "0.1"\n'
    )
    (project / "tiny.py").write_text("ANSWER = 42\n")
    sandbox = make_sandbox("required", [f"127.0.0.1:{port}"])
    pip = [sys.executable, "-m", "pip"]
    python_home = [Path(sys.base_prefix)]
    built = sandbox.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", "out", str(project)],
        workdir=workdir, env={}, limits=QUICK, readonly_paths=python_home,
    )  # fmt: skip
    assert built.returncode == 0, built.log.decode()
    (wheel,) = (workdir / "out").glob("tiny-0.1-*.whl")
    (served / "simple" / "tiny").mkdir(parents=True)
    wheel.rename(served / "simple" / "tiny" / wheel.name)
    fetched = sandbox.run(
        [*pip, "download", "--no-deps", "--index-url", f"http://127.0.0.1:{port}/simple/", "-d", "dl",
         "tiny"],
        workdir=workdir, env={}, limits=QUICK, readonly_paths=python_home,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.log.decode()
    assert (workdir / "dl" / wheel.name).exists()


def test_required_without_bubblewrap_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SandboxUnavailable, match="not usable"):
        make_sandbox("required", bwrap_path="/nonexistent/bwrap")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable):
        make_sandbox("required")


def test_auto_falls_back_to_unconfined_and_warns_once() -> None:
    code = (
        "import logging; logging.basicConfig()\n"
        "from wheelmill.builder.sandbox import make_sandbox\n"
        "print(make_sandbox('auto', bwrap_path='/nonexistent/bwrap').mode)\n"
        "print(make_sandbox('auto', bwrap_path='/nonexistent/bwrap').mode)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "unconfined\nunconfined\n"
    assert done.stderr.count("BUILDS ARE NOT SANDBOXED") == 1


@pytest.mark.slow
def test_unconfined_mode_keeps_every_guard_without_a_namespace(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHEELMILL_TOKEN", "s3cret")
    sandbox = make_sandbox("none")
    marker = f"1000.{uuid.uuid4().int % 10**9}"
    result = run_sh(
        sandbox, workdir,
        f"echo x >> ~/.bashrc; env; read line || echo no-stdin; setsid sleep {marker} & sleep 1000",
        Limits(timeout_s=1),
    )  # fmt: skip
    assert (result.mode, result.killed_reason) == ("unconfined", "timeout")
    assert b"s3cret" not in result.log and b"no-stdin" in result.log
    assert (workdir / "home" / ".bashrc").read_text() == "x\n"
    assert processes_with(marker) == []


def test_build_environment_is_described(sandbox: Sandbox) -> None:
    described = describe_environment(sys.executable, sandbox)
    assert described["python"] == f"CPython {'.'.join(map(str, sys.version_info[:3]))}"
    assert described["os"].startswith("Debian") and described["compiler"].startswith("gcc")
    assert described["kernel"] == os.uname().release and described["sandbox"] == "bubblewrap"
    assert described["pip"][0].isdigit() and described["setuptools"][0].isdigit()
