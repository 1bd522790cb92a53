"""Why a build failed: a small fixed taxonomy, decided from the build log.

The reason is stored per build, counted on the statistics page and drives remedies: a missing header
names the Debian package to install, an undeclared build dependency the PyPI project to add to the
build environment. Rules run from the most specific to the least, and the first that matches wins,
because one failure leaves several traces: an out-of-memory compiler also prints a compiler error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from packaging.specifiers import InvalidSpecifier, SpecifierSet


class FailureReason(StrEnum):
    NO_SOURCE = "no_source"
    PYTHON2_ONLY = "python2_only"
    MISSING_SYSTEM_LIBRARY = "missing_system_library"
    UNDECLARED_BUILD_DEPENDENCY = "undeclared_build_dependency"
    NEEDS_NETWORK = "needs_network"
    DOWNLOAD_FAILED = "download_failed"  # transient: the builder could not fetch what the build needs
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    COMPILER_ERROR = "compiler_error"
    UNSUPPORTED_PLATFORM = "unsupported_platform"
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Diagnosis:
    reason: FailureReason
    detail: str | None = None  # what the log blames: a header, library, module, option or error line
    debian_package: str | None = None  # installs the missing header, library or tool, e.g. libffi-dev
    python_module: str | None = None  # the PyPI project providing a missing build-time module, e.g. PyYAML

    def shown_detail(self) -> str | None:
        """The detail a build records and its log page shows: with the apt command for a missing
        library, since the build record has no place for the package and the user has to run it."""
        if self.debian_package is None:
            return self.detail
        return f"{self.detail} (sudo apt install {self.debian_package})"


# What a log names when something is missing (header, directory of headers, -l option, pkg-config
# module, tool) -> the Debian package that provides it.
_PROVIDERS = {
    "libffi-dev": ("ffi.h", "-lffi", "libffi"),
    "python3-dev": ("Python.h", "-lpython3"),
    "libssl-dev": ("openssl/", "-lssl", "-lcrypto", "openssl"),
    "zlib1g-dev": ("zlib.h", "-lz", "zlib"),
    "libxml2-dev": ("libxml/", "-lxml2", "xml2-config", "libxml-2.0"),
    "libxslt1-dev": ("libxslt/", "libexslt/", "-lxslt", "xslt-config", "libxslt"),
    "libjpeg-dev": ("jpeglib.h", "-ljpeg", "libjpeg"),
    "libpng-dev": ("png.h", "-lpng", "libpng"),
    "libtiff-dev": ("tiffio.h", "-ltiff", "libtiff-4"),
    "libfreetype-dev": ("ft2build.h", "freetype/", "-lfreetype", "freetype2"),
    "libpq-dev": ("pg_config", "libpq-fe.h", "-lpq", "libpq"),
    "default-libmysqlclient-dev": ("mysql_config", "mysql.h", "mysql/", "-lmysqlclient", "mysqlclient"),
    "libsqlite3-dev": ("sqlite3.h", "-lsqlite3", "sqlite3"),
    "libbz2-dev": ("bzlib.h", "-lbz2"),
    "liblzma-dev": ("lzma.h", "-llzma", "liblzma"),
    "libzstd-dev": ("zstd.h", "-lzstd", "libzstd"),
    "libyaml-dev": ("yaml.h", "-lyaml", "yaml-0.1"),
    "libgmp-dev": ("gmp.h", "-lgmp"),
    "libcurl4-openssl-dev": ("curl/", "-lcurl", "curl-config", "libcurl"),
    "libkrb5-dev": ("krb5.h", "gssapi/", "krb5-config"),
    "libldap-dev": ("ldap.h", "lber.h", "-lldap"),
    "libsasl2-dev": ("sasl/",),
    "libcairo2-dev": ("cairo.h", "cairo/", "-lcairo", "cairo"),
    "libhdf5-dev": ("hdf5.h", "-lhdf5", "hdf5"),
    "libgeos-dev": ("geos_c.h", "-lgeos_c"),
    "portaudio19-dev": ("portaudio.h", "-lportaudio", "portaudio-2.0"),
    "libsndfile1-dev": ("sndfile.h", "-lsndfile", "sndfile"),
    "libglib2.0-dev": ("glib.h", "glib-2.0"),
    "libdbus-1-dev": ("dbus/", "dbus-1"),
    "libsystemd-dev": ("systemd/", "-lsystemd", "libsystemd"),
    "libusb-1.0-0-dev": ("libusb-1.0/", "-lusb-1.0", "libusb-1.0"),
    "libopenblas-dev": ("cblas.h", "-lopenblas", "-lblas", "openblas"),
    "uuid-dev": ("uuid/", "-luuid", "uuid"),
    "libreadline-dev": ("readline/", "-lreadline"),
    "libncurses-dev": ("ncurses.h", "curses.h", "-lncurses", "-lncursesw"),
    "libexpat1-dev": ("expat.h", "-lexpat", "expat"),
    "pkg-config": ("pkg-config",),
    "cmake": ("cmake",),
    "swig": ("swig",),
    "gfortran": ("gfortran",),
    "cargo": ("cargo", "Rust compiler"),
}
_DEBIAN_PACKAGES = {need: package for package, needs in _PROVIDERS.items() for need in needs}

# Import names whose PyPI project is spelled differently; any other module is its own project's name.
_PYPI_NAMES = {
    "yaml": "PyYAML",
    "cv2": "opencv-python",
    "skbuild": "scikit-build",
    "sklearn": "scikit-learn",
    "PIL": "Pillow",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "attr": "attrs",
    "jwt": "PyJWT",
    "serial": "pyserial",
    "usb": "pyusb",
    "git": "GitPython",
    "gi": "PyGObject",
    "wx": "wxPython",
    "MySQLdb": "mysqlclient",
    "mesonpy": "meson-python",
    "distutils": "setuptools",  # gone from the standard library in 3.12; setuptools provides it
}

_M = re.MULTILINE
# uv checks the wheel it built against the sdist's name and version, and fails the build (the farm's
# wording); pip's is for a pip run inside a build. Groups: what differs (uv only), expected, built.
_VERSION_MISMATCH = (
    re.compile(r"The source distribution declares (name|version) ([^\s,]+), but the wheel declares \1 (\S+)"),
    re.compile(r"inconsistent (version): (?:expected|filename has) '([^']+)', but metadata has '([^']+)'"),
)
_OUT_OF_MEMORY = re.compile(
    r"^\s*MemoryError\b.*$|^.*(?:virtual memory exhausted|out of memory allocating"
    r"|Killed signal terminated program|std::bad_alloc|Cannot allocate memory).*$",
    _M,
)
_PYTHON2 = (
    re.compile(
        r"SyntaxError: (?:Missing parentheses in call to '(?:print|exec)'|multiple exception types must be"
        r" parenthesized|leading zeros in decimal integer literals).*"
    ),
    re.compile(
        r"NameError: name '(?:unicode|basestring|execfile|raw_input|xrange|long|unichr|file|cmp)'"
        r" is not defined"
    ),
    re.compile(
        r"No module named '?(?:urllib2|urlparse|ConfigParser|StringIO|cStringIO|cPickle|__builtin__|commands"
        r"|httplib|HTMLParser|Queue|sets|exceptions|md5|sha|compiler|Tkinter|cookielib|thread)'?$",
        _M,
    ),
)
_REQUIRES_PYTHON = re.compile(r"requires a different Python: \S+ not in '([^']*)'")
_PLATFORM_HEADER = re.compile(
    r"fatal error: ['\u2018]?((?:[a-z]mm|x86|cpuid|ia32)intrin\.h|cpuid\.h|sys/io\.h|windows\.h|winsock2?\.h"
    r"|io\.h|conio\.h|mach/[\w/]+\.h|CoreFoundation/[\w/]+\.h)['\u2019]?(?::| file not found)",
    re.IGNORECASE,
)
_PLATFORM = (
    _PLATFORM_HEADER,
    re.compile(r"unrecognized command[- ]line option ['\u2018\"]?(-m[\w.=-]+)"),
    re.compile(r"unknown argument: '(-m[\w.=-]+)'"),
    re.compile(
        r"bad value [\u2018'][^\u2019']+[\u2019'] for [\u2018'](-m(?:arch|tune|cpu)=)[\u2019'] switch"
    ),
    re.compile(r"No module named '?(_winreg|winreg|msvcrt|win32api|win32con|pywintypes|_winapi)'?$", _M),
    re.compile(
        r"^.*(?:only (?:supports?|supported on|works on|runs on|available (?:on|for))"
        r" (?:Windows|win32|mac ?OS|OS X|darwin|x86|amd64|Intel)\b"
        r"|unsupported (?:platform|architecture|operating system)\b"
        r"|(?:platform|architecture) \S* ?is not supported).*$",
        _M | re.IGNORECASE,
    ),
)
_MISSING = (
    re.compile(r"fatal error: ['\u2018]?([\w./+-]+?)['\u2019]?: No such file or directory"),
    re.compile(r"fatal error: '([^']+)' file not found"),
    re.compile(r"cannot find (-l[\w+.-]*\w)"),
    re.compile(r"(lib[\w+-]+\.so[\d.]*): cannot open shared object file"),
    re.compile(
        r"Package '?([\w.+-]+?)'?,? (?:was not found in the pkg-config search path|required by .* not found)"
    ),
    re.compile(r'Dependency "([\w.+-]+)" not found'),
    re.compile(
        r"\b(pg_config|mysql_config|[\w]+-config|pkg-config|cmake|swig|gfortran)(?: executable)?:?"
        r" (?:command )?not found"
    ),
    re.compile(r"No such file or directory: '(pg_config|mysql_config|pkg-config|cmake|swig|gfortran)'"),
    re.compile(r"can't find (Rust compiler)"),
)
# Headers that a Python project ships for the C code built against it: missing, the project is an
# undeclared build dependency (the remedy adds it), not a Debian package.
_PYTHON_PROJECT_HEADERS = {"numpy/": "numpy", "pybind11/": "pybind11"}
# Headers that Python 3.11 moved into Include/cpython/ (eval.h it removed): C code that includes them
# by name predates the Python it builds for, which no package installs away.
_MOVED_PYTHON_HEADERS = frozenset(
    (
        "cellobject.h",
        "classobject.h",
        "code.h",
        "context.h",
        "eval.h",
        "funcobject.h",
        "genobject.h",
        "longintrepr.h",
    )
)
_UNDECLARED = (
    re.compile(r"^\s*(?:ModuleNotFoundError|ImportError): No module named '?(\w+)'?\s*$", _M),
    # setup_requires that easy_install could not fetch: the build environment lacks it.
    re.compile(r"Could not find suitable distribution for Requirement\.parse\('([\w.-]+)"),
)
# setuptools APIs that old setup.py files use and later releases removed: (sign, detail, the pin that
# brings the API back). The remedy retries with that pin in the build environment.
_REMOVED_SETUPTOOLS_API = (
    (re.compile(r"cannot import name 'Feature' from 'setuptools'"), "setuptools.Feature", "setuptools<46"),
    (re.compile(r"\buse_2to3 is invalid"), "use_2to3", "setuptools<58"),
)
_NETWORK_SIGNS = (
    "Temporary failure in name resolution",
    "Name or service not known",
    "Could not resolve host",
    "getaddrinfo failed",
    "Connection refused",
    "Network is unreachable",
    "No route to host",
    "Failed to establish a new connection",
    "Connection timed out",
    "urlopen error",
    "fatal: unable to access '",
    "Tunnel connection failed",
    "ProxyError",
    "Download error on http",
    "transport 'https' not allowed",  # git under GIT_ALLOW_PROTOCOL=file, as every farm build runs
    "transport 'http' not allowed",
    "transport 'ssh' not allowed",
)
_NETWORK = re.compile(f"^.*(?:{'|'.join(map(re.escape, _NETWORK_SIGNS))}).*$", _M)
# uv, after its own retries, could not reach the index for the build's requirements: the index or
# the builder's network failed, not the project. Its cause chain names a network error too, so
# this is told apart first; the build is worth another try later.
_INDEX_UNREACHABLE = re.compile(r"^\s*cause: Failed to fetch: `?([^`\s]+)`?\s*$", _M)
_NO_SOURCE = (
    # uv on an sdist that is not one: an archive it cannot unpack, or nothing in it to build.
    re.compile(
        r"cause: (Invalid (?:tar|zip) file|(?:Failed to extract archive|Unsupported archive format):.*)"
    ),
    re.compile(r"(does not appear to be a Python project, as .*)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"HTTP error 404 while getting (\S+)"),
    re.compile(r"(?i)no source distribution.*"),
)
_COMPILER = (
    re.compile(r"^\s*(\S+:\d+(?::\d+)?: (?:fatal )?error: .*)$", _M),
    re.compile(r"^\s*(error\[E\d+\]: .*)$", _M),
    re.compile(r"(Cython\.Compiler\.Errors\.CompileError: .*)"),
    re.compile(
        r"error: command '(?:[^']*/)?((?:[\w.]+-)*(?:gcc|g\+\+|cc|c\+\+|clang|clang\+\+|gfortran)"
        r"(?:-[\d.]+)?)' failed"
    ),
)
_KILLED = {"timeout": FailureReason.TIMEOUT, "memory": FailureReason.OUT_OF_MEMORY}
_DETAIL_MAX = 300


def classify(log: str, killed_reason: str | None = None) -> Diagnosis:
    """Why a build failed. A builder that killed the build says why ("timeout", "memory"), and that wins."""
    if killed_reason in _KILLED:
        return Diagnosis(_KILLED[killed_reason])
    for rule in _RULES:
        diagnosis = rule(log)
        if diagnosis is not None:
            return diagnosis
    return Diagnosis(FailureReason.UNKNOWN)


def _first(patterns: tuple[re.Pattern[str], ...], log: str) -> re.Match[str] | None:
    return next((match for pattern in patterns if (match := pattern.search(log))), None)


def _detail(match: re.Match[str]) -> str:
    """The part of the match that names the culprit: its first group, else the whole matched line."""
    text = match[1] if match.re.groups else match[0]
    return text.strip()[:_DETAIL_MAX]


def _found(reason: FailureReason, match: re.Match[str] | None) -> Diagnosis | None:
    return None if match is None else Diagnosis(reason, _detail(match))


def _version_mismatch(log: str) -> Diagnosis | None:
    match = _first(_VERSION_MISMATCH, log)
    if match is None:
        return None
    what = "" if match[1] == "version" else f"{match[1]} "
    return Diagnosis(FailureReason.VERSION_MISMATCH, f"expected {what}{match[2]!r}, built {match[3]!r}")


def _out_of_memory(log: str) -> Diagnosis | None:
    return _found(FailureReason.OUT_OF_MEMORY, _OUT_OF_MEMORY.search(log))


def _python2_only(log: str) -> Diagnosis | None:
    if diagnosis := _found(FailureReason.PYTHON2_ONLY, _first(_PYTHON2, log)):
        return diagnosis
    match = _REQUIRES_PYTHON.search(log)
    if match and _excludes_python3(match[1]):
        return Diagnosis(FailureReason.PYTHON2_ONLY, f"Requires-Python {match[1]!r}")
    return None


def _excludes_python3(requires_python: str) -> bool:
    try:
        specifiers = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return False
    return not any(specifiers.contains(f"3.{minor}", prereleases=True) for minor in range(30))


def _unsupported_platform(log: str) -> Diagnosis | None:
    if diagnosis := _found(FailureReason.UNSUPPORTED_PLATFORM, _first(_PLATFORM, log)):
        return diagnosis
    # A Requires-Python that excludes the target's Python but not all of Python 3.
    match = _REQUIRES_PYTHON.search(log)
    if match is None:
        return None
    return Diagnosis(FailureReason.UNSUPPORTED_PLATFORM, f"Requires-Python {match[1]!r}")


def _missing_system_library(log: str) -> Diagnosis | None:
    match = _first(_MISSING, log)
    if match is None:
        return None
    need = _detail(match)
    if need in _MOVED_PYTHON_HEADERS:
        return Diagnosis(
            FailureReason.COMPILER_ERROR, f"{need}, a Python header gone from Include/ since 3.11"
        )
    if project := _PYTHON_PROJECT_HEADERS.get(need.partition("/")[0] + "/"):
        return Diagnosis(FailureReason.UNDECLARED_BUILD_DEPENDENCY, need, python_module=project)
    return Diagnosis(FailureReason.MISSING_SYSTEM_LIBRARY, need, debian_package=_debian_package(need))


def _debian_package(need: str) -> str | None:
    if soname := re.fullmatch(r"lib(.+?)\.so[\d.]*", need):
        need = f"-l{soname[1]}"
    return _DEBIAN_PACKAGES.get(need) or _DEBIAN_PACKAGES.get(need.partition("/")[0] + "/")


def _undeclared_build_dependency(log: str) -> Diagnosis | None:
    match = _first(_UNDECLARED, log)
    if match is None:
        return None
    module = _detail(match)
    return Diagnosis(
        FailureReason.UNDECLARED_BUILD_DEPENDENCY, module, python_module=_PYPI_NAMES.get(module, module)
    )


def _removed_setuptools_api(log: str) -> Diagnosis | None:
    """An API gone from today's setuptools: the build needs an older one, which it did not declare."""
    for sign, api, pin in _REMOVED_SETUPTOOLS_API:
        if sign.search(log):
            return Diagnosis(
                FailureReason.UNDECLARED_BUILD_DEPENDENCY,
                f"{api}, removed from setuptools",
                python_module=pin,
            )
    return None


def _index_unreachable(log: str) -> Diagnosis | None:
    found = _INDEX_UNREACHABLE.search(log)
    return Diagnosis(FailureReason.DOWNLOAD_FAILED, f"could not fetch {found[1]}") if found else None


def _needs_network(log: str) -> Diagnosis | None:
    return _found(FailureReason.NEEDS_NETWORK, _NETWORK.search(log))


def _no_source(log: str) -> Diagnosis | None:
    return _found(FailureReason.NO_SOURCE, _first(_NO_SOURCE, log))


def _compiler_error(log: str) -> Diagnosis | None:
    return _found(FailureReason.COMPILER_ERROR, _first(_COMPILER, log))


# Most specific first: a Python 2 setup.py also fails to import urllib2, an unsupported platform also
# misses immintrin.h, a failed download also finds no version, a missing header is also a compiler error.
_RULES: tuple[Callable[[str], Diagnosis | None], ...] = (
    _version_mismatch,
    _out_of_memory,
    _python2_only,
    _unsupported_platform,
    _missing_system_library,
    _removed_setuptools_api,
    _undeclared_build_dependency,
    _index_unreachable,
    _needs_network,
    _no_source,
    _compiler_error,
)
