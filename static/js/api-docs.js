// Starts Swagger UI on the API docs page (/api/v1/docs). The page has no inline script, as the site's Content
// Security Policy allows scripts from this origin only: the settings come from data attributes of #swagger-ui.
(function () {
  "use strict";

  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;
  var csrfToken = root.getAttribute("data-csrf-token") || "";
  var SAFE_METHODS = ["GET", "HEAD", "OPTIONS", "TRACE"];

  window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // The online validator's badge would send the document's address to another host.
    validatorUrl: null,
    // Django refuses a write made with the session cookie unless it carries the CSRF token; a Bearer token
    // needs none, and the header is harmless beside it.
    requestInterceptor: function (request) {
      var method = (request.method || "GET").toUpperCase();
      if (csrfToken && SAFE_METHODS.indexOf(method) === -1) {
        request.headers["X-CSRFToken"] = csrfToken;
      }
      return request;
    },
  });
})();
