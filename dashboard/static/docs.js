// /docs: Swagger UI (npm's swagger-ui-dist, served from /static/vendor) over Vigil's /openapi.json.
// Started from this file, not an inline script, so the page keeps the CSP's script-src 'self'.
"use strict";

(function () {
  function start() {
    const el = document.getElementById("swagger-ui");
    if (!el) return;
    if (typeof SwaggerUIBundle === "undefined") {
      el.textContent = "The API explorer needs Swagger UI: run `make assets`. The description is at /openapi.json.";
      return;
    }
    SwaggerUIBundle({ url: el.dataset.openapi, domNode: el, deepLinking: false, tryItOutEnabled: false });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
