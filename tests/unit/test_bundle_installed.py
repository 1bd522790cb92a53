"""Reading what a target has installed: ``pip freeze`` and ``pip inspect`` output, and bad input."""

from __future__ import annotations

import json
import re

import pytest
from packaging.version import Version

from wheelmill.bundle.errors import InvalidInstalled
from wheelmill.bundle.installed import is_present, parse_installed

FREEZE = """\
# a comment pip freeze never writes, but people do
Demo_Pure==1.0
numpy==1.24.2

-e git+https://example.org/repo.git@abc#egg=local_thing
direct @ file:///tmp/direct-1.0-py3-none-any.whl
legacy===2004d
rpi-gpio==0.7.1+rpt1
"""


def inspect_json(*entries: object) -> str:
    return json.dumps({"version": "1", "pip_version": "24.0", "installed": list(entries), "environment": {}})


def test_freeze_gives_canonical_names_and_versions() -> None:
    assert parse_installed(FREEZE) == {
        "demo-pure": Version("1.0"),
        "numpy": Version("1.24.2"),
        "rpi-gpio": Version("0.7.1+rpt1"),
    }


def test_freeze_lines_without_an_index_version_do_not_count() -> None:
    installed = parse_installed(FREEZE)
    assert not {"local-thing", "direct", "legacy"} & set(installed)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("numpy>=1.0", "is not NAME==VERSION, as pip freeze writes"),
        ("numpy==1.*", "is not NAME==VERSION, as pip freeze writes"),
        ("numpy", "is not NAME==VERSION, as pip freeze writes"),
        ("numpy==1.0 ; garbage", "is not NAME==VERSION"),
        ("this is not frozen", "is not NAME==VERSION"),
    ],
)
def test_a_malformed_freeze_line_is_named(line: str, why: str) -> None:
    with pytest.raises(InvalidInstalled) as caught:
        parse_installed(f"six==1.16.0\n{line}\n")
    assert str(caught.value).startswith(f"installed packages, line 2: {line!r}")
    assert why in str(caught.value)


def test_inspect_json_gives_names_and_versions() -> None:
    text = inspect_json(
        {"metadata": {"name": "Demo_Pure", "version": "1.0"}, "installer": "pip"},
        {"metadata": {"name": "idna", "version": "3.7", "requires_dist": []}},
    )
    assert parse_installed(text) == {"demo-pure": Version("1.0"), "idna": Version("3.7")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"installed": [', "installed packages: not valid JSON at line 1 column 16: Expecting value"),
        ('{"version": "1"}', "pip inspect JSON has no 'installed' list"),
        (
            inspect_json({"metadata": {"name": "ok", "version": "1"}}, {"name": "x"}),
            "installed[1]: no metadata",
        ),
        (
            inspect_json({"metadata": {"name": "ok", "version": "one"}}),
            "installed[0]: 'ok' has version 'one'",
        ),
        (inspect_json({"metadata": {"name": "not ok!", "version": "1"}}), "installed[0]: name 'not ok!'"),
    ],
)
def test_malformed_inspect_json_is_named(text: str, message: str) -> None:
    with pytest.raises(InvalidInstalled, match=re.escape(message)):
        parse_installed(text)


def test_a_package_is_present_only_at_the_installed_version() -> None:
    installed = {"idna": Version("3.7")}
    assert is_present("idna", "3.7", installed)
    assert is_present("idna", "3.7.0", installed)  # the same PEP 440 version
    assert not is_present("idna", "3.8", installed)
    assert not is_present("certifi", "2024.2.2", installed)
