"""The changelog client against the stand-in's XML-RPC endpoint, and what its entries mean."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator

import pytest

from wheelmill.errors import UpstreamError
from wheelmill.testing import StandInUpstream
from wheelmill.upstream.changelog import Changelog, _decode
from wheelmill.upstream.client import UpstreamClient
from wheelmill.upstream.events import (
    FileAdded,
    FileRemoved,
    Ignored,
    ProjectCreated,
    ProjectQuarantine,
    ProjectRemoved,
    ReleaseCreated,
    ReleaseQuarantine,
    ReleaseRemoved,
    ReleaseYank,
    fold,
    parse,
)
from wheelmill.upstream.fastpage import changelog_entries

HISTORY = [(f"proj-{i}", "1.0", 1_700_000_000 - i, "new release") for i in range(7)]


@pytest.fixture
def up() -> Iterator[StandInUpstream]:
    with StandInUpstream(changelog_page_size=3) as index:
        index.extend_changelog(HISTORY)
        yield index


@pytest.fixture
def changelog(up: StandInUpstream) -> Iterator[Changelog]:
    client = UpstreamClient(up.simple_url, attempts=3, sleep=lambda _: None)
    yield Changelog(client)
    client.close()


def test_pages_through_the_whole_feed_in_serial_order(up: StandInUpstream, changelog: Changelog) -> None:
    pages = list(changelog.pages(0))
    assert [len(page) for page in pages] == [3, 3, 1]
    entries = [entry for page in pages for entry in page]
    assert [entry[4] for entry in entries] == list(range(1, 8))
    assert [entry[:4] for entry in entries] == HISTORY
    assert changelog.last_serial() == up.serial == 7
    assert list(changelog.pages(7)) == []


def test_pages_resume_after_a_serial(changelog: Changelog) -> None:
    assert [entry[4] for page in changelog.pages(5) for entry in page] == [6, 7]


def test_project_events_have_no_version(up: StandInUpstream, changelog: Changelog) -> None:
    up.extend_changelog([("gone", None, 1_700_000_000, "remove project")])
    assert changelog.since(7) == [("gone", None, 1_700_000_000, "remove project", 8)]


@pytest.mark.parametrize("fault", ["xmlrpc-fault", "500", "429", "garbage", "truncated"])
def test_a_failing_answer_is_retried(up: StandInUpstream, changelog: Changelog, fault: str) -> None:
    up.fail_next("/pypi", fault, times=2, method="POST")
    assert len(changelog.since(0)) == 3


@pytest.mark.parametrize("fault", ["xmlrpc-fault", "garbage"])
def test_a_persistent_failure_names_the_call(up: StandInUpstream, changelog: Changelog, fault: str) -> None:
    up.fail_next("/pypi", fault, times=3, method="POST")
    with pytest.raises(UpstreamError, match=r"changelog_since_serial\(0\): gave up after 3 attempts"):
        changelog.since(0)


def entry(action: str, version: str | None = "1.0", serial: int = 1, name: str = "Demo_Pkg") -> tuple:
    return (name, version, 1_700_000_000, action, serial)


@pytest.mark.parametrize(
    ("action", "version", "kind", "fields"),
    [
        ("create", None, ProjectCreated, {}),
        ("remove project", None, ProjectRemoved, {}),
        ("project quarantined", None, ProjectQuarantine, {"quarantined": True}),
        ("project quarantine cleared", None, ProjectQuarantine, {"quarantined": False}),
        ("new release", "1.0.0-beta", ReleaseCreated, {"canonical": "1b0"}),
        ("remove release", "1.0", ReleaseRemoved, {}),
        ("yank release", "1.0", ReleaseYank, {"yanked": True}),
        ("unyank release", "1.0", ReleaseYank, {"yanked": False}),
        ("release quarantined", "1.0", ReleaseQuarantine, {"quarantined": True}),
        ("release quarantine cleared", "1.0", ReleaseQuarantine, {"quarantined": False}),
        ("add source file demo_pkg-1.0.tar.gz", "1.0", FileAdded, {"python_tag": "source"}),
        ("add cp311 file demo_pkg-1.0-cp311-cp311-win32.whl", "1.0", FileAdded, {"python_tag": "cp311"}),
        ("remove file demo_pkg-1.0.tar.gz", "1.0", FileRemoved, {"filename": "demo_pkg-1.0.tar.gz"}),
    ],
)
def test_each_action_becomes_its_event(action: str, version: str | None, kind: type, fields: dict) -> None:
    event = parse(entry(action, version))
    assert type(event) is kind
    assert (event.name, event.project) == ("Demo_Pkg", "demo-pkg")
    for key, value in fields.items():
        assert getattr(event, key) == value


@pytest.mark.parametrize(
    "raw",
    [
        entry("add Owner alice", None),
        entry("remove Maintainer bob", None),
        entry("change Owner alice to Maintainer", None),
        entry("invite Maintainer carol", None),
        entry("accepted Owner dave", None),
        entry("revoke_invite Owner erin", None),
        entry("add Owner file", None),  # a user called "file" is not a file
        entry("docupdate", None),
        entry("new release", None),  # a release with no version
        entry("new release", "not a version"),
        entry("create", None, name="bad name!"),
        entry("add source file ../escape.tar.gz"),
    ],
)
def test_ownership_noise_and_invalid_entries_are_ignored(raw: tuple) -> None:
    assert isinstance(parse(raw), Ignored)


def test_fold_applies_events_in_serial_order_whatever_their_timestamps() -> None:
    events = [
        parse(("Demo", "1.0", 300, "new release", 1)),
        parse(("Demo", "1.0", 100, "add source file demo-1.0.tar.gz", 2)),
        parse(("Demo", "1.0", 200, "remove release", 3)),
        parse(("demo", "1.0", 50, "new release", 4)),
        parse(("demo", "1.0", 60, "add py3 file demo-1.0-py3-none-any.whl", 5)),
    ]
    for order in (events, events[::-1], sorted(events, key=lambda event: event.timestamp)):
        change = fold(order)["demo"]
        release = change.releases["1"]
        assert (release.exists, release.wiped) == (True, True)
        assert release.added == {"demo-1.0-py3-none-any.whl": False}  # the sdist went with the removal
        assert (change.spelling, change.spellings, change.last_serial) == ("demo", {"Demo", "demo"}, 5)


def test_fold_a_removed_project_forgets_what_came_before() -> None:
    change = fold(
        [
            parse(("demo", None, 1, "create", 1)),
            parse(("demo", "1.0", 1, "add source file demo-1.0.tar.gz", 2)),
            parse(("demo", None, 1, "project quarantined", 3)),
            parse(("demo", None, 1, "remove project", 4)),
        ]
    )["demo"]
    assert (change.exists, change.wiped, change.quarantined, change.releases) == (False, True, None, {})
    assert not change.wants_details


def test_the_fast_page_reader_agrees_with_the_general_decoder() -> None:
    page = [
        ("Demo & <Co>", "1.0", 1_700_000_000, "add source file demo-1.0.tar.gz", 7),
        ("demo", None, -5, "remove project", 8),
        ("ü-pkg", "", 3, "add py3 file x'y\".whl", 9),
    ]
    body = xmlrpc.client.dumps((page,), methodresponse=True, allow_none=True).encode()
    bare = body.replace(b"<string>demo</string>", b"demo")  # XML-RPC's untyped string

    assert changelog_entries(body) == page
    assert changelog_entries(bare) == page
    assert [tuple(entry) for entry in _decode(body)[0]] == page


@pytest.mark.parametrize(
    "body",
    [
        xmlrpc.client.dumps(xmlrpc.client.Fault(-32500, "too many requests"), methodresponse=True).encode(),
        xmlrpc.client.dumps(([("a", "1", 1, "create", 1, "extra")],), methodresponse=True).encode(),
        xmlrpc.client.dumps(([("a", "1", 1, "create", 1)],), methodresponse=True).encode()[:-40],
        xmlrpc.client.dumps(([("a", "1", 1.5, "create", 1)],), methodresponse=True).encode(),
        xmlrpc.client.dumps(([("a", "1", 1, "create", 1)],), methodresponse=True, encoding="latin-1").encode(
            "latin-1"
        ),
    ],
    ids=["fault", "six-values", "truncated", "float", "latin-1"],
)
def test_the_fast_page_reader_leaves_anything_unusual_to_the_general_decoder(body: bytes) -> None:
    assert changelog_entries(body) is None
