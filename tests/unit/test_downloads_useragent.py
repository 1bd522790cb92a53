"""Reading pip's and uv's JSON user agents: installer, Python, operating system."""

from __future__ import annotations

import sys
import warnings

import pip
import pytest
from pip._internal.network.session import user_agent

from tests.unit.test_downloads_parse import PIP_24, UV_04
from wheelmill.downloads.useragent import Client, parse_user_agent

PIP_MACOS = (
    'pip/24.2 {"ci":null,"cpu":"arm64","distro":{"name":"macOS","version":"14.6.1"},"implementation":'
    '{"name":"CPython","version":"3.12.5"},"installer":{"name":"pip","version":"24.2"},'
    '"openssl_version":"OpenSSL 3.3.1 4 Jun 2024","python":"3.12.5","setuptools_version":"72.1.0",'
    '"system":{"name":"Darwin","release":"23.6.0"}}'
)
# uv 0.5 and later add the subcommand to the installer.
UV_013 = (
    'uv/0.13.9 {"installer":{"name":"uv","version":"0.13.9","subcommand":["pip","install"]},'
    '"python":"3.13.1","implementation":{"name":"CPython","version":"3.13.1"},"distro":null,'
    '"system":{"name":"Windows","release":"11"},"cpu":"AMD64","openssl_version":null,'
    '"setuptools_version":null,"rustc_version":null,"ci":null}'
)


@pytest.mark.parametrize(
    ("agent", "client"),
    [
        (PIP_24, Client("pip", "24.0", "3.11", "Linux", "Raspbian GNU/Linux 12")),
        (UV_04, Client("uv", "0.4.18", "3.12", "Linux", "Ubuntu 24.04")),
        (PIP_MACOS, Client("pip", "24.2", "3.12", "Darwin", "macOS 14.6.1")),
        (UV_013, Client("uv", "0.13.9", "3.13", "Windows", "")),
        ("curl/8.5.0", Client("curl", "8.5.0", "", "", "")),
        ("Mozilla/5.0 (X11; Linux armv7l) Firefox/128.0", Client("mozilla", "5.0", "", "", "")),
        ("-", Client("", "", "", "", "")),
        ("", Client("", "", "", "", "")),
    ],
)
def test_agents(agent: str, client: Client) -> None:
    assert parse_user_agent(agent) == client


def test_the_agent_this_pip_really_sends() -> None:
    with warnings.catch_warnings():  # pip's vendored pkg_resources warns on import
        warnings.simplefilter("ignore", DeprecationWarning)
        agent = user_agent()
    client = parse_user_agent(agent)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (client.installer, client.installer_version, client.python) == ("pip", pip.__version__, python)


@pytest.mark.parametrize(
    "agent",
    [
        'pip/24.0 {"installer":{"name":"pip","ver',  # cut off
        'pip/24.0 {"installer":"pip","python":3.11,"system":["Linux"]}',  # wrong types
        "pip/24.0 [1, 2]",
        "pip/24.0 {" + "[" * 100_000,  # nested past the recursion limit
        'pip/24.0 {"a":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_broken_json_still_names_the_installer(agent: str) -> None:
    assert parse_user_agent(agent)[:2] == ("pip", "24.0")


def test_hostile_values_are_cut_to_the_column_widths() -> None:
    client = parse_user_agent('x/1 {"installer":{"name":"' + "n" * 500 + '"},"python":"' + "3" * 500 + '"}')
    assert (len(client.installer), len(client.python)) == (50, 10)
