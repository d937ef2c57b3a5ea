// Timing charts: each <canvas data-chart="..." data-src="..."> is drawn from its JSON endpoint with Chart.js,
// and the table under it is filled from the same answer: the page itself computes no figure, so each is
// computed once per view.
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

  // --- Tables: the same figures as text ---------------------------------------------------------------

  // As the server printed them: a float keeps one decimal at least (30.0), a missing value is a dash.
  function num(value) {
    if (value === null || value === undefined) return "\u2014";
    return Number.isInteger(value) ? value.toFixed(1) : String(value);
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.appendChild(text);
    else td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function fill(table, rows, build) {
    var body = table.tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      var empty = document.createElement("tr");
      cell(empty, table.dataset.empty, "muted").colSpan = table.tHead.rows[0].cells.length;
      body.appendChild(empty);
      return;
    }
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      build(tr, item);
      body.appendChild(tr);
    });
  }

  var TABLES = {
    trend: function (data) {
      document.getElementById("trend-approximate").hidden = !data.approximate;
      document.getElementById("trend-exact").hidden = !!data.approximate;
      fill(document.getElementById("table-trend"), data.rows, function (tr, r) {
        cell(tr, r[0], "mono");
        cell(tr, r[1]);
        cell(tr, String(r[2]), "num");
        cell(tr, num(r[3]), "num");
        cell(tr, num(r[4]), "num");
      });
    },
    phases: function (data) {
      fill(document.getElementById("table-phases"), data.days.map(function (day, i) { return i; }), function (tr, i) {
        cell(tr, data.days[i]);
        cell(tr, String(data.jobs[i]), "num");
        ["queue", "oml", "fetch"].forEach(function (name) { cell(tr, num(data[name][i]), "num"); });
      });
    },
    outcomes: function (data) {
      var table = document.getElementById("table-outcomes");
      fill(table, data.days.map(function (day, i) { return i; }), function (tr, i) {
        cell(tr, data.days[i]);
        data.states.forEach(function (s) { cell(tr, String(s.counts[i]), "num"); });
        cell(tr, num(data.failure_rate[i]), "num");
      });
      var overall = data.failure_rate_total;
      document.getElementById("overall-failure-rate").textContent =
        overall === null ? "\u2014" : Math.round(overall * 100) + "\u00a0% (" + num(overall) + ")";
      if (!data.days.length) return;
      var total = document.createElement("tr");
      total.className = "total";
      var th = document.createElement("th");
      th.textContent = "Total";
      total.appendChild(th);
      data.totals.forEach(function (n) { cell(total, String(n), "num"); });
      cell(total, num(overall), "num");
      table.tBodies[0].appendChild(total);
    },
    gantt: function (data, canvas) {
      if (data.origin_label) document.getElementById("gantt-origin").textContent = data.origin_label;
      var template = canvas.dataset.jobUrl;
      fill(document.getElementById("table-gantt"), data.jobs, function (tr, job) {
        var link = document.createElement("a");
        link.className = "mono";
        link.href = template.replace("00000000-0000-0000-0000-000000000000", job.uuid);
        link.textContent = job.uuid.slice(0, 8);
        cell(tr, link);
        cell(tr, job.script, "mono");
        var badge = document.createElement("span");
        badge.className = "badge state-" + job.state;
        badge.textContent = job.state;
        cell(tr, badge);
        cell(tr, job.created, "nowrap");
        cell(tr, job.segments.map(function (seg) {
          return seg.phase + " " + seg.start.toFixed(2) + "\u2013" + seg.end.toFixed(2);
        }).join("; "), "mono");
      });
    },
  };

  var BUILDERS = { trend: trend, phases: phases, outcomes: outcomes, gantt: gantt };

  function draw(canvas) {
    var build = BUILDERS[canvas.dataset.chart];
    if (!build) return;
    fetch(canvas.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        TABLES[canvas.dataset.chart](data, canvas);
        if (typeof window.Chart === "undefined") return;
        var config = build(data, canvas);
        config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options);
        new window.Chart(canvas, config);
        canvas.dataset.drawn = "true";
      })
      .catch(function (err) {
        canvas.dataset.drawn = "error";
        var note = document.createElement("p");
        note.className = "error";
        note.textContent = "The figures could not be read (" + err.message + "); reload the page to try again.";
        canvas.parentNode.after(note);
      });
  }

  function start() {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
