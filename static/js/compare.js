// History page: a tick box on each job row; ticking two fills the "Compare two jobs" form.
(function () {
  "use strict";

  var picked = [];

  function form() { return document.getElementById("compare-form"); }

  function sync() {
    var f = form();
    if (!f) return;
    f.querySelector("#compare-a").value = picked[0] || "";
    f.querySelector("#compare-b").value = picked[1] || "";
    document.querySelectorAll("input.compare-tick").forEach(function (box) {
      box.checked = picked.indexOf(box.value) !== -1;
    });
  }

  function addTicks(root) {
    (root || document).querySelectorAll("tr[id^='job-']").forEach(function (row) {
      if (row.querySelector("input.compare-tick")) return;
      var uuid = row.id.slice(4);
      var cell = document.createElement("td");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.className = "compare-tick";
      box.value = uuid;
      box.title = "Pick for comparison";
      box.setAttribute("aria-label", "Pick job " + uuid.slice(0, 8) + " for comparison");
      box.checked = picked.indexOf(uuid) !== -1;
      box.addEventListener("change", function () {
        picked = picked.filter(function (u) { return u !== uuid; });
        if (box.checked) picked.push(uuid);
        if (picked.length > 2) picked = picked.slice(-2);
        sync();
      });
      cell.appendChild(box);
      row.insertBefore(cell, row.firstChild);
    });
    document.querySelectorAll("table#history-table thead tr").forEach(function (head) {
      if (head.querySelector("th.compare-head")) return;
      var th = document.createElement("th");
      th.className = "compare-head";
      th.textContent = "Pick";
      head.insertBefore(th, head.firstChild);
    });
  }

  function start() {
    if (!form()) return;
    addTicks(document);
    // Rows refreshed or appended by htmx come without the box.
    document.body.addEventListener("htmx:afterSettle", function () { addTicks(document); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
