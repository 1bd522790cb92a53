"""The planner's decision for one version and one target: build, skip (with a reason) or covered.

Pure functions over plain values, so every rule is testable without a database.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, parse_tag

from wheelmill.targets import Target


class Outcome(enum.StrEnum):
    build = "build"
    skip = "skip"
    covered = "covered"
    wait = "wait"  # build, once the sdist's URL, hash, size and requires-python are recorded


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True)
class VersionFacts:
    """What the planner needs to know about a version."""

    sdists: tuple[str, ...]  # filenames of non-removed upstream sdists
    upstream_wheels: tuple[str, ...]  # filenames of upstream wheels
    requires_python: str | None
    yanked: bool
    quarantined: bool
    package_skip: str | None
    version_skip: str | None
    # The sdists' URL, hash, size and requires-python are recorded, not just their names (the
    # whole-index feed names files; the JSON API's details follow).
    details_known: bool = True
    target_skips: Mapping[str, str] = field(default_factory=dict)  # target tag -> an admin's reason


def decide(facts: VersionFacts, target: Target, *, skip_yanked: bool = False) -> Decision:
    """Decide what to do about ``facts`` for ``target``; rules in order of precedence."""
    if facts.quarantined:
        return Decision(Outcome.skip, "quarantined upstream")
    if facts.package_skip is not None:
        return Decision(Outcome.skip, f"package skipped by an admin: {facts.package_skip}")
    if facts.version_skip is not None:
        return Decision(Outcome.skip, f"version skipped by an admin: {facts.version_skip}")
    if (on_target := facts.target_skips.get(str(target))) is not None:
        return Decision(Outcome.skip, f"skipped on {target} by an admin: {on_target}")
    covering = covering_upstream_wheel(facts.upstream_wheels, target)
    if covering is not None:
        return Decision(Outcome.covered, f"upstream has {covering}")
    if not facts.sdists:
        return Decision(Outcome.skip, "binary-only: no sdist upstream")
    if skip_yanked and facts.yanked:
        return Decision(Outcome.skip, "yanked when discovered")
    if facts.requires_python and not _python_allowed(facts.requires_python, target):
        return Decision(
            Outcome.skip,
            f"requires-python {facts.requires_python!r} excludes Python {target.python_version_text}",
        )
    if not facts.details_known:
        return Decision(Outcome.wait, "awaiting upstream file details")
    return Decision(Outcome.build)


def covering_upstream_wheel(filenames: tuple[str, ...], target: Target) -> str | None:
    """The first upstream wheel a target can install, judged with ``packaging.tags``."""
    for filename in filenames:
        tags = wheel_tags(filename)
        if tags is not None and target.can_install(tags):
            return filename
    return None


def wheel_tags(filename: str) -> frozenset[Tag] | None:
    """The tags a wheel's filename declares; None for anything else (an egg, an exe, a bad name).

    Only the tags are read: whole-index planning judges hundreds of thousands of wheels, and the
    tag triples repeat (``cp311-cp311-manylinux_2_17_x86_64``) where parsing the name and version
    of each file would not.
    """
    parts = filename.removesuffix(".whl").split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        return None
    return _parse_tags("-".join(parts[-3:]))


@functools.lru_cache(maxsize=1 << 12)
def _parse_tags(triple: str) -> frozenset[Tag] | None:
    try:
        return parse_tag(triple)
    except (ValueError, IndexError):
        return None


def _python_allowed(requires_python: str, target: Target) -> bool:
    try:
        specifier = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # a malformed upstream value must not hide a version: let the build decide
    return specifier.contains(f"{target.python_version_text}.0", prereleases=True) or specifier.contains(
        f"{target.python_version_text}.99", prereleases=True
    )
