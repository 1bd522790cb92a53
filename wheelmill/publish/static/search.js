// Client-side package search over /search/index.json. Results are built with textContent,
// never innerHTML: names and summaries come from upstream and are data.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const input = document.getElementById("search-input");
  const results = document.getElementById("search-results");
  const status = document.getElementById("search-status");
  const LIMIT = 100;
  let projects = null;

  function canonical(name) {
    return name.toLowerCase().replace(/[-_.]+/g, "-");
  }

  async function load() {
    if (projects === null) {
      status.textContent = "Loading the package list…";
      const response = await fetch(input.dataset.index);
      if (!response.ok) {
        throw new Error("search index: HTTP " + response.status);
      }
      const index = await response.json();
      const column = Object.fromEntries(index.columns.map((name, i) => [name, i]));
      projects = index.projects.map((row) => ({
        name: row[column.name],
        summary: row[column.summary],
        versions: row[column.versions],
        wheels: row[column.wheels],
      }));
    }
    return projects;
  }

  // Exact name first, then names starting with the query, then names containing it.
  function rank(query, name) {
    if (name === query) return 0;
    if (name.startsWith(query)) return 1;
    return name.includes(query) ? 2 : -1;
  }

  function show(query, found) {
    results.replaceChildren();
    for (const project of found.slice(0, LIMIT)) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = input.dataset.root + "project/" + encodeURIComponent(project.name) + "/";
      link.textContent = project.name;
      item.append(link);
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = (project.summary ? project.summary + " · " : "") +
        project.versions + " versions · " + project.wheels + " wheels";
      item.append(meta);
      results.append(item);
    }
    const more = found.length > LIMIT ? " (showing " + LIMIT + ")" : "";
    const count = found.length === 1 ? "1 package matches" : found.length + " packages match";
    status.textContent = query ? count + more : "";
  }

  async function search() {
    const query = canonical(input.value.trim());
    if (!query) {
      show("", []);
      return;
    }
    const all = await load();
    const found = [];
    for (const project of all) {
      const score = rank(query, project.name);
      if (score >= 0) found.push([score, project]);
    }
    found.sort((a, b) => a[0] - b[0] || a[1].name.localeCompare(b[1].name));
    if (canonical(input.value.trim()) === query) {
      show(query, found.map((pair) => pair[1]));
    }
  }

  input.addEventListener("input", () => {
    search().catch((error) => {
      status.textContent = "Search is unavailable: " + error.message;
    });
  });
  input.form.addEventListener("submit", (event) => event.preventDefault());

  const initial = new URLSearchParams(window.location.search).get("q");
  if (initial) {
    input.value = initial;
    input.dispatchEvent(new Event("input"));
  }
})();
