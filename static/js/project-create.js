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

// Example pictures per class (local backend): one file input per typed class name. With pictures
// chosen, the form is sent as JSON-answering fetch, then every picture goes to its class's
// exemplar API one request at a time (the same checks as any upload; each added exemplar lets the
// server start the first model once every class has 3), then on to the project page. A refused
// picture is listed with the reason and the page waits for a click instead.
(function () {
  "use strict";
  const form = document.getElementById("project-form");
  const box = document.getElementById("exemplars");
  const inputs = document.getElementById("exemplar-inputs");
  const labels = document.getElementById("id_labels");
  const backend = document.getElementById("id_backend");
  const progress = document.getElementById("create-progress");
  if (!form || !box || !inputs || !labels) return;
  const rows = new Map();

  function names() {
    const seen = new Set();
    return labels.value.split(",").map(function (n) { return n.trim(); })
      .filter(function (n) { if (!n || n.toLowerCase() === "unknown" || seen.has(n)) return false; seen.add(n); return true; });
  }

  function rebuild() {
    const local = !backend || backend.value === "local";
    const wanted = local ? names() : [];
    box.hidden = !wanted.length;
    rows.forEach(function (row, name) { if (!wanted.includes(name)) { row.remove(); rows.delete(name); } });
    wanted.forEach(function (name) {
      let row = rows.get(name);
      if (!row) {
        row = document.createElement("label");
        row.className = "exemplar-row";
        const title = document.createElement("span");
        title.textContent = "Examples of " + name + " ";
        const input = document.createElement("input");
        input.type = "file";
        input.multiple = true;
        input.accept = "image/*";
        input.dataset.label = name;
        row.append(title, input);
        rows.set(name, row);
      }
      inputs.appendChild(row); // keeps the typed order; a chosen file list survives retyping
    });
  }

  function say(text, kind) {
    const li = document.createElement("li");
    li.className = kind || "info";
    li.textContent = text;
    progress.appendChild(li);
  }

  async function send(url, file) {
    const body = new FormData();
    body.append("image", file);
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    try {
      const response = await fetch(url, { method: "POST", credentials: "same-origin", body: body,
                                           headers: { "X-CSRFToken": token, Accept: "application/json" } });
      if (response.status === 201) return "";
      let data = null;
      try { data = await response.json(); } catch (err) { data = null; }
      return (data && data.error) || "The server answered HTTP " + response.status + ".";
    } catch (err) {
      return "Network error.";
    }
  }

  form.addEventListener("submit", async function (event) {
    const chosen = [];
    rows.forEach(function (row, name) {
      Array.from(row.querySelector("input").files).forEach(function (file) { chosen.push([name, file]); });
    });
    if (!chosen.length || box.hidden) return; // nothing to upload: the plain form post
    event.preventDefault();
    progress.replaceChildren();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    let created;
    try {
      const response = await fetch(form.action || window.location.href, {
        method: "POST", credentials: "same-origin", body: new FormData(form), headers: { Accept: "application/json" } });
      created = await response.json();
      if (response.status !== 201) {
        Object.entries(created.errors || {}).forEach(function ([field, errors]) {
          errors.forEach(function (error) { say((field === "__all__" ? "" : field + ": ") + error, "error"); });
        });
        button.disabled = false;
        return;
      }
    } catch (err) {
      say("The project could not be created (network error). Try again.", "error");
      button.disabled = false;
      return;
    }
    let refused = 0;
    for (let i = 0; i < chosen.length; i++) {
      const [name, file] = chosen[i];
      const url = created.exemplar_urls[name];
      const problem = url ? await send(url, file) : "No such class.";
      if (problem) { refused++; say(name + " / " + file.name + ": not added. " + problem, "error"); }
      else say("Example " + (i + 1) + " of " + chosen.length + " added to " + name + ".", "info");
    }
    if (!refused) { window.location.href = created.url; return; }
    const link = document.createElement("a");
    link.href = created.url;
    link.textContent = "Go to the project";
    const li = document.createElement("li");
    li.append("Project created; " + (chosen.length - refused) + " of " + chosen.length + " pictures added. ", link);
    progress.appendChild(li);
  });

  labels.addEventListener("input", rebuild);
  if (backend) backend.addEventListener("change", rebuild);
  rebuild();
})();
