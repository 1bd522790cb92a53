"""A bundle's record: what was asked, where it stands, what it holds; kept as JSON beside its files."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelmill.bundle.errors import UnknownBundle
from wheelmill.bundle.writer import BundledWheel

ID_PATTERN = re.compile(r"[0-9a-f]{32}")


class State(enum.StrEnum):
    building = "building"  # waiting for the farm to build wheels
    ready = "ready"  # the directory and its .tar.gz are written
    failed = "failed"  # some wheel cannot be had: see the items' reasons, or error


class ItemStatus(enum.StrEnum):
    queued = "queued"
    building = "building"
    built = "built"
    failed = "failed"  # failed, skipped or cancelled: reason says which and why


OPEN_ITEMS = (ItemStatus.queued, ItemStatus.building)


@dataclass
class Item:
    """A wheel the bundle waits for: one version of a package built for the target."""

    name: str
    version: str
    status: ItemStatus
    job_id: int | None = None
    reason: str | None = None
    build_id: int | None = None  # the latest build, for the log link


@dataclass
class Bundle:
    id: str
    target: str
    requirements: list[str]  # normalised requirement lines
    installed: dict[str, str]  # canonical name -> version on the target
    created_at: str
    state: State = State.building
    items: list[Item] = field(default_factory=list)  # every round's, latest status
    wheels: list[BundledWheel] = field(default_factory=list)  # once ready
    left_out: list[tuple[str, str]] = field(default_factory=list)  # present on the target
    error: str | None = None  # why it failed, when no item says

    @property
    def archive_name(self) -> str:
        return f"wheelmill-bundle-{self.id[:12]}.tar.gz"

    @property
    def total_size(self) -> int:
        return sum(wheel.size for wheel in self.wheels)

    def open_items(self) -> list[Item]:
        return [item for item in self.items if item.status in OPEN_ITEMS]

    def replace_item(self, new: Item) -> None:
        """Record ``new``, replacing an earlier round's item for the same version."""
        self.items = [i for i in self.items if (i.name, i.version) != (new.name, new.version)] + [new]


class BundleStore:
    """Bundles under ``root/ID/``: ``state.json``, and the bundle's .tar.gz once ready."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, bundle_id: str) -> Path:
        if not ID_PATTERN.fullmatch(bundle_id):
            raise UnknownBundle(f"no bundle {bundle_id!r}")
        return self.root / bundle_id

    def load(self, bundle_id: str) -> Bundle:
        try:
            raw = json.loads((self.directory(bundle_id) / "state.json").read_text())
        except FileNotFoundError:
            raise UnknownBundle(f"no bundle {bundle_id!r}") from None
        return _from_json(raw)

    def save(self, bundle: Bundle) -> None:
        directory = self.directory(bundle.id)
        directory.mkdir(parents=True, exist_ok=True)
        temp = directory / "state.json.tmp"
        temp.write_text(json.dumps(dataclasses.asdict(bundle), indent=1))
        os.replace(temp, directory / "state.json")


def _from_json(raw: dict[str, Any]) -> Bundle:
    raw["state"] = State(raw["state"])
    raw["items"] = [Item(**{**item, "status": ItemStatus(item["status"])}) for item in raw["items"]]
    raw["wheels"] = [BundledWheel(**wheel) for wheel in raw["wheels"]]
    raw["left_out"] = [tuple(pair) for pair in raw["left_out"]]
    return Bundle(**raw)
