// Shared by the review screens (review.js, grid.js): JSON calls to the review API with the
// session's CSRF token, lease-token URLs, readable errors, and the dismissable message bar.
window.LoupeReview = (function () {
  "use strict";

  // A POST helper bound to the page's CSRF token: resolves to {status, ok, body} (body null on 204).
  function api(csrf) {
    return async function post(target, body, options) {
      const response = await fetch(target, {
        method: "POST", credentials: "same-origin", keepalive: Boolean(options && options.keepalive),
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
        body: JSON.stringify(body || {}),
      });
      let data = null;
      if (response.status !== 204) {
        try { data = await response.json(); } catch (err) { data = null; }
      }
      return { status: response.status, ok: response.ok, body: data };
    };
  }

  function url(template, token) { return template.replace("TOKEN", encodeURIComponent(token)); }

  function errorText(result) {
    if (result.body && result.body.error) return result.body.error;
    return "The server answered HTTP " + result.status + ".";
  }

  // A say(text, kind) for a message list: at most `keep` messages; errors stay until dismissed,
  // others go after `ttl` ms.
  function messages(list, keep, ttl) {
    return function say(text, kind) {
      const li = document.createElement("li");
      li.className = kind === "error" ? "error" : "info";
      const span = document.createElement("span");
      span.textContent = text;
      const close = document.createElement("button");
      close.type = "button";
      close.className = "link rv-close";
      close.setAttribute("aria-label", "Dismiss");
      close.textContent = "×";
      close.addEventListener("click", function () { li.remove(); });
      li.append(span, close);
      list.appendChild(li);
      while (list.children.length > keep) list.firstElementChild.remove();
      if (kind !== "error") setTimeout(function () { li.remove(); }, ttl);
    };
  }

  return { api: api, url: url, errorText: errorText, messages: messages };
})();
