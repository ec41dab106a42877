// nightlab's dashboard: the scatter (uPlot, vendored), metric curves (the running trials'
// polled live), and live updates over
// server-sent events. The server sends HTML fragments it has escaped; nothing else is
// inserted as HTML here.
(function () {
  "use strict";
  const body = document.body;
  const metric = body.dataset.metric || "objective";

  const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5];

  function width(el) { return Math.max(300, el.clientWidth || 800); }

  let scatter = null;
  function drawScatter(d) {
    const el = document.getElementById("chart");
    if (!el || typeof uPlot === "undefined") return;
    const data = [d.x, d.y, d.best, d.lo, d.hi];
    if (scatter) { scatter.setData(data); return; }
    const band = "rgba(200,60,60,0.35)";
    scatter = new uPlot({
      width: width(el), height: 300,
      scales: { x: { time: false } },
      axes: [{ label: "trial", incrs: INTEGER_STEPS }, { label: metric }],
      series: [
        { label: "trial" },
        { label: metric, stroke: "#2a62c9", paths: () => null,
          points: { show: true, size: 6, fill: "#2a62c9", stroke: "#2a62c9" } },
        { label: "best so far", stroke: "#c33", width: 2, spanGaps: true,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        { label: "best − sd", stroke: band, spanGaps: true, points: { show: false },
          paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "best + sd", stroke: band, spanGaps: true, points: { show: false },
          paths: uPlot.paths.stepped({ align: 1 }) },
      ],
      bands: [{ series: [4, 3], fill: "rgba(200,60,60,0.12)" }],
    }, data, el);
    el.dataset.points = String(d.x.length);
  }

  function drawCurves() {
    document.querySelectorAll("script.curve-data").forEach(function (node) {
      const c = JSON.parse(node.textContent);
      const el = node.previousElementSibling;
      if (!el || typeof uPlot === "undefined") return;
      new uPlot({
        width: width(el), height: 220, scales: { x: { time: false } },
        axes: [{ label: "step" }, { label: node.dataset.name }],
        series: [{ label: "step" }, { label: node.dataset.name, stroke: "#2a62c9" }],
      }, [c.x, c.y], el);
    });
  }

  // A pruned trial's partial curve against the baseline repeats' envelope (min–max band,
  // mean), aligned by step on the server; its JSON holds finite numbers or null only.
  function drawPruned() {
    const node = document.getElementById("pruned-data");
    const el = document.getElementById("pruned-curve");
    if (!node || !el || typeof uPlot === "undefined") return;
    const d = JSON.parse(node.textContent);
    const band = "rgba(120,120,120,0.5)";
    new uPlot({
      width: width(el), height: 260, scales: { x: { time: false } },
      axes: [{ label: "step" }, { label: d.metric }],
      series: [
        { label: "step" },
        { label: "this trial (pruned)", stroke: "#b36b00", width: 2, spanGaps: true },
        { label: "baseline min", stroke: band, spanGaps: true, points: { show: false } },
        { label: "baseline max", stroke: band, spanGaps: true, points: { show: false } },
        { label: "baseline mean", stroke: "#777", dash: [6, 4], spanGaps: true,
          points: { show: false } },
      ],
      bands: [{ series: [3, 2], fill: "rgba(120,120,120,0.15)" }],
    }, [d.x, d.y, d.lo, d.hi, d.mean], el);
    el.dataset.points = String(d.points);
  }

  // The running trials' live curves: each .live-curve names its JSON (the recent points of
  // the objective, bounded and checked by the server), fetched every 2 s and drawn by uPlot.
  // The SSE push replaces the running panel: a new element is drawn at once from the cache.
  const CURVE_POLL_MS = 2000;
  let curveData = {};  // url -> the last answer
  const curveCharts = new WeakMap();  // element -> its uPlot

  function drawLive(el) {
    const d = curveData[el.dataset.curve];
    if (!d || typeof uPlot === "undefined") return;
    el.dataset.points = String(d.y.length);
    const chart = curveCharts.get(el);
    if (chart) { chart.setData([d.x, d.y]); return; }
    if (!d.y.length) { el.textContent = "no " + d.metric + " printed yet"; return; }
    el.textContent = "";
    curveCharts.set(el, new uPlot({
      width: width(el), height: 160, scales: { x: { time: false } },
      axes: [{ label: "step" }, { label: d.metric }],
      series: [{ label: "step" }, { label: d.metric, stroke: "#2a62c9" }],
    }, [d.x, d.y], el));
  }

  function pollCurves() {
    const els = Array.from(document.querySelectorAll(".live-curve"));
    const urls = new Set(els.map(function (el) { return el.dataset.curve; }));
    const kept = {};
    urls.forEach(function (url) { if (curveData[url]) kept[url] = curveData[url]; });
    curveData = kept;  // trials no longer shown are forgotten
    urls.forEach(function (url) {
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d || !Array.isArray(d.x) || !Array.isArray(d.y)) return;
          curveData[url] = d;
          document.querySelectorAll(".live-curve").forEach(function (el) {
            if (el.dataset.curve === url) drawLive(el);
          });
        })
        .catch(function (err) { body.dataset.curveError = String(err); });  // next poll retries
    });
  }

  function live(url) {
    const source = new EventSource(url);
    source.addEventListener("overview", function (event) {
      const p = JSON.parse(event.data);
      for (const [id, html] of Object.entries(p.html)) {
        const el = document.getElementById(id);
        if (el) el.innerHTML = html;  // rendered and escaped by the server's templates
      }
      if (p.scatter) {
        drawScatter(p.scatter);
        const chart = document.getElementById("chart");
        if (chart) chart.dataset.points = String(p.scatter.x.length);
      }
      document.querySelectorAll(".live-curve").forEach(drawLive);
      body.dataset.state = p.state;
      body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const initial = document.getElementById("scatter-data");
    if (initial) drawScatter(JSON.parse(initial.textContent));
    drawCurves();
    drawPruned();
    if (body.dataset.events) live(body.dataset.events);
    if (document.querySelector(".live-curve") || body.dataset.events) {
      pollCurves();
      setInterval(pollCurves, CURVE_POLL_MS);
    }
  });
})();
