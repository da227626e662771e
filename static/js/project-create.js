// New-project form: as class names are typed, show what each would start with (the server
// renders the preview; only for the local backend, whose zero-shot mode uses ImageNet classes).
(function () {
  "use strict";
  const box = document.getElementById("suggestions");
  const labels = document.getElementById("id_labels");
  const backend = document.getElementById("id_backend");
  if (!box || !labels) return;
  let timer = 0;
  let asked = "";

  async function refresh() {
    const local = !backend || backend.value === "local";
    document.getElementById("suggestions-note").hidden = !local;
    const query = local ? labels.value.trim() : "";
    if (query === asked) return;
    asked = query;
    if (!query) { box.replaceChildren(); return; }
    try {
      const response = await fetch(box.dataset.url + "?labels=" + encodeURIComponent(query), { credentials: "same-origin" });
      if (response.ok && asked === query) box.innerHTML = await response.text();
    } catch (err) { /* the preview is a convenience: the project page shows the same after creation */ }
  }

  function soon() { clearTimeout(timer); timer = setTimeout(refresh, 250); }
  labels.addEventListener("input", soon);
  if (backend) backend.addEventListener("change", refresh);
  refresh();
})();
