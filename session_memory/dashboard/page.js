// Draws the charts over the tables: decodes the page's data (gzip + base64 JSON), gives each
// Vega-Lite spec its rows, and shows a sweep's report when one is clicked. Nothing here
// draws: Vega-Lite compiles each spec and Vega renders it. Nothing is fetched.
"use strict";
(function () {
  const dashboard = { views: {}, ready: null, showReport: null };
  window.dashboard = dashboard;

  async function decode() {
    const el = document.getElementById("dashboard-data");
    const bytes = Uint8Array.from(atob(el.textContent.trim()), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  // The sweeps come as columns (one array a field); Vega wants one object a row.
  function rows(columns) {
    const names = Object.keys(columns);
    const n = names.length ? columns[names[0]].length : 0;
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      const row = {};
      for (const name of names) row[name] = columns[name][i];
      out[i] = row;
    }
    return out;
  }

  function humanBytes(n) {
    if (n === null || n === undefined) return "–";
    let value = n;
    for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
      if (Math.abs(value) < 1024 || unit === "TiB") {
        return unit === "B" ? `${value} B` : `${value.toFixed(1)} ${unit}`;
      }
      value /= 1024;
    }
    return `${n} B`;
  }

  function line(parent, text, cls) {
    const div = document.createElement("div");
    if (cls) div.className = cls;
    div.textContent = text;
    parent.appendChild(div);
    return div;
  }

  const PASS_LABELS = { backstop: "backstop", budget: "budget", overflow: "DATA LOSS" };

  function makeShowReport(data, sweepsById) {
    return function showReport(id) {
      const panel = document.getElementById("report-detail");
      const body = document.getElementById("report-detail-body");
      document.getElementById("report-detail-id").textContent = id;
      body.replaceChildren();
      const sweep = sweepsById.get(id);
      if (sweep) {
        line(body, `${new Date(sweep.t * 1000).toLocaleString()}: Tier 1 ${humanBytes(sweep.before)}`
          + ` → ${humanBytes(sweep.after)}; soft cap ${humanBytes(sweep.soft)}, effective cap `
          + `${humanBytes(sweep.effective)}, hard cap ${humanBytes(sweep.hard)}`);
        line(body, `freed: backstop ${humanBytes(sweep.freed_backstop)} (${sweep.n_backstop}), `
          + `budget ${humanBytes(sweep.freed_budget)} (${sweep.n_budget}), data loss `
          + `${humanBytes(sweep.freed_overflow)} (${sweep.n_overflow})`,
          sweep.n_overflow ? "loss" : "");
      }
      const detail = data.details[id];
      if (!detail) {
        line(body, `Its sessions are not in this page (it keeps the newest reports' lists); `
          + `run: session-memory reports show ${id}`, "note");
      } else {
        const list = document.createElement("ul");
        for (const [sid, pass, bytes] of detail.evictions) {
          const li = document.createElement("li");
          li.textContent = `${PASS_LABELS[pass] || "unattributed"}: ${sid} (${humanBytes(bytes)})`;
          if (pass === "overflow") li.className = "loss";
          list.appendChild(li);
        }
        for (const sid of detail.analyzed) {
          const li = document.createElement("li");
          li.textContent = `analyzed at once: ${sid}`;
          list.appendChild(li);
        }
        body.appendChild(list);
        for (const w of detail.warnings) line(body, `warning: ${w}`, "warning");
        for (const e of detail.errors) line(body, `error: ${e}`, "error");
        if (!detail.evictions.length && !detail.analyzed.length) line(body, "nothing evicted");
      }
      panel.hidden = false;
      panel.scrollIntoView({ block: "nearest" });
      const row = document.getElementById(`report-${id}`);
      document.querySelectorAll("tr.picked").forEach((r) => r.classList.remove("picked"));
      if (row) row.classList.add("picked");
    };
  }

  async function draw(el, spec, datasets, showReport) {
    // Only the datasets this chart names: Vega-Lite copies each one it is given.
    const text = JSON.stringify(spec);
    const used = {};
    for (const name of Object.keys(datasets)) {
      if (text.includes(`"name":"${name}"`)) used[name] = datasets[name];
    }
    const withData = Object.assign({}, spec, { datasets: used });
    const compiled = vegaLite.compile(withData).spec;
    const view = new vega.View(vega.parse(compiled), {
      renderer: "svg", container: el, hover: true,
    });
    view.addEventListener("click", (_event, item) => {
      const datum = item && item.datum;
      // A dot or a bar is one sweep; a line's item is the whole line, so it opens nothing.
      if (item && item.mark.marktype !== "line" && datum && typeof datum.id === "string"
          && datum.n_backstop !== undefined) {
        showReport(datum.id);
      }
    });
    await view.runAsync();
    return view;
  }

  async function main() {
    const data = await decode();
    const sweeps = rows(data.sweeps);
    const datasets = Object.assign({ sweeps: sweeps }, data.datasets);
    const sweepsById = new Map(sweeps.map((s) => [s.id, s]));
    const showReport = makeShowReport(data, sweepsById);
    dashboard.showReport = showReport;
    for (const el of document.querySelectorAll("[data-chart]")) {
      const spec = data.specs[el.dataset.chart];
      if (!spec) {
        el.remove();  // nothing to draw: the table beside it says so
        continue;
      }
      try {
        dashboard.views[el.dataset.chart] = await draw(el, spec, datasets, showReport);
      } catch (err) {
        el.textContent = `This chart could not be drawn: ${err}`;
        console.error(err);
      }
    }
  }

  dashboard.ready = main().catch((err) => {
    console.error(err);
    throw err;
  });
})();
