// Click a picture marked data-enlarge="URL" (exemplar thumbnails on the review screen and the
// project page) to see it large; a click anywhere or Esc closes it. While it is open, keys go
// to it, not to the page's shortcuts.
(function () {
  "use strict";
  let overlay = null;

  function open(src, alt) {
    if (!overlay) {
      overlay = document.createElement("div");
      overlay.className = "overlay lightbox";
      overlay.id = "lightbox";
      overlay.setAttribute("role", "dialog");
      overlay.setAttribute("aria-label", "Enlarged picture");
      overlay.appendChild(document.createElement("img"));
      overlay.addEventListener("click", close);
      document.body.appendChild(overlay);
    }
    const img = overlay.firstChild;
    img.src = src;
    img.alt = alt || "";
    overlay.hidden = false;
  }

  function close() { if (overlay) overlay.hidden = true; }
  function isOpen() { return Boolean(overlay && !overlay.hidden); }

  document.addEventListener("click", function (e) {
    const target = e.target.closest && e.target.closest("[data-enlarge]");
    if (!target) return;
    e.preventDefault();
    open(target.dataset.enlarge, target.getAttribute("alt"));
  });
  document.addEventListener("keydown", function (e) {
    if (!isOpen()) return;
    e.stopImmediatePropagation();
    e.preventDefault();
    if (e.key === "Escape" || e.key === "Enter" || e.key === " ") close();
  }, true);
})();
