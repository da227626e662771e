// Grid review: a page of items the model put in one class, best score first. Flag the wrong ones
// (click, or arrows + Space/X), Enter accepts the rest: a decision with that class for each
// unflagged item, a release for each flagged one (back to the one-at-a-time queue). Then the
// next page. No framework, no build step.
//
// Hooks for tests: #grid's data-state ("loading", "grid", "empty"), data-label, data-seq (+1 per
// page shown), data-busy ("true" while a page is being saved).
(function () {
  "use strict";
  const root = document.getElementById("grid");
  if (!root) return;

  const PARALLEL = 4;
  const RENEW_MS = 30000;
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const urls = root.dataset;
  const $ = function (id) { return document.getElementById(id); };
  const el = {
    select: $("gr-class"), loading: $("gr-loading"), loadingText: $("gr-loading-text"), retry: $("gr-retry"),
    empty: $("gr-empty"), emptyTitle: $("gr-empty-title"), emptyText: $("gr-empty-text"), main: $("gr-main"),
    title: $("gr-title"), tiles: $("gr-tiles"), label: $("gr-label"), counts: $("gr-counts"), progress: $("gr-progress"),
    bar: $("gr-bar"), progressText: $("gr-progress-text"), accept: $("gr-accept"), messages: $("messages"),
    remaining: $("remaining"), pace: $("pace"),
  };

  const post = LoupeReview.api(csrf);
  const url = LoupeReview.url;
  const errorText = LoupeReview.errorText;
  const say = LoupeReview.messages(el.messages, 8, 6000);
  let page = null; // {label, claims, flagged: Set<index>, done: Set<index>, shownAt}
  let cursor = 0;
  let busy = false;
  let seq = 0;
  let renewMs = RENEW_MS; // lease renewal period
  let loadId = 0;
  const flaggedIds = new Set(); // items flagged on this page's visit: not offered again here
  const onlyFlaggedLeft = new Set(); // classes whose remaining items were all flagged by this reviewer

  // --- Server --------------------------------------------------------------------------------

  function showStats(body) {
    if (!body) return;
    if (typeof body.remaining === "number") el.remaining.textContent = body.remaining;
    if (typeof body.pace_today === "number") el.pace.textContent = body.pace_today;
  }

  async function refreshStats() {
    try {
      const response = await fetch(urls.statsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) showStats(await response.json());
    } catch (err) { /* the next page's claim brings them too */ }
  }

  function setState(state) {
    root.dataset.state = state;
    el.loading.hidden = state !== "loading";
    el.loadingText.textContent = "Loading…";
    el.retry.hidden = true;
    el.empty.hidden = state !== "empty";
    el.main.hidden = state !== "grid";
  }

  function releaseAll(claims, keepalive) {
    return Promise.all(claims.map(function (claim) {
      return post(url(urls.releaseUrl, claim.lease.token), {}, { keepalive: keepalive }).catch(function () { return null; });
    }));
  }

  async function claimPage(label) {
    const body = { exclude: Array.from(flaggedIds) };
    if (label) body.label = label;
    const result = await post(urls.claimUrl, body);
    if (result.status === 204) return { claims: [], label: label };
    if (!result.ok) throw new Error(errorText(result));
    showStats(result.body);
    // Items flagged earlier on this visit were released and may come straight back: give them
    // back again and do not offer them here (they wait in the one-at-a-time queue).
    const again = result.body.claims.filter(function (c) { return flaggedIds.has(c.item.id); });
    if (again.length) releaseAll(again, false);
    return { label: result.body.label, claims: result.body.claims.filter(function (c) { return !flaggedIds.has(c.item.id); }),
             hadFlagged: again.length > 0 };
  }

  async function load() {
    const id = ++loadId;
    page = null;
    setState("loading");
    const chosen = el.select.value;
    let found = null;
    try {
      found = await claimPage(chosen);
      if (!chosen && found.hadFlagged && !found.claims.length) {
        // The busiest class holds only items flagged here: try the other classes in turn.
        onlyFlaggedLeft.add(found.label);
        for (const option of el.select.options) {
          if (!option.value || onlyFlaggedLeft.has(option.value)) continue;
          found = await claimPage(option.value);
          if (found.claims.length) break;
          if (found.hadFlagged) onlyFlaggedLeft.add(option.value);
        }
      }
    } catch (err) {
      if (id !== loadId) return;
      say("Could not load a page of items: " + (err.message || "network error (is the server running?)."), "error");
      el.loadingText.textContent = "Could not load a page of items.";
      el.retry.hidden = false;
      return;
    }
    if (id !== loadId) { releaseAll(found.claims, false); return; }
    if (!found.claims.length) {
      setState("empty");
      if (chosen) {
        el.emptyTitle.textContent = "Nothing waiting in " + chosen;
        el.emptyText.textContent = found.hadFlagged
          ? "Only items you flagged are left in this class: they wait in the one-at-a-time queue."
          : "No item the model put in this class waits for review. Pick another class above.";
      } else {
        el.emptyTitle.textContent = "Nothing left to review";
        el.emptyText.textContent = onlyFlaggedLeft.size
          ? "What is left are the items you flagged: review them one at a time."
          : "Every item waiting for a person in this project is decided (or a colleague holds it right now).";
      }
      return;
    }
    show(found.label, found.claims);
  }

  function show(label, claims) {
    for (const claim of claims) {
      const left = Date.parse(claim.lease.expires_at) - Date.now();
      if (left > 0) renewMs = Math.max(5000, Math.min(renewMs, left / 3));
    }
    page = { label: label, claims: claims, flagged: new Set(), done: new Set(), shownAt: performance.now() };
    cursor = 0;
    root.dataset.label = label;
    el.label.textContent = label;
    const strong = document.createElement("strong");
    strong.textContent = label;
    el.title.replaceChildren(strong, " · " + claims.length + " item" + (claims.length === 1 ? "" : "s") +
      " the model put in this class, best score first");
    el.tiles.replaceChildren.apply(el.tiles, claims.map(function (claim, index) {
      const tile = document.createElement("button");
      tile.type = "button";
      tile.className = "gr-tile";
      tile.dataset.index = index;
      tile.dataset.itemId = claim.item.id;
      tile.tabIndex = -1;
      const img = document.createElement("img");
      img.src = claim.item.image_url;
      img.alt = "item #" + claim.item.id;
      img.decoding = "async";
      const flag = document.createElement("span");
      flag.className = "gr-flag";
      flag.textContent = "✕ not " + label;
      const meta = document.createElement("span");
      meta.className = "gr-meta";
      const score = document.createElement("strong");
      const value = claim.item.decision ? claim.item.decision.top_score : null;
      score.textContent = value === null || value === undefined ? "–" : (100 * value).toFixed(0) + "%";
      const name = document.createElement("span");
      name.textContent = "#" + claim.item.id;
      meta.append(score, name);
      tile.append(img, flag, meta);
      return tile;
    }));
    setState("grid");
    seq += 1;
    root.dataset.seq = seq;
    renderMarks();
  }

  function tiles() { return el.tiles.querySelectorAll(".gr-tile"); }

  function renderMarks() {
    if (!page) return;
    tiles().forEach(function (tile, index) {
      tile.classList.toggle("cursor", index === cursor);
      tile.classList.toggle("flagged", page.flagged.has(index));
      tile.setAttribute("aria-pressed", page.flagged.has(index) ? "true" : "false");
    });
    const flagged = page.flagged.size;
    el.counts.textContent = (page.claims.length - flagged) + " to accept as " + page.label +
      (flagged ? " · " + flagged + " flagged" : "");
    const tile = tiles()[cursor];
    if (tile && tile.scrollIntoView) tile.scrollIntoView({ block: "nearest" });
  }

  function toggle(index) {
    if (!page || busy || index < 0 || index >= page.claims.length) return;
    if (page.flagged.has(index)) page.flagged.delete(index); else page.flagged.add(index);
    cursor = index;
    renderMarks();
  }

  function columns() {
    const all = tiles();
    if (!all.length) return 1;
    const top = all[0].offsetTop;
    let count = 0;
    for (const tile of all) { if (tile.offsetTop !== top) break; count += 1; }
    return Math.max(1, count);
  }

  function move(delta) {
    if (!page) return;
    cursor = Math.max(0, Math.min(page.claims.length - 1, cursor + delta));
    renderMarks();
  }

  // --- Accepting a page ----------------------------------------------------------------------

  async function accept() {
    if (!page || busy) return;
    busy = true;
    root.dataset.busy = "true";
    el.accept.disabled = el.select.disabled = true;
    const current = page;
    const n = current.claims.length;
    const seconds = Math.round((performance.now() - current.shownAt) / 100 / n) / 10;
    let finished = 0;
    let accepted = 0;
    let released = 0;
    const failures = [];
    el.progress.hidden = false;
    el.bar.max = n;
    el.bar.value = 0;
    el.progressText.textContent = "Saving 0 / " + n + "…";

    async function one(index) {
      const claim = current.claims[index];
      const tile = tiles()[index];
      const who = "Item #" + claim.item.id;
      try {
        if (current.flagged.has(index)) {
          const result = await post(url(urls.releaseUrl, claim.lease.token));
          flaggedIds.add(claim.item.id);
          if (result.ok) released += 1;
          else failures.push(who + " (flagged) was not handed back: " + errorText(result));
        } else {
          const result = await post(url(urls.decisionUrl, claim.lease.token), { labels: [current.label], seconds_spent: seconds });
          if (result.status === 201) accepted += 1;
          else {
            failures.push(who + " was not saved: " + errorText(result));
            if (tile) tile.classList.add("failed");
            if (result.status !== 409) post(url(urls.releaseUrl, claim.lease.token)).catch(function () {});
          }
        }
      } catch (err) {
        failures.push(who + " was not saved: network error.");
        if (tile) tile.classList.add("failed");
      }
      current.done.add(index);
      if (tile && !tile.classList.contains("failed")) tile.classList.add("done");
      finished += 1;
      el.bar.value = finished;
      el.progressText.textContent = "Saving " + finished + " / " + n + "…";
    }

    const queue = current.claims.map(function (_, index) { return index; });
    async function worker() { while (queue.length) await one(queue.shift()); }
    const workers = [];
    for (let i = 0; i < Math.min(PARALLEL, n); i += 1) workers.push(worker());
    await Promise.all(workers);

    el.progress.hidden = true;
    failures.forEach(function (text) { say(text, "error"); });
    say("Accepted " + accepted + " as " + current.label + (released ? "; " + released + " flagged went back to the one-at-a-time queue" : "") + ".", "info");
    busy = false;
    root.dataset.busy = "false";
    el.accept.disabled = el.select.disabled = false;
    refreshStats();
    load();
  }

  // --- Keys, clicks, class picker ------------------------------------------------------------

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (e.target && e.target.closest && e.target.closest("input, textarea, select, [contenteditable]")) return;
    if (!page || busy) return;
    const key = e.key;
    if (key === "ArrowRight") { e.preventDefault(); move(1); }
    else if (key === "ArrowLeft") { e.preventDefault(); move(-1); }
    else if (key === "ArrowDown") { e.preventDefault(); move(columns()); }
    else if (key === "ArrowUp") { e.preventDefault(); move(-columns()); }
    else if (key === " " || key === "x" || key === "X") { e.preventDefault(); if (!e.repeat) toggle(cursor); }
    else if (key === "Enter") {
      if (e.target && e.target.closest && e.target.closest("a, button:not(.gr-tile)")) return;
      e.preventDefault();
      if (!e.repeat) accept();
    }
  });

  document.addEventListener("click", function (e) {
    const tile = e.target.closest(".gr-tile");
    if (tile) { tile.blur(); toggle(Number(tile.dataset.index)); return; }
    const action = e.target.closest("[data-action]");
    if (!action) return;
    action.blur();
    if (action.dataset.action === "accept") accept();
    else if (action.dataset.action === "reload") { onlyFlaggedLeft.clear(); load(); }
  });

  el.select.addEventListener("change", function () {
    el.select.blur(); // arrow keys move the cursor again
    onlyFlaggedLeft.clear();
    if (page && !busy) releaseAll(page.claims, false);
    load();
  });

  // --- Leases --------------------------------------------------------------------------------

  function held() {
    if (!page) return [];
    return page.claims.filter(function (_, index) { return !page.done.has(index); });
  }

  // Every 30 s, or a third of the lease when the project's leases are shorter.
  let renewedAt = Date.now();
  let renewing = false;
  setInterval(function () {
    if (renewing || Date.now() - renewedAt < renewMs) return;
    renewing = true;
    renewedAt = Date.now();
    renew().finally(function () { renewing = false; });
  }, 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) renew(); });

  async function renew() {
    const claims = held();
    if (!claims.length || busy) return;
    try {
      const result = await post(urls.renewUrl, { tokens: claims.map(function (c) { return c.lease.token; }) });
      if (!result.ok) { say("Could not renew your hold on this page: " + errorText(result), "error"); return; }
      const lost = new Set((result.body && result.body.lost) || []);
      if (lost.size) {
        say(lost.size + " item(s) on this page are no longer held for you (the lease ran out or a colleague has them); " +
            "accepting will not store them.", "error");
        tiles().forEach(function (tile, index) {
          if (page && lost.has(page.claims[index].lease.token)) tile.classList.add("failed");
        });
      }
    } catch (err) {
      say("Could not renew your hold on this page (network error); retrying soon.", "error");
    }
  }

  window.addEventListener("pagehide", function () { if (!busy) releaseAll(held(), true); });
  window.addEventListener("pageshow", function (e) { if (e.persisted) location.reload(); });

  load();
})();
