// Vigil's charts: every <div class="chart" data-src data-kind data-unit data-marks> drawn with uPlot.
//
// data-src answers {"series": [{"labels": {...}, "points": [[unix_s, value|null], ...]}], "step", "source"};
// data-marks answers {"marks": [{"t": unix_s, "label": "...", "kind": "alert|xid|runbook"}]}.
// Label text from the data only ever reaches the page through textContent or the canvas, never as HTML.
// Charts re-fetch their data every REFRESH_MS; the fleet's tables refresh themselves through htmx.
"use strict";

(function () {
  const REFRESH_MS = 30000;
  const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const MARK_COLORS = { alert: "#d62728", xid: "#9467bd", runbook: "#2ca02c" };

  function seriesLabel(labels) {
    const keys = Object.keys(labels || {});
    if (keys.length === 0) return "all";
    // Without grouping a series carries all its attributes: name it by the few that tell GPUs apart.
    const prefer = ["host.name", "gpu.index", "gpu.mig.profile", "reason", "team", "llm.engine", "llm.endpoint"];
    const chosen = keys.length > 3 ? prefer.filter((k) => k in labels) : keys;
    return (chosen.length ? chosen : keys.slice(0, 3)).map((k) => k + "=" + labels[k]).join(" ");
  }

  function formatValue(unit) {
    return function (u, v) {
      if (v == null || Number.isNaN(v)) return "–";
      if (unit === "By") {
        const gib = v / 1073741824;
        return gib >= 1 ? gib.toFixed(1) + " GiB" : (v / 1048576).toFixed(0) + " MiB";
      }
      if (unit === "ratio") return (v * 100).toFixed(1) + "%";
      // latencies (TTFT, ITL) are mostly under a second: in ms they read without leading zeros
      if (unit === "s" && Math.abs(v) < 1) return (v * 1000).toFixed(Math.abs(v) < 0.01 ? 1 : 0) + " ms";
      const text = Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
      const suffix = { "%": "%", W: " W", Cel: " °C", MHz: " MHz", s: " s", "/s": "/s" }[unit] || "";
      return text + suffix;
    };
  }

  // One x axis for all series: the union of their timestamps; a series lacking a time gets null there.
  function align(body, stacked) {
    const times = new Set();
    for (const s of body.series) for (const p of s.points) times.add(p[0]);
    const xs = Array.from(times).sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const raw = body.series.map((s) => {
      const ys = new Array(xs.length).fill(null);
      for (const p of s.points) ys[index.get(p[0])] = p[1];
      return ys;
    });
    if (!stacked) return { xs, raw, drawn: raw };
    const sums = new Array(xs.length).fill(0);
    const drawn = raw.map((ys) => ys.map((y, i) => (sums[i] += y == null ? 0 : y)));
    return { xs, raw, drawn };
  }

  function marksPlugin(getMarks) {
    return {
      hooks: {
        draw: [
          function (u) {
            const marks = getMarks();
            if (!marks.length) return;
            const ctx = u.ctx;
            const top = u.bbox.top;
            const bottom = u.bbox.top + u.bbox.height;
            ctx.save();
            ctx.lineWidth = 1 * devicePixelRatio;
            ctx.font = 10 * devicePixelRatio + "px sans-serif";
            for (const m of marks) {
              const x = u.valToPos(m.t, "x", true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              ctx.strokeStyle = ctx.fillStyle = MARK_COLORS[m.kind] || "#555";
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, bottom);
              ctx.stroke();
              ctx.fillText(String(m.label).slice(0, 40), x + 3 * devicePixelRatio, top + 10 * devicePixelRatio);
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  function showText(el, text) {
    const p = document.createElement("p");
    p.className = "chart-note";
    p.textContent = text;
    el.replaceChildren(p);
  }

  function listMarks(el, marks) {
    let list = el.parentNode.querySelector("ul.marks");
    if (!marks.length) {
      if (list) list.remove();
      return;
    }
    if (!list) {
      list = document.createElement("ul");
      list.className = "marks";
      el.parentNode.appendChild(list);
    }
    list.replaceChildren(
      ...marks.slice(-20).map((m) => {
        const li = document.createElement("li");
        li.className = "mark mark-" + m.kind;
        li.textContent = new Date(m.t * 1000).toLocaleString() + " " + m.label;
        li.title = m.label;
        return li;
      })
    );
  }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok) {
      let detail = r.status + " " + r.statusText;
      try {
        const body = await r.json();
        if (body && body.detail) detail = String(body.detail);
      } catch (e) {
        /* not JSON: keep the status */
      }
      throw new Error(detail);
    }
    return r.json();
  }

  // [ten steps before, one after] the only time of a chart's data; null where it has several.
  function loneRange(xs, step) {
    return xs && xs.length === 1 ? [xs[0] - step * 10, xs[0] + step] : null;
  }

  async function draw(el) {
    const kind = el.dataset.kind === "stacked" ? "stacked" : "line";
    const unit = el.dataset.unit || "";
    let body, marks = [];
    try {
      body = await getJSON(el.dataset.src);
      if (el.dataset.marks) marks = (await getJSON(el.dataset.marks)).marks || [];
    } catch (e) {
      showText(el, "Could not load this chart: " + e.message);
      return;
    }
    listMarks(el, marks);
    if (!body.series || body.series.length === 0) {
      if (el._plot) { el._plot.destroy(); el._plot = null; }
      showText(el, "No data in this range.");
      el.dataset.points = "0";
      return;
    }
    const { xs, raw, drawn } = align(body, kind === "stacked");
    el.dataset.source = body.source;
    el._marks = marks;
    const data = [xs, ...drawn];
    const labels = body.series.map((s) => seriesLabel(s.labels)).join("|");
    if (el._plot && el._labels === labels) {
      el._raw = raw;
      el._plot.setData(data);
      el.dataset.points = String(xs.length);
      return;
    }
    if (el._plot) el._plot.destroy();
    el.replaceChildren();
    el._raw = raw;
    el._labels = labels;
    const fmt = formatValue(unit);
    const series = [{ label: "time" }].concat(
      body.series.map((s, i) => {
        const color = COLORS[i % COLORS.length];
        return {
          label: seriesLabel(s.labels),
          stroke: color,
          width: 1.5,
          fill: kind === "stacked" ? color + "55" : undefined,
          spanGaps: false,
          // The legend shows the series' own value, not the stacked sum drawn.
          value: (u, v, si, di) => fmt(u, di == null ? null : el._raw[si - 1][di]),
        };
      })
    );
    const bands = kind === "stacked" ? body.series.slice(1).map((s, i) => ({ series: [i + 2, i + 1] })) : undefined;
    const opts = {
      width: Math.max(300, el.clientWidth || 600),
      height: 220,
      series,
      bands,
      axes: [{}, { values: (u, vals) => vals.map((v) => fmt(u, v)), size: 84 }],
      legend: { live: true },
      scales: {
        // A lone point (a fresh start): uPlot widens a single time to 86,400 / ms before it asks, 1,000
        // days at second resolution, so the point is found from the data: ten steps before it, one after.
        x: { time: true, range: (u, min, max) => loneRange(u.data[0], body.step || 60) || [min, max] },
        // a ratio that stays 0 would otherwise get uPlot's 0..100 range, read as 0..10000 %
        ...(unit === "ratio" ? { y: { range: (u, min, max) => [0, Math.max(max || 0, 0.01) * 1.1] } } : {}),
      },
      cursor: { drag: { x: true, y: false } },
      plugins: [marksPlugin(() => el._marks || [])],
    };
    el._plot = new uPlot(opts, data, el);
    el.dataset.points = String(xs.length); // drawn, with this many times: what tests and bench/dashboard.py wait for
  }

  function start() {
    const charts = Array.from(document.querySelectorAll(".chart[data-src]"));
    if (typeof uPlot === "undefined") {
      for (const el of charts) showText(el, "Charts need the chart library: run `make assets`.");
      return;
    }
    for (const el of charts) draw(el);
    setInterval(() => {
      if (!document.hidden) for (const el of charts) draw(el);
    }, REFRESH_MS);
    window.addEventListener("resize", () => {
      for (const el of charts) if (el._plot) el._plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
