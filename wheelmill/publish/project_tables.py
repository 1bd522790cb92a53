"""The project page's two long tables (build matrix, files), rendered in Python.

A full publish renders 175,000 project pages, and in Jinja these rows were half of each page's
time: every ``{{ }}`` pays markupsafe's per-value call and an attribute lookup through the
environment. Here each row is one f-string, and every value that came from upstream, a builder
or the database goes through ``html.escape`` (numbers are formatted, never escaped strings).
The template places the result as Markup; the rest of the page stays in Jinja.
"""

from collections.abc import Callable, Iterable, Sequence
from html import escape

from markupsafe import Markup

from wheelmill.publish.model import BuildCell, FarmFile


def matrix_rows(rows: Iterable[tuple[str, Sequence[BuildCell | None]]]) -> Markup:
    """``<tr>`` rows of the version x target matrix; each cell links to its build's log."""
    out: list[str] = []
    for version, cells in rows:
        out.append(f'        <tr><th scope="row">{escape(version)}</th>\n')
        out.extend(_cell(cell) for cell in cells)
        out.append("        </tr>\n")
    return Markup("".join(out))


def _cell(cell: BuildCell | None) -> str:
    if cell is None:
        return '          <td class="status-none">—</td>\n'
    status = escape(cell.status)
    label = status if cell.build_id is None else f'<a href="../../logs/{int(cell.build_id)}/">{status}</a>'
    if not cell.reason:
        return f'          <td class="status status-{status}">{label}</td>\n'
    reason = escape(cell.reason)
    return (
        f'          <td class="status status-{status}" title="{reason}">{label}'
        f'<span class="reason">{reason}</span></td>\n'
    )


def file_rows(files: Iterable[FarmFile], size_text: Callable[[int], str]) -> Markup:
    """``<tr>`` rows of the files table: name, version, target, size (as ``size_text`` words
    it), hash and build."""
    out: list[str] = []
    for file in files:
        notes = ""
        if file.alias_of:
            notes += f' <span class="reason">same file as {escape(file.alias_of)}</span>'
        if file.apt_packages:
            notes += f' <span class="reason">needs {escape(", ".join(file.apt_packages))}</span>'
        build = "—"
        if file.build_id is not None:
            build = f'<a href="../../logs/{int(file.build_id)}/">#{int(file.build_id)}</a>'
        out.append(
            "        <tr>\n"
            f'          <td><a href="../..{escape(file.url)}">{escape(file.filename)}</a>{notes}</td>\n'
            f"          <td>{escape(file.version)}</td>\n"
            f"          <td><code>{escape(file.target)}</code></td>\n"
            f'          <td class="number">{escape(size_text(file.size))}</td>\n'
            f'          <td><code class="hash">{escape(file.sha256)}</code></td>\n'
            f"          <td>{build}</td>\n"
            "        </tr>\n"
        )
    return Markup("".join(out))
