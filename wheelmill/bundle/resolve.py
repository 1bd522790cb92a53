"""Resolving a requirements set for one target with a real resolver: ``uv pip compile``.

uv's ``--python-platform`` names only some platforms (not ``linux_armv7l`` or ``linux_armv6l``, the
farm's founding targets), so the resolution is universal, valid everywhere with an environment
marker on each pin, and the target's pins are those whose marker holds in the target's
environment: how one machine installs from a universal lock file.

uv may build an sdist to learn its dependencies, and a build runs the sdist's own code. The master
never runs upstream code unconfined, so uv runs in the builders' sandbox, reaching only the indexes.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelmill.builder.building import allowed_hosts
from wheelmill.builder.sandbox import Limits, make_sandbox
from wheelmill.bundle.errors import BundleError, InvalidRequirements, UnknownTarget, Unresolvable
from wheelmill.targets import Target

RESOLVE_TIMEOUT_S = 300.0
MAX_REQUIREMENTS = 500
MESSAGE_CHARS = 2000  # of uv's explanation, enough for a conflict chain


@dataclass(frozen=True)
class WheelLink:
    """A wheel an index offers: where it is and what its bytes must hash to."""

    filename: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Pin:
    """One package of the resolution for the target, with every wheel its index lists."""

    name: NormalizedName
    version: str
    wheels: tuple[WheelLink, ...]


@dataclass(frozen=True)
class Indexes:
    farm: str  # the farm's simple index: its wheels, and upstream's files when merged
    upstream: str  # for packages the farm does not know yet


def parse_requirements(text: str) -> list[Requirement]:
    """PEP 508 requirements by name, one a line; anything else is refused, naming its line.

    Options (``-r``, ``--index-url``, ``-e``) and direct references (URLs, paths) are refused: the
    text comes from users of the API and reaches a resolver on the master.
    """
    requirements = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise InvalidRequirements(
                f"requirements, line {number}: {raw.strip()!r}: options are not accepted"
            )
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise InvalidRequirements(f"requirements, line {number}: {raw.strip()!r}: {exc}") from exc
        if requirement.url:
            raise InvalidRequirements(
                f"requirements, line {number}: {raw.strip()!r}: a URL or path cannot be bundled; "
                "name a package on the index"
            )
        requirements.append(requirement)
    if not requirements:
        raise InvalidRequirements("requirements: no requirement given")
    if len(requirements) > MAX_REQUIREMENTS:
        raise InvalidRequirements(f"requirements: {len(requirements)} lines, at most {MAX_REQUIREMENTS}")
    return requirements


def marker_environment(target: Target) -> dict[str, str]:
    """The PEP 508 marker variables of a CPython of ``target``.

    A target names no patch release, so ``python_full_version`` is the ``.0`` one.
    """
    sys_platform, system, machine = _platform_facts(target.platform)
    version = target.python_version_text
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{version}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": f"{version}.0",
        "python_version": version,
        "sys_platform": sys_platform,
    }


def resolve(
    requirements: Sequence[Requirement],
    target: Target,
    preferences: Mapping[NormalizedName, Version],
    indexes: Indexes,
    workdir: Path,
    sandbox_mode: str,
) -> list[Pin]:
    """The pins ``target`` needs for ``requirements``, preferring the ``preferences`` versions.

    ``workdir`` is the sandbox's scratch space; the caller creates it and removes it.
    """
    environment = marker_environment(target)
    (workdir / "requirements.in").write_text("".join(f"{requirement}\n" for requirement in requirements))
    if preferences:  # uv reads an existing output file as the versions to keep where allowed
        (workdir / "pylock.toml").write_text(_preferences_lock(preferences))
    uv = _uv_binary()
    argv = [
        str(uv), "pip", "compile", "requirements.in", "--universal",
        "--python-version", target.python_version_text, "--python", sys.executable,
        "--format", "pylock.toml", "--output-file", "pylock.toml",
        "--index-url", indexes.farm, "--extra-index-url", indexes.upstream,
        "--no-config", "--no-header", "--quiet",
    ]  # fmt: skip
    sandbox = make_sandbox(
        sandbox_mode, allowed_hosts({"index_url": indexes.farm, "extra_index_url": indexes.upstream})
    )
    result = sandbox.run(
        argv,
        workdir=workdir,
        env={},
        limits=Limits(timeout_s=RESOLVE_TIMEOUT_S),
        readonly_paths=_interpreter_paths(uv),
    )
    if result.killed_reason is not None:
        raise Unresolvable(f"resolving for {target} was stopped: {result.killed_reason}")
    if result.returncode != 0:
        message = result.log.decode("utf-8", "replace").strip()[-MESSAGE_CHARS:]
        raise Unresolvable(f"cannot resolve the requirements for {target}:\n{message}")
    return read_lock((workdir / "pylock.toml").read_text(), environment)


def read_lock(text: str, environment: Mapping[str, str]) -> list[Pin]:
    """The pins of a universal pylock.toml whose markers hold in ``environment``."""
    pins = []
    for package in tomllib.loads(text).get("packages", []):
        marker = package.get("marker")
        if marker and not Marker(marker).evaluate(dict(environment)):
            continue
        wheels = tuple(
            WheelLink(
                filename=wheel.get("name") or unquote(urlsplit(wheel["url"]).path.rsplit("/", 1)[-1]),
                url=wheel["url"],
                sha256=wheel["hashes"]["sha256"],
                size=int(wheel.get("size", 0)),
            )
            for wheel in package.get("wheels", [])
            if "url" in wheel and "sha256" in wheel.get("hashes", {})
        )
        pins.append(Pin(canonicalize_name(package["name"]), package["version"], wheels))
    return pins


def _preferences_lock(preferences: Mapping[NormalizedName, Version]) -> str:
    lines = ['lock-version = "1.0"', 'created-by = "wheelmill"', ""]
    for name, version in sorted(preferences.items()):
        # JSON strings are TOML basic strings for these ASCII names and versions.
        lines += ["[[packages]]", f"name = {json.dumps(name)}", f"version = {json.dumps(str(version))}", ""]
    return "\n".join(lines)


def _platform_facts(platform: str) -> tuple[str, str, str]:
    """(sys_platform, platform_system, platform_machine) of a platform tag."""
    if platform.startswith("linux_"):
        return "linux", "Linux", platform.removeprefix("linux_")
    if platform.startswith("macosx_") and platform.count("_") >= 3:
        return "darwin", "Darwin", platform.split("_", 3)[3]
    raise UnknownTarget(f"target platform {platform!r}: bundles know linux_* and macosx_* platforms")


def _uv_binary() -> Path:
    try:
        from uv import find_uv_bin
    except ImportError as exc:
        raise BundleError("bundles resolve with uv, which is not installed here (pip install uv)") from exc
    return Path(find_uv_bin())


def _interpreter_paths(uv: Path) -> list[Path]:
    """What the sandbox must see beyond /usr: the uv binary and this interpreter, for sdist builds."""
    paths = {uv, Path(sys.prefix), Path(sys.base_prefix)}
    return sorted(path for path in paths if not path.is_relative_to("/usr"))
