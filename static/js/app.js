// Small behaviours shared by every page. No inline scripts anywhere: the pages run under a strict CSP.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="#selector">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent;
    function done(label) {
      var before = button.textContent;
      button.textContent = label;
      window.setTimeout(function () {
        button.textContent = before;
      }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () {
          done("Copied");
        },
        function () {
          done("Select and copy");
        },
      );
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done("Selected: press Ctrl+C");
    }
  });

  // Live updates: say so when the server does not answer, and clear the notice once it does again.
  function banner() {
    var el = document.getElementById("live-problem");
    if (!el) {
      el = document.createElement("div");
      el.id = "live-problem";
      el.className = "live-problem";
      el.setAttribute("role", "status");
      el.hidden = true;
      document.body.appendChild(el);
    }
    return el;
  }
  document.addEventListener("htmx:sendError", function () {
    var el = banner();
    el.textContent = "Cannot reach the server; live updates will resume when it answers.";
    el.hidden = false;
  });
  document.addEventListener("htmx:responseError", function (event) {
    var el = banner();
    var status = event.detail && event.detail.xhr ? event.detail.xhr.status : "";
    el.textContent = "The server answered " + status + " to a live update; reload the page if this persists.";
    el.hidden = false;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail && event.detail.successful) {
      var el = document.getElementById("live-problem");
      if (el) el.hidden = true;
    }
  });
})();
