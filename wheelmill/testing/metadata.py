"""Core metadata (PKG-INFO / METADATA) of the releases the stand-in upstream generates."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version


@dataclass(frozen=True)
class CoreMetadata:
    """What an uploader declares for a release; checked on creation so a typo in a test fails early."""

    name: str  # as the uploader spelled it
    version: str  # as the uploader spelled it, e.g. "1.0.0-beta"
    summary: str = ""
    description: str = ""
    requires_python: str | None = None
    dependencies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        canonicalize_name(self.name, validate=True)
        Version(self.version)
        if self.requires_python is not None:
            SpecifierSet(self.requires_python)
        for dependency in self.dependencies:
            Requirement(dependency)
        if "\n" in self.summary:
            raise ValueError(f"summary {self.summary!r} must be one line")

    @property
    def canonical_name(self) -> NormalizedName:
        return canonicalize_name(self.name)

    @property
    def module(self) -> str:
        """The import name of the generated package: the canonical name with '-' as '_'."""
        return self.canonical_name.replace("-", "_")

    @property
    def file_version(self) -> str:
        """The version as it appears in file names (PEP 440 normal form, as PyPI's tools write it)."""
        return str(Version(self.version))

    def render(self) -> str:
        """The Metadata-Version 2.1 text, headers then the description as the body."""
        lines = ["Metadata-Version: 2.1", f"Name: {self.name}", f"Version: {self.version}"]
        lines.append(f"Summary: {self.summary}")
        if self.requires_python is not None:
            lines.append(f"Requires-Python: {self.requires_python}")
        lines.extend(f"Requires-Dist: {dependency}" for dependency in self.dependencies)
        lines.append("Description-Content-Type: text/plain")
        return "\n".join(lines) + "\n\n" + self.description + ("\n" if self.description else "")
