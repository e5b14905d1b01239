// The few scripts the pages need: live status, console tail, scalar charts, reported plots.
"use strict";
const UI = (() => {
  const POLL_MS = 3000;

  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin"});
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  function statusBadge(cell, status) {
    const badge = cell.querySelector(".status");
    if (badge && badge.textContent !== status) {
      badge.textContent = status;
      badge.className = `status s-${status}`;
    }
  }

  // tasks table: refresh status, iteration and last update of the rows on screen
  function pollTable() {
    const rows = [...document.querySelectorAll("tr[data-task]")];
    if (!rows.length) return;
    const ids = rows.map((row) => row.dataset.task).join(",");
    const tick = async () => {
      try {
        const data = await getJSON(`/_ui/tasks/status?ids=${encodeURIComponent(ids)}`);
        for (const row of rows) {
          const task = data[row.dataset.task];
          if (!task) continue;
          statusBadge(row.querySelector(".live-status"), task.status);
          row.querySelector(".live-iter").textContent = task.last_iteration ?? "";
        }
      } catch (error) { /* signed out or server gone: keep the page as it is */ }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }

  // task page: reload when the status changes (unless a form is being edited), tail the console
  function taskPage() {
    const head = document.querySelector(".task-head");
    if (!head) return;
    const id = head.dataset.task;
    let editing = false;
    document.querySelectorAll("input, select").forEach((el) => el.addEventListener("input", () => { editing = true; }));
    const tick = async () => {
      try {
        const data = await getJSON(`/_ui/tasks/status?ids=${id}`);
        const task = data[id];
        if (task) {
          statusBadge(document.getElementById("task-status"), task.status);
          if (task.status !== head.dataset.status && !editing) { location.reload(); return; }
        }
      } catch (error) { /* keep polling */ }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
    tailConsole(id);
    drawPlots();
    const charts = document.getElementById("charts");
    if (charts) scalarCharts(charts, charts.dataset.tasks.split(","), [charts.dataset.names]);
  }

  function tailConsole(id) {
    const pre = document.getElementById("console");
    if (!pre) return;
    pre.scrollTop = pre.scrollHeight;
    if (pre.dataset.live !== "1") return;
    const follow = document.getElementById("follow");
    const tick = async () => {
      if (!follow || follow.checked) {
        try {
          const data = await getJSON(`/_ui/tasks/${id}/log?lines=${pre.dataset.lines}`);
          const text = data.events.map((event) => event.msg).join("\n") + (data.events.length ? "\n" : "");
          if (text !== pre.textContent) { pre.textContent = text; pre.scrollTop = pre.scrollHeight; }
        } catch (error) { /* keep polling */ }
      }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }

  function drawPlots() {
    document.querySelectorAll("script[data-plot]").forEach((node) => {
      const figure = JSON.parse(node.textContent);
      const layout = Object.assign({autosize: true, margin: {t: 40, r: 20, b: 50, l: 60}}, figure.layout || {});
      Plotly.newPlot(node.dataset.plot, figure.data || [], layout, {responsive: true, displaylogo: false});
    });
  }

  // exponential moving average, as training dashboards smooth curves
  function smooth(values, weight) {
    if (!weight) return values;
    let last = null;
    return values.map((value) => {
      if (value === null || !Number.isFinite(value)) return value;
      last = last === null ? value : last * weight + (1 - weight) * value;
      return last;
    });
  }

  // one chart per metric, every variant (and every compared task) overlaid
  function scalarCharts(container, taskIds, names) {
    const smoothing = document.getElementById("smoothing");
    const logscale = document.getElementById("logscale");
    const xaxis = document.getElementById("xaxis");
    const csv = document.getElementById("csv");
    let data = [];
    const render = () => {
      const metrics = new Map();
      data.forEach((series, index) => {
        for (const [metric, variants] of Object.entries(series)) {
          if (!metrics.has(metric)) metrics.set(metric, []);
          for (const [variant, points] of Object.entries(variants)) {
            const label = taskIds.length > 1 ? `${names[index] || taskIds[index]}: ${variant}` : variant;
            let x = points.x;
            if (xaxis.value === "timestamp") x = x.map((ms) => new Date(ms));
            metrics.get(metric).push({x, y: smooth(points.y, Number(smoothing.value)), name: label, mode: "lines", type: "scattergl"});
          }
        }
      });
      container.innerHTML = "";
      if (!metrics.size) { container.innerHTML = '<p class="muted">No scalars reported.</p>'; return; }
      [...metrics.keys()].sort().forEach((metric, index) => {
        const div = document.createElement("div");
        div.className = "chart";
        div.id = `chart-${index}`;
        div.dataset.metric = metric;
        container.appendChild(div);
        Plotly.newPlot(div, metrics.get(metric), {
          title: {text: metric}, autosize: true, margin: {t: 40, r: 20, b: 50, l: 60},
          xaxis: {title: {text: xaxis.value === "timestamp" ? "wall time" : "iteration"}},
          yaxis: {type: logscale.checked ? "log" : "linear"}, legend: {orientation: "h"},
        }, {responsive: true, displaylogo: false});
      });
    };
    const load = async () => {
      try {
        data = await Promise.all(taskIds.map((id) => getJSON(`/_ui/tasks/${id}/scalars?x=${xaxis.value}`)));
        render();
      } catch (error) {
        container.innerHTML = `<p class="flash error">Could not load scalars: ${String(error).replace(/</g, "&lt;")}</p>`;
      }
    };
    smoothing.addEventListener("input", () => { document.getElementById("smoothing-value").textContent = smoothing.value; render(); });
    logscale.addEventListener("change", render);
    xaxis.addEventListener("change", () => {
      if (csv) csv.href = csv.href.split("?")[0] + `?x=${xaxis.value}`;
      load();
    });
    load();
  }

  function comparePage() {
    const data = document.getElementById("compare-tasks");
    if (!data) return;
    const tasks = JSON.parse(data.textContent);
    scalarCharts(document.getElementById("charts"), tasks.ids, tasks.names);
  }

  return {pollTable, taskPage, scalarCharts, drawPlots, comparePage};
})();

// Each page names what it needs in <body data-page>: pages carry no inline script, which the
// Content-Security-Policy forbids. "load" waits for plotly, which a page loads after this file.
window.addEventListener("load", () => {
  const start = {tasks: UI.pollTable, task: UI.taskPage, compare: UI.comparePage}[document.body.dataset.page];
  if (start) start();
});

// "Back" on error pages: a javascript: link would be inline script, which the policy refuses. Without a
// page to go back to the link leads to the projects.
document.addEventListener("click", (event) => {
  const back = event.target.closest("a[data-back]");
  if (back && history.length > 1) {
    event.preventDefault();
    history.back();
  }
});
