// Upload page: many files at once (picker or drag and drop), a progress bar per file,
// and every item's status kept live by polling the JSON API. No framework, no build step.
(function () {
  "use strict";
  const section = document.getElementById("upload");
  if (!section) return;
  const uploadUrl = section.dataset.uploadUrl;
  const csrf = section.querySelector("input[name=csrfmiddlewaretoken]").value;
  const input = document.getElementById("file-input");
  const zone = document.getElementById("dropzone");
  const uploads = document.getElementById("uploads");
  const itemsTable = document.getElementById("items");
  const TERMINAL = new Set(["auto_accepted", "needs_review", "reviewed", "rejected", "failed"]);
  const PARALLEL = 3;
  const pending = [];
  const watched = new Map(); // item id -> [row, ...] whose status cells follow that item
  let active = 0;

  function cell(row, field) { return row.querySelector('[data-field="' + field + '"]'); }

  function showStatus(row, status, text, label, reason) {
    const badge = cell(row, "status");
    badge.className = "status status-" + status;
    badge.textContent = text;
    row.dataset.status = status;
    if (label !== undefined) cell(row, "label").textContent = label || "";
    if (reason !== undefined) cell(row, "reason").textContent = reason || "";
  }

  function addRow(file) {
    uploads.hidden = false;
    const row = document.createElement("tr");
    row.innerHTML = '<td class="filename"></td><td><progress max="100" value="0"></progress></td>' +
      '<td><span data-field="status" class="status status-uploading">Waiting</span></td>' +
      '<td data-field="label"></td><td class="reason" data-field="reason"></td>';
    row.querySelector(".filename").textContent = file.name;
    uploads.tBodies[0].appendChild(row);
    return row;
  }

  // Each file gets its own Idempotency-Key when it is chosen; a retry (network error, 5xx)
  // sends the same key, so the server answers with the first upload's item instead of a copy.
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function enqueue(files) {
    for (const file of files) pending.push({ file: file, row: addRow(file), key: newKey() });
    pump();
  }

  function pump() {
    while (active < PARALLEL && pending.length) {
      const job = pending.shift();
      active += 1;
      sendWithRetries(job).finally(function () { active -= 1; pump(); });
    }
  }

  const RETRIES = [1000, 2000, 4000, 8000];

  async function sendWithRetries(job) {
    for (let attempt = 0; ; attempt += 1) {
      const outcome = await send(job.file, job.row, job.key);
      if (outcome !== "retry") return;
      if (attempt >= RETRIES.length) {
        showStatus(job.row, "upload_error", "Upload failed", "", "The server did not answer; try again later.");
        return;
      }
      showStatus(job.row, "uploading", "Retrying", "", "Connection problem; retrying in " + RETRIES[attempt] / 1000 + " s.");
      await new Promise(function (resolve) { setTimeout(resolve, RETRIES[attempt]); });
    }
  }

  // Resolves "done" or "retry".
  function send(file, row, key) {
    return new Promise(function (resolve) {
      const xhr = new XMLHttpRequest();
      const bar = row.querySelector("progress");
      xhr.open("POST", uploadUrl);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Idempotency-Key", key);
      xhr.responseType = "json";
      showStatus(row, "uploading", "Uploading");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
      xhr.onload = function () {
        const body = xhr.response || {};
        if (xhr.status === 201) {
          bar.value = 100;
          if (!watched.has(body.id)) follow(body.id, addItemRow(body));
          follow(body.id, row);
          update(body);
        } else if (xhr.status >= 500 || xhr.status === 0) {
          resolve("retry");
          return;
        } else {
          showStatus(row, "upload_error", "Not accepted", "", body.error || ("HTTP " + xhr.status));
        }
        resolve("done");
      };
      xhr.onerror = function () { resolve("retry"); };
      const form = new FormData();
      form.append("image", file, shortName(file.name));
      xhr.send(form);
    });
  }

  // The server keeps at most 255 characters of a name, and refuses a multipart part whose headers
  // pass 1 KB: a very long name is shortened here (its extension kept) instead of refused there.
  function shortName(name) {
    if (name.length <= 180) return name;
    const dot = name.lastIndexOf(".");
    const ext = dot > 0 && name.length - dot <= 16 ? name.slice(dot) : "";
    return name.slice(0, 180 - ext.length) + ext;
  }

  // A new upload also joins the item list below, at the top.
  function addItemRow(item) {
    const body = itemsTable.tBodies[0];
    const empty = body.querySelector(".empty-row");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.innerHTML = '<td><a></a></td><td><img class="thumb" alt=""></td><td class="filename"></td>' +
      '<td><span data-field="status" class="status"></span></td><td data-field="label"></td>' +
      '<td class="reason" data-field="reason"></td>';
    const link = row.querySelector("a");
    link.href = item.page_url;
    link.textContent = "#" + item.id;
    row.querySelector("img").src = item.image_url;
    row.querySelector(".filename").textContent = item.filename;
    body.insertBefore(row, body.firstChild);
    return row;
  }

  // Every counter of a status: the tabs and the "Review (N)" button.
  function showCounts(counts) {
    for (const [status, count] of Object.entries(counts || {})) {
      document.querySelectorAll('[data-count="' + status + '"]').forEach(function (cell) { cell.textContent = count; });
    }
  }

  // "No worker has picked up work for 3 minutes": shown while the server says so.
  function showStall(text) {
    const banner = document.getElementById("stall-banner");
    if (!banner) return;
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  function follow(id, row) {
    row.dataset.itemId = id;
    if (!watched.has(id)) watched.set(id, []);
    watched.get(id).push(row);
  }

  function update(item) {
    for (const row of watched.get(item.id) || []) {
      const reason = item.status_reason || (item.decision && item.decision.reason) || "";
      const duplicate = item.duplicate_of ? "Duplicate of #" + item.duplicate_of + ". "
        : item.near_duplicate_of ? "Looks like #" + item.near_duplicate_of + ". " : "";
      showStatus(row, item.status, item.status_display, item.label, duplicate + reason);
    }
    if (TERMINAL.has(item.status)) watched.delete(item.id);
  }

  // Every second while items are moving; otherwise every IDLE_POLL_MS, for the counters alone
  // (colleagues review and upload too).
  const IDLE_POLL_MS = 10000;
  let idleSince = 0;
  async function poll() {
    const ids = Array.from(watched.keys());
    const now = Date.now();
    if (ids.length || now - idleSince >= IDLE_POLL_MS) {
      if (!ids.length) idleSince = now;
      const query = ids.length ? "?limit=500&ids=" + ids.join(",") : "?limit=1";
      try {
        const response = await fetch(itemsTable.dataset.pollUrl + query, { headers: { Accept: "application/json" } });
        if (response.ok) {
          const body = await response.json();
          if (ids.length) body.items.forEach(update);
          showCounts(body.counts);
          showStall(body.stall);
        }
      } catch (err) { /* the next poll tries again */ }
    }
    setTimeout(poll, 1000);
  }

  input.addEventListener("change", function () { enqueue(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) { enqueue(e.dataTransfer.files); });

  // Items already on the page that are still moving are followed too.
  itemsTable.querySelectorAll("tr[data-item-id]").forEach(function (row) {
    if (!TERMINAL.has(row.dataset.status)) follow(Number(row.dataset.itemId), row);
  });
  poll();
})();
