// The Sluice console's only script: times in the viewer's zone, the start form's JSON
// check, and the live parts (the overview's figures and charts, an instance page that
// reloads when its instance moves on). Everything from the node is set as text.
"use strict";

(function () {
  // Times: shown in the viewer's zone; the exact value (UTC) on hover.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) { return; }
      var options = {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit"
      };
      // A journal's calls are often in the same second: their times show milliseconds.
      if (el.closest(".at")) { options.fractionalSecondDigits = 3; }
      el.textContent = at.toLocaleString(undefined, options);
      el.title = el.getAttribute("datetime") + " (UTC)";
    });
  }

  // The start form: refuse input that is not JSON before sending it.
  function checkStartForm() {
    var form = document.getElementById("start-form");
    if (!form) { return; }
    var input = document.getElementById("input");
    var problem = document.getElementById("input-error");
    form.addEventListener("submit", function (event) {
      var text = input.value.trim();
      if (text === "") { return; }
      try {
        JSON.parse(text);
        problem.hidden = true;
      } catch (e) {
        event.preventDefault();
        problem.textContent = "The input is not JSON: " + e.message;
        problem.hidden = false;
        input.focus();
      }
    });
  }

  // The overview's charts: the same drawing as the server's (history.rs).
  var WIDTH = 600, HEIGHT = 100, KEPT = 600, MIN_WINDOW = 60;
  function draw(figure, series) {
    var top = 1;
    series.forEach(function (s) { top = Math.max(top, s[0], s[1], s[2]); });
    var step = WIDTH / Math.min(Math.max(series.length, MIN_WINDOW), KEPT);
    var last = series.length - 1;
    ["s-running", "s-queued", "s-parked"].forEach(function (cls, which) {
      var points = series.map(function (s, i) {
        var x = WIDTH - (last - i) * step;
        var y = HEIGHT - (s[which] / top) * (HEIGHT - 4);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
      var line = figure.querySelector("polyline." + cls);
      if (line) { line.setAttribute("points", points); }
    });
    var shown = figure.querySelector("[data-top]");
    if (shown) { shown.textContent = String(top); }
  }

  function liveOverview() {
    var charts = {};
    document.querySelectorAll("figure.chart[data-pool]").forEach(function (figure) {
      var series = [];
      try { series = JSON.parse(figure.dataset.series || "[]"); } catch (e) { series = []; }
      charts[figure.dataset.pool] = { figure: figure, series: series };
    });
    var state = document.getElementById("live-state");
    var source = new EventSource("/ui/live/overview");
    source.addEventListener("figures", function (event) {
      var data = JSON.parse(event.data);
      data.pools.forEach(function (pool) {
        document.querySelectorAll("tr[data-pool]").forEach(function (row) {
          if (row.dataset.pool !== pool.name) { return; }
          row.querySelectorAll("[data-field]").forEach(function (cell) {
            var field = cell.dataset.field;
            var value = pool[field];
            if (value === undefined) { return; }
            cell.textContent = field === "rate" ? Number(value).toFixed(1) : String(value);
          });
        });
        var chart = charts[pool.name];
        if (chart) {
          chart.series.push([pool.running, pool.queued, pool.parked]);
          if (chart.series.length > KEPT) { chart.series.shift(); }
          draw(chart.figure, chart.series);
        }
      });
      document.querySelectorAll("[data-total]").forEach(function (el) {
        var key = el.dataset.total;
        var value = key === "uptime" ? data.uptime : data.totals[key];
        if (value !== undefined) { el.textContent = String(value); }
      });
      if (state) { state.textContent = "live"; }
    });
    source.addEventListener("error", function () {
      if (state) { state.textContent = "reconnecting…"; }
    });
  }

  // An instance page: reload once the instance has moved on.
  function liveInstance() {
    var marker = document.getElementById("live");
    if (!marker || !marker.dataset.url) { return; }
    var source = new EventSource(marker.dataset.url);
    var leaving = false;
    source.addEventListener("changed", function () {
      source.close();
      if (!leaving) { window.location.reload(); }
    });
    // A button pressed here (cancel, retry, kill) leads to the next page: no reload races it.
    document.addEventListener("submit", function () {
      leaving = true;
      source.close();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    checkStartForm();
    var live = document.body.dataset.live;
    if (live === "overview") { liveOverview(); }
    if (live === "instance") { liveInstance(); }
  });
})();
