"""The smoke test: does a freshly built wheel import on the machine that built it?

A wheel that compiles can still be useless: a shared library it links is missing at run time, or
its package layout is wrong. The builder installs the wheel into an empty directory, inside the
same sandbox as the build (no network), and imports its top-level modules in a fresh interpreter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from wheelmill.builder.sandbox import Limits, Sandbox
from wheelmill.wheels import inspect_wheel

SMOKE_LIMITS = Limits(timeout_s=120.0, log_bytes=64 * 1024)
# Runs in the sandbox. A ModuleNotFoundError for another distribution is a dependency the smoke
# test did not install (it installs with --no-deps, offline): inconclusive, not a broken wheel.
_IMPORTER = """
import importlib, json, sys, traceback
sys.path.insert(0, sys.argv[1])
own = set(sys.argv[2:])
failures = {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in own:
            failures[name] = traceback.format_exc(limit=3)[-1500:]
    except BaseException:
        failures[name] = traceback.format_exc(limit=3)[-1500:]
print("WHEELMILL-SMOKE " + json.dumps(failures))
"""


@dataclass(frozen=True)
class SmokeResult:
    modules: tuple[str, ...]
    error: str | None  # None when every module imported

    @property
    def passed(self) -> bool:
        return self.error is None


def modules_to_import(wheel: Path, configured: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The configured modules, else the wheel's top-level modules (top_level.txt or its layout)."""
    if configured:
        return configured
    info = inspect_wheel(wheel, wheel.name)
    return tuple(name for name in info.top_level if name.isidentifier())


def smoke_test(
    wheel: Path,
    workdir: Path,
    sandbox: Sandbox,
    python: str,
    *,
    readonly_paths: list[Path],
    modules: tuple[str, ...] = (),
) -> SmokeResult:
    """Install ``wheel`` into a fresh directory and import its modules, all inside ``sandbox``.

    It runs in a workdir of its own (a fresh HOME), with pip and Python isolated from configuration:
    the build just ran there and may have planted a pip.conf or a sitecustomize for it to find.
    """
    names = modules_to_import(wheel, modules)
    if not names:
        return SmokeResult((), None)
    fresh = workdir / "smoke" / wheel.stem
    target = fresh / "site"
    target.mkdir(parents=True, exist_ok=True)
    wheel = Path(shutil.copy2(wheel, fresh / wheel.name))
    install = sandbox.run(
        [python, "-I", "-m", "pip", "install", "--isolated", "--no-deps", "--no-index", "--no-compile",
         "--target", str(target), str(wheel)],
        workdir=fresh, env={}, limits=SMOKE_LIMITS, readonly_paths=readonly_paths,
    )  # fmt: skip
    if install.returncode != 0:
        return SmokeResult(
            names, "the wheel does not install: " + install.log.decode(errors="replace")[-1500:]
        )
    script = fresh / "import_modules.py"
    script.write_text(_IMPORTER)
    imported = sandbox.run(
        [python, "-I", str(script), str(target), *names],
        workdir=fresh, env={}, limits=SMOKE_LIMITS, readonly_paths=readonly_paths,
    )  # fmt: skip
    output = imported.log.decode(errors="replace")
    marker = output.rfind("WHEELMILL-SMOKE ")
    if marker < 0:
        return SmokeResult(names, "the import check did not finish: " + output[-1500:])
    failures: dict[str, str] = json.loads(output[marker + len("WHEELMILL-SMOKE ") :].splitlines()[0])
    if not failures:
        return SmokeResult(names, None)
    return SmokeResult(
        names, "; ".join(f"import {name} failed: {text.strip()}" for name, text in failures.items())
    )
