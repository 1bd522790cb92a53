"""Access-log lines as nginx and Apache write them: which are wheel downloads, on which UTC day."""

from __future__ import annotations

from datetime import date

import pytest

from wheelmill.downloads.parse import Download, MalformedLine, parse_line

# What pip 24 on a Raspberry Pi and uv 0.4 on Ubuntu send (pip sorts its JSON keys, uv does not).
PIP_24 = (
    'pip/24.0 {"ci":null,"cpu":"armv7l","distro":{"id":"bookworm","libc":{"lib":"glibc","version":"2.36"},'
    '"name":"Raspbian GNU/Linux","version":"12"},"implementation":{"name":"CPython","version":"3.11.2"},'
    '"installer":{"name":"pip","version":"24.0"},"openssl_version":"OpenSSL 3.0.11 19 Sep 2023",'
    '"python":"3.11.2","setuptools_version":"66.1.1","system":{"name":"Linux","release":"6.1.0-rpi7-rpi-v7"}}'
)
UV_04 = (
    'uv/0.4.18 {"installer":{"name":"uv","version":"0.4.18"},"python":"3.12.6","implementation":'
    '{"name":"CPython","version":"3.12.6"},"distro":{"name":"Ubuntu","version":"24.04","id":"noble",'
    '"libc":{"lib":"glibc","version":"2.39"}},"system":{"name":"Linux","release":"6.8.0-1013-raspi"},'
    '"cpu":"aarch64","openssl_version":null,"setuptools_version":null,"rustc_version":null,"ci":null}'
)
WHEEL = "numpy-2.1.0-cp311-cp311-linux_armv7l.whl"


def nginx_line(
    agent: str = PIP_24,
    path: str = f"/files/numpy/{WHEEL}",
    *,
    status: int = 200,
    method: str = "GET",
    when: str = "14/Oct/2024:13:55:36 +0000",
) -> str:
    """A line of nginx's ``combined`` format, which writes a quote inside a field as ``\\x22``."""
    quoted = agent.replace("\\", "\\x5C").replace('"', "\\x22")
    return f'192.0.2.7 - - [{when}] "{method} {path} HTTP/1.1" {status} 14123001 "-" "{quoted}"\n'


def apache_line(agent: str, path: str = f"/files/numpy/{WHEEL}") -> str:
    """A line of Apache's ``combined`` format, which writes a quote inside a field as ``\\"``."""
    quoted = agent.replace("\\", "\\\\").replace('"', '\\"')
    return f'2001:db8::7 - - [14/Oct/2024:15:55:36 +0200] "GET {path} HTTP/1.1" 200 14123001 "-" "{quoted}"\n'


def test_an_nginx_line_gives_the_wheel_its_project_and_the_agent_as_pip_sent_it() -> None:
    assert parse_line(nginx_line()) == Download(date(2024, 10, 14), WHEEL, "numpy", PIP_24)


def test_an_apache_line_with_a_uv_agent_and_a_timezone() -> None:
    assert parse_line(apache_line(UV_04)) == Download(date(2024, 10, 14), WHEEL, "numpy", UV_04)


@pytest.mark.parametrize(
    ("when", "day"),
    [
        ("01/Mar/2024:00:30:00 +0100", date(2024, 2, 29)),  # the UTC day, across a leap day
        ("31/Dec/2024:20:00:00 -0530", date(2025, 1, 1)),
        ("31/Dec/2024:23:59:59 +0000", date(2024, 12, 31)),
    ],
)
def test_downloads_are_counted_on_their_utc_day(when: str, day: date) -> None:
    hit = parse_line(nginx_line(when=when))
    assert hit is not None and hit.day == day


def test_a_quoted_local_version_a_query_and_a_path_prefix_still_name_the_wheel() -> None:
    hit = parse_line(nginx_line(path="/pi/files/demo-pkg/demo_pkg-1.0%2Brpi1-py3-none-any.whl?x=1"))
    assert hit is not None
    assert (hit.filename, hit.package) == ("demo_pkg-1.0+rpi1-py3-none-any.whl", "demo-pkg")


def test_extended_formats_with_fields_after_the_agent_parse() -> None:
    line = nginx_line().rstrip("\n") + ' "198.51.100.4" rt=0.042\n'
    assert parse_line(line) == Download(date(2024, 10, 14), WHEEL, "numpy", PIP_24)


@pytest.mark.parametrize(
    "line",
    [
        nginx_line(status=206),  # a range read of metadata, not a download
        nginx_line(status=304),
        nginx_line(status=404),
        nginx_line(method="HEAD"),
        nginx_line(path=f"/files/numpy/{WHEEL}.metadata"),
        nginx_line(path="/simple/numpy/"),
        nginx_line(path="/files/numpy/not-a-wheel.whl"),
        nginx_line(path=f"/elsewhere/numpy/{WHEEL}"),
        '198.51.100.9 - - [14/Oct/2024:13:55:36 +0000] "\\x16\\x03\\x01\\x00\\xA5" 400 157 "-" "-"\n',
    ],
)
def test_other_requests_are_not_downloads(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\n",
        "not a log line at all\n",
        nginx_line()[:60],  # cut off mid-write
        nginx_line(when="14/Okt/2024:13:55:36 +0000"),
        nginx_line(when="30/Feb/2024:13:55:36 +0000"),
        nginx_line(when="2024-10-14T13:55:36Z"),
    ],
)
def test_malformed_lines_are_refused_with_a_typed_error(line: str) -> None:
    with pytest.raises(MalformedLine):
        parse_line(line)
