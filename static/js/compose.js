// The compose form: show only the fields the chosen call kind takes, check the parameters JSON before it is
// sent (with the line and column of a mistake), and show the picked script's owner, description and source.
(function () {
  "use strict";

  // A strict JSON reader that says where it stopped; JSON.parse's messages differ between browsers.
  function jsonProblem(text) {
    var i = 0;
    var n = text.length;

    function Problem(message) {
      this.pos = i;
      this.message = message;
    }
    function fail(message) {
      throw new Problem(i >= n ? "unexpected end of input" : message);
    }
    function ws() {
      while (i < n && " \t\n\r".indexOf(text[i]) !== -1) i++;
    }
    function literal(word) {
      if (text.substr(i, word.length) === word) {
        i += word.length;
        return true;
      }
      return false;
    }
    function string() {
      i++; // opening quote
      while (i < n) {
        var c = text[i];
        if (c === '"') {
          i++;
          return;
        }
        if (c === "\\") {
          i++;
          if (i >= n) break;
          var e = text[i];
          if (e === "u") {
            if (!/^[0-9a-fA-F]{4}$/.test(text.substr(i + 1, 4))) fail("invalid \\u escape");
            i += 5;
            continue;
          }
          if ('"\\/bfnrt'.indexOf(e) === -1) fail("invalid escape \\" + e);
          i++;
          continue;
        }
        if (c < " ") fail("control character in a string (write \\n for a new line)");
        i++;
      }
      fail("unterminated string");
    }
    function number() {
      var m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
      if (!m || !m[0] || m[0] === "-") fail("invalid number");
      i += m[0].length;
    }
    function value() {
      ws();
      if (i >= n) fail("");
      var c = text[i];
      if (c === "{") return object();
      if (c === "[") return array();
      if (c === '"') return string();
      if (c === "-" || (c >= "0" && c <= "9")) return number();
      if (literal("true") || literal("false") || literal("null")) return;
      fail("expected a value (a string needs double quotes), found " + JSON.stringify(c));
    }
    function object() {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a property name in double quotes");
        string();
        ws();
        if (text[i] !== ":") fail("expected ':' after the property name");
        i++;
        value();
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return;
        }
        fail("expected ',' or '}' after a property value");
      }
    }
    function array() {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return;
        }
        fail("expected ',' or ']' after an array item");
      }
    }

    try {
      ws();
      var first = text[i];
      value();
      ws();
      if (i < n) fail("unexpected text after the JSON value");
      if (first !== "{") return { message: 'Must be a JSON object, e.g. {"n": 10}.' };
      return null;
    } catch (problem) {
      if (!(problem instanceof Problem)) throw problem;
      var before = text.slice(0, problem.pos);
      var line = before.split("\n").length;
      var column = problem.pos - before.lastIndexOf("\n");
      return {
        line: line,
        column: column,
        pos: problem.pos,
        message: "Invalid JSON at line " + line + ", column " + column + ": " + problem.message + ".",
      };
    }
  }

  function setup(form) {
    var kinds = JSON.parse(form.getAttribute("data-kind-fields"));
    var kindSelect = form.querySelector("#id_kind");
    var asyncBox = form.querySelector("#id_asyncFlag");
    var params = form.querySelector("[data-json-object]");
    var paramsStatus = form.querySelector("#parameters-status");

    function setEnabled(box, on) {
      box.hidden = !on;
      box.querySelectorAll("input, select, textarea").forEach(function (el) {
        el.disabled = !on;
      });
    }

    function applyKind() {
      var kind = kindSelect.value;
      var fields = kinds.fields[kind] || [];
      var required = kinds.required[kind] || [];
      form.querySelectorAll("[data-kinds]").forEach(function (box) {
        var name = box.getAttribute("data-field");
        setEnabled(box, fields.indexOf(name) !== -1);
        box.classList.toggle("is-required", required.indexOf(name) !== -1);
      });
      applyAsync();
    }

    function applyAsync() {
      var timeoutBox = form.querySelector('[data-field="timeout"]');
      if (timeoutBox && asyncBox) setEnabled(timeoutBox, asyncBox.checked);
    }

    function checkParams(showOk) {
      if (!params) return true;
      var text = params.value;
      var problem = text.trim() ? jsonProblem(text) : null;
      var box = params.closest(".field");
      box.classList.toggle("has-error", !!problem);
      params.setAttribute("aria-invalid", problem ? "true" : "false");
      if (problem) {
        paramsStatus.textContent = problem.message;
        paramsStatus.className = "json-status field-error";
      } else {
        paramsStatus.textContent = text.trim() && showOk ? "Valid JSON object." : "";
        paramsStatus.className = "json-status ok";
      }
      return !problem;
    }

    function showScript() {
      var select = form.querySelector("[data-script-select]");
      form.querySelectorAll(".script-info").forEach(function (info) {
        info.hidden = true;
      });
      if (!select) return;
      var option = select.options[select.selectedIndex];
      var id = option && option.getAttribute("data-info");
      var info = id && document.getElementById(id);
      if (info) info.hidden = false;
    }

    kindSelect.addEventListener("change", applyKind);
    if (asyncBox) asyncBox.addEventListener("change", applyAsync);
    if (params) {
      params.addEventListener("input", function () {
        checkParams(true);
      });
    }
    form.addEventListener("change", function (event) {
      if (event.target.matches("[data-script-select]")) showScript();
    });
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.id === "script-picker") showScript();
    });
    form.addEventListener("submit", function (event) {
      if (!checkParams(false)) {
        event.preventDefault();
        params.focus();
        if (params.setSelectionRange) {
          var problem = jsonProblem(params.value);
          if (problem && problem.pos !== undefined) params.setSelectionRange(problem.pos, problem.pos + 1);
        }
      }
    });

    applyKind();
    showScript();
    if (params && params.value.trim()) checkParams(false);
  }

  function start() {
    var form = document.getElementById("compose-form");
    if (form) setup(form);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
