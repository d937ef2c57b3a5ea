// Timing charts: each <canvas data-chart="..." data-src="..."> is drawn from its JSON endpoint with Chart.js.
// The same figures are in the table under each chart.
(function () {
  "use strict";

  var PHASE_COLORS = { queue: "#9aa5b8", oml: "#2456c7", fetch: "#1f7a3f" };
  var STATE_COLORS = { succeeded: "#1f7a3f", failed: "#b3261e", timed_out: "#9a6700", cancelled: "#8a8f99" };
  var PALETTE = ["#2456c7", "#b3261e", "#1f7a3f", "#9a6700", "#6a3fb5", "#0f7c86", "#c2185b", "#5b6475"];

  function seconds(value) { return value === null || value === undefined ? "—" : value.toFixed(2) + " s"; }

  // Legible from one day to a year: at most MAX_TICKS dates on a time axis and MAX_SCRIPTS scripts drawn (the
  // busiest; every script is in the table), one legend entry per script (p95 is the dashed line of its colour).
  var MAX_TICKS = 12;
  var MAX_SCRIPTS = 6;
  var DAY_AXIS = { ticks: { autoSkip: true, maxTicksLimit: MAX_TICKS, maxRotation: 0 } };

  function busiest(series) {
    var totals = {};
    series.forEach(function (s) { totals[s.script] = (totals[s.script] || 0) + (s.jobs || 0); });
    return Object.keys(totals).sort(function (a, b) { return totals[b] - totals[a] || (a < b ? -1 : 1); }).slice(0, MAX_SCRIPTS);
  }

  function trend(data) {
    var shown = busiest(data.series);
    var color = {};
    shown.forEach(function (script, i) { color[script] = PALETTE[i % PALETTE.length]; });
    var series = data.series.filter(function (s) { return shown.indexOf(s.script) !== -1; });
    var others = {};
    data.series.forEach(function (s) { if (shown.indexOf(s.script) === -1) others[s.script] = true; });
    var hidden = Object.keys(others).length;
    var subtitle = "solid: p50, dashed: p95" + (hidden ? "; the " + shown.length + " busiest scripts (" + hidden + " more in the table)" : "");
    if (data.days.length <= 1) {
      // One day: a bar per script and percentile, not a column of dots.
      return {
        type: "bar",
        data: {
          labels: shown,
          datasets: ["p50", "p95"].map(function (q, i) {
            return {
              label: q,
              data: shown.map(function (script) {
                var s = series.find(function (x) { return x.script === script && x.percentile === q; });
                return s ? s.values[0] : null;
              }),
              backgroundColor: i === 0 ? "#2456c7" : "#9aa5b8",
            };
          }),
        },
        options: {
          scales: { x: { ticks: { autoSkip: true, maxTicksLimit: MAX_TICKS } }, y: { beginAtZero: true, title: { display: true, text: "seconds" } } },
          plugins: {
            title: { display: true, text: data.days[0] || "" },
            subtitle: { display: hidden > 0, text: subtitle },
            tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + seconds(c.parsed.y); } } },
          },
        },
      };
    }
    var datasets = series.map(function (s) {
      return {
        label: s.script,
        percentile: s.percentile,
        data: s.values,
        borderColor: color[s.script],
        backgroundColor: color[s.script],
        borderDash: s.percentile === "p95" ? [6, 4] : [],
        pointRadius: data.days.length > 31 ? 0 : 3,
        spanGaps: true,
        tension: 0.2,
      };
    });
    return {
      type: "line",
      data: { labels: data.days, datasets: datasets },
      options: {
        scales: { x: DAY_AXIS, y: { beginAtZero: true, title: { display: true, text: "seconds" } } },
        plugins: {
          subtitle: { display: true, text: subtitle },
          legend: { labels: { filter: function (item, chart) { return chart.datasets[item.datasetIndex].percentile === "p50"; } } },
          tooltip: { callbacks: { label: function (c) { return c.dataset.label + " " + c.dataset.percentile + ": " + seconds(c.parsed.y); } } },
        },
      },
    };
  }

  function phases(data) {
    var names = [["queue", "Queue wait"], ["oml", "OML time"], ["fetch", "Fetch time"]];
    return {
      type: "bar",
      data: {
        labels: data.days,
        datasets: names.map(function (n) {
          return { label: n[1], data: data[n[0]], backgroundColor: PHASE_COLORS[n[0]] };
        }),
      },
      options: {
        scales: { x: Object.assign({ stacked: true }, DAY_AXIS), y: { stacked: true, beginAtZero: true, title: { display: true, text: "mean seconds" } } },
      },
    };
  }

  function outcomes(data) {
    var datasets = data.states.map(function (s) {
      return { type: "bar", label: s.label, data: s.counts, backgroundColor: STATE_COLORS[s.state], stack: "jobs", yAxisID: "y" };
    });
    datasets.push({
      type: "line",
      label: "Failure rate",
      data: data.failure_rate.map(function (r) { return r === null ? null : r * 100; }),
      borderColor: "#1d2330",
      backgroundColor: "#1d2330",
      yAxisID: "rate",
      spanGaps: true,
    });
    return {
      type: "bar",
      data: { labels: data.days, datasets: datasets },
      options: {
        scales: {
          x: Object.assign({ stacked: true }, DAY_AXIS),
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "jobs" } },
          rate: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: "failure rate %" } },
        },
      },
    };
  }

  function gantt(data, canvas) {
    var labels = data.jobs.map(function (j) { return j.label; });
    var datasets = ["queue", "oml", "fetch"].map(function (phase) {
      return {
        label: { queue: "Queue wait", oml: "OML time", fetch: "Fetch time" }[phase],
        backgroundColor: PHASE_COLORS[phase],
        grouped: false,
        barPercentage: 0.8,
        data: data.jobs.map(function (j) {
          var seg = j.segments.find(function (s) { return s.phase === phase; });
          return seg ? [seg.start, Math.max(seg.end, seg.start + 0.001)] : null;
        }),
      };
    });
    // One row per job: the box grows with the number of jobs (set through the CSSOM, not a style attribute).
    canvas.parentNode.style.height = Math.max(160, 22 * labels.length + 80) + "px";
    return {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        indexAxis: "y",
        scales: { x: { beginAtZero: true, title: { display: true, text: "seconds after the first job was created" } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (c) {
                var r = c.raw;
                return c.dataset.label + ": " + seconds(r[1] - r[0]) + " (from " + r[0].toFixed(2) + " s)";
              },
            },
          },
        },
      },
    };
  }

  var BUILDERS = { trend: trend, phases: phases, outcomes: outcomes, gantt: gantt };

  function draw(canvas) {
    var build = BUILDERS[canvas.dataset.chart];
    if (!build || typeof window.Chart === "undefined") return;
    fetch(canvas.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        var config = build(data, canvas);
        config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options);
        new window.Chart(canvas, config);
        canvas.dataset.drawn = "true";
      })
      .catch(function (err) {
        canvas.dataset.drawn = "error";
        var note = document.createElement("p");
        note.className = "error";
        note.textContent = "The chart could not be drawn (" + err.message + "); the table below has the figures.";
        canvas.parentNode.after(note);
      });
  }

  function start() {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
