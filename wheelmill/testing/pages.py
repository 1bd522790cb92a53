"""The stand-in's answers: the simple index (PEP 503/691/700) and PyPI's JSON API, from one context each."""

from __future__ import annotations

from typing import Any

import jinja2
from packaging.utils import canonicalize_name

from wheelmill.testing.model import Project, Release, UpstreamFile

API_VERSION = "1.1"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"

_templates = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_templates.filters["canonicalize_name"] = canonicalize_name

_INDEX_HTML = _templates.from_string("""\
<!DOCTYPE html>
<html lang="en">
  <head>
    <meta name="pypi:repository-version" content="{{ meta['api-version'] }}">
    <title>Simple index</title>
  </head>
  <body>
{% for project in projects %}    <a href="/simple/{{ project.name | canonicalize_name }}/">
{{- project.name }}</a>
{% endfor %}  </body>
</html>
""")

_DETAIL_HTML = _templates.from_string("""\
<!DOCTYPE html>
<html lang="en">
  <head>
    <meta name="pypi:repository-version" content="{{ meta['api-version'] }}">
    <title>Links for {{ name }}</title>
  </head>
  <body>
    <h1>Links for {{ name }}</h1>
{% for file in files %}    <a href="{{ file.url }}#sha256={{ file.hashes.sha256 }}"
{%- if file['requires-python'] %} data-requires-python="{{ file['requires-python'] }}"{% endif %}
{%- if file.yanked %} data-yanked="{{ file.yanked if file.yanked is string else '' }}"{% endif %}
{%- if file['core-metadata'] %} data-dist-info-metadata="sha256={{ file['core-metadata'].sha256 }}" \
data-core-metadata="sha256={{ file['core-metadata'].sha256 }}"{% endif %}>{{ file.filename }}</a><br />
{% endfor %}  </body>
</html>
<!--SERIAL {{ meta['_last-serial'] }}-->
""")


def simple_index(projects: list[Project], serial: int) -> dict[str, Any]:
    """The PEP 691 index context: every visible project, by canonical name."""
    shown = sorted((p for p in projects if not p.quarantined), key=lambda p: p.canonical_name)
    return {
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "projects": [{"name": project.name, "_last-serial": project.last_serial} for project in shown],
    }


def simple_detail(project: Project, base_url: str) -> dict[str, Any]:
    """The PEP 691 project context; ``versions`` lists versions with files, as PyPI's does."""
    releases = [release for release in project.visible_releases() if release.files]
    files = [(release, file) for release in releases for file in release.sorted_files()]
    return {
        "meta": {"api-version": API_VERSION, "_last-serial": project.last_serial},
        "name": project.canonical_name,
        "versions": [release.version for release in releases],
        "files": [_simple_file(release, file, base_url) for release, file in files],
    }


def render_index_html(context: dict[str, Any]) -> str:
    return _INDEX_HTML.render(context)


def render_detail_html(context: dict[str, Any]) -> str:
    return _DETAIL_HTML.render(context)


def _simple_file(release: Release, file: UpstreamFile, base_url: str) -> dict[str, Any]:
    core_metadata = {"sha256": file.core_metadata_sha256} if file.core_metadata_sha256 else False
    return {
        "filename": file.filename,
        "url": base_url + file.path,
        "hashes": {"sha256": file.sha256},
        "requires-python": release.metadata.requires_python,
        "size": file.size,
        "upload-time": file.upload_time.isoformat() + "Z",
        "yanked": (release.yanked_reason or True) if release.yanked else False,
        "data-dist-info-metadata": core_metadata,
        "core-metadata": core_metadata,
    }


def json_api(project: Project, release: Release, base_url: str, *, with_releases: bool) -> dict[str, Any]:
    """PyPI's ``/pypi/NAME/json`` (``with_releases``) or ``/pypi/NAME/VERSION/json`` document."""
    meta = release.metadata
    document: dict[str, Any] = {
        "info": {
            "name": project.name,
            "version": release.version,
            "summary": meta.summary,
            "description": meta.description,
            "description_content_type": "text/plain",
            "requires_python": meta.requires_python,
            "requires_dist": list(meta.dependencies) or None,
            "yanked": release.yanked,
            "yanked_reason": release.yanked_reason or None,
            "classifiers": [],
            "package_url": f"{base_url}/project/{project.name}/",
            "project_url": f"{base_url}/project/{project.name}/",
            "release_url": f"{base_url}/project/{project.name}/{release.version}/",
        },
        "last_serial": project.last_serial,
        "urls": [_json_file(release, file, base_url) for file in release.sorted_files()],
        "vulnerabilities": [],
    }
    if with_releases:
        document["releases"] = {
            each.version: [_json_file(each, file, base_url) for file in each.sorted_files()]
            for each in project.visible_releases()
        }
    return document


def _json_file(release: Release, file: UpstreamFile, base_url: str) -> dict[str, Any]:
    return {
        "filename": file.filename,
        "url": base_url + file.path,
        "digests": {"blake2b_256": file.blake2b_256, "md5": file.md5, "sha256": file.sha256},
        "md5_digest": file.md5,
        "size": file.size,
        "packagetype": file.packagetype,
        "python_version": file.python_version,
        "requires_python": release.metadata.requires_python,
        "upload_time": file.upload_time.strftime("%Y-%m-%dT%H:%M:%S"),
        "upload_time_iso_8601": file.upload_time.isoformat() + "Z",
        "yanked": release.yanked,
        "yanked_reason": release.yanked_reason or None,
        "comment_text": "",
        "has_sig": False,
        "downloads": -1,
    }
