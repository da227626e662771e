// Review screen, one item at a time, keyboard first. No framework, no build step.
//
// The next items are claimed ahead (a small buffer of leases) and their images decoded before
// they are needed, so a keypress shows the next item at once; the decision is POSTed in the
// background, one request after the other (so an undo always follows the decisions before it).
// A failed save is shown in the message bar, never swallowed; an item whose lease is still ours
// comes back to be decided again.
//
// Hooks for tests and bench/review_ui.py: #review's data-state ("loading", "item", "empty"),
// data-item-id, data-seq (+1 per item shown) and data-pending (saves in flight); the document
// event "loupe:shown" (detail: itemId, seq, keyAt = timeStamp of the key that led to it or
// null, prefetched = whether it came from the buffer, paintedAt and intermediate times), fired
// once the new image is decoded and a frame showing it has been painted; window.__loupeShown
// is called with the same detail when it is a function.
(function () {
  "use strict";
  const root = document.getElementById("review");
  if (!root) return;

  const BUFFER = 2; // items claimed ahead of the one shown
  const RENEW_MS = 30000;
  const EMPTY_RETRY_MS = 10000; // after a 204, how long before a refill asks again
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const multi = root.dataset.multiLabel === "true";
  const urls = root.dataset;
  const $ = function (id) { return document.getElementById(id); };
  const el = {
    loading: $("rv-loading"), loadingText: $("rv-loading-text"), retry: $("rv-retry"), empty: $("rv-empty"),
    main: $("rv-main"), stage: $("rv-stage"),
    caption: $("rv-caption"), itemLink: $("rv-item-link"), reason: $("rv-reason"), scores: $("rv-scores"),
    version: $("rv-version"), cands: $("rv-cands"), selected: $("rv-selected"), mode: $("rv-mode"),
    acceptName: $("rv-accept-name"), messages: $("messages"), remaining: $("remaining"), pace: $("pace"),
    search: $("rv-search"), searchInput: $("rv-search-input"), results: $("rv-results"), help: $("rv-help"),
    hidden: $("rv-hidden"),
  };

  const post = LoupeReview.api(csrf);
  const url = LoupeReview.url;
  const errorText = LoupeReview.errorText;
  const say = LoupeReview.messages(el.messages, 5, 5000);
  let current = null; // the claim shown: {lease, item, candidates, unknown, labels, multi_label}
  let shownAt = 0;
  let buffer = [];
  let filling = false;
  let emptyAt = -Infinity; // performance.now() of the last 204
  let waitingForItem = false;
  const toggled = new Set(); // multi-label: the names toggled on the shown item
  let seq = 0;
  let renewMs = RENEW_MS; // lease renewal period
  let lastKeyAt = null;
  let viaLoading = false; // the item shown next had to be fetched (the buffer was empty)
  let pending = 0;
  let chain = Promise.resolve(); // saves, one after the other
  let statsTimer = 0;
  let searchMatches = [];
  let searchIndex = 0;
  const thumbs = new Map(); // url -> Image, keeps exemplar thumbnails loaded
  // Class name -> {urls, at}: the newest exemplar list the server sent for each class (claims
  // fetched ahead carry the lists of when they were fetched; a later claim, or a label given
  // here, makes them fresher) and which fetch it came from.
  const exemplarsOf = new Map();
  let fetches = 0;

  // --- Server --------------------------------------------------------------------------------

  function claimsOf(body) {
    if (!body) return [];
    if (Array.isArray(body.claims)) return body.claims;
    return body.lease ? [body] : [];
  }

  function showStats(body) {
    if (!body) return;
    if (typeof body.remaining === "number") el.remaining.textContent = body.remaining;
    if (typeof body.pace_today === "number") el.pace.textContent = body.pace_today;
    if (body.hidden) explainHidden(body.hidden);
  }

  // Why "Nothing left to review" while the header still counts items: the ones this reviewer
  // skipped in the last hour, the ones colleagues hold, the ones waiting for other reviewers.
  function explainHidden(hidden) {
    const parts = [];
    if (hidden.skipped) {
      const back = hidden.skipped_back_at ? new Date(hidden.skipped_back_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
      parts.push(plural(hidden.skipped, "item you skipped is", "items you skipped are") + " hidden from you for an hour" +
        (back ? " (back at " + back + ")" : "") + "; Undo (Z) brings back your last skip now.");
    }
    if (hidden.held) parts.push(plural(hidden.held, "item is", "items are") + " being reviewed by a colleague right now.");
    if (hidden.awaiting_others) parts.push(plural(hidden.awaiting_others, "item you decided waits", "items you decided wait") + " for another reviewer's independent decision.");
    el.hidden.textContent = parts.join(" ");
    el.hidden.hidden = !parts.length;
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function bump(span, delta) {
    const value = parseInt(span.textContent, 10);
    if (!isNaN(value)) span.textContent = Math.max(0, value + delta);
  }

  function refreshStatsSoon() {
    clearTimeout(statsTimer);
    statsTimer = setTimeout(async function () {
      if (pending) return; // the last save to finish asks again
      try {
        const response = await fetch(urls.statsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.ok) showStats(await response.json());
      } catch (err) { /* the counters are refreshed by the next claim */ }
    }, 400);
  }

  function itemName(claim) { return "Item #" + claim.item.id + (claim.item.filename ? " (" + claim.item.filename + ")" : ""); }

  // --- Claiming and preloading ---------------------------------------------------------------

  function noteExemplars(name, urls, auto, at) {
    const known = exemplarsOf.get(name);
    if (!known || known.at <= at) exemplarsOf.set(name, { urls: urls.slice(), auto: Boolean(auto), at: at });
  }

  function freshExemplars(candidate) {
    const known = exemplarsOf.get(candidate.label);
    return known || { urls: candidate.exemplars || [], auto: Boolean(candidate.exemplars_auto) };
  }

  // After a label is saved here: the item is one of its class's latest human-labelled items, the
  // pictures the server shows when a class has fewer than four exemplars (and instead of the
  // auto-accepted stand-ins, which are shown only while nobody has labelled the class).
  function addLabelled(name, imageUrl) {
    const known = exemplarsOf.get(name);
    if (!known) return;
    if (known.auto) { known.urls = []; known.auto = false; }
    if (known.urls.length >= 4 || known.urls.includes(imageUrl)) return;
    known.urls.push(imageUrl);
    // The item on screen was shown before this save finished: show it the new picture too.
    if (current && current.candidates.some(function (c) { return c.label === name; })) renderCandidates(current);
  }

  function prepare(claim, at) {
    noteLease(claim);
    for (const candidate of claim.candidates) noteExemplars(candidate.label, candidate.exemplars || [], candidate.exemplars_auto, at || 0);
    const img = new Image();
    img.decoding = "async";
    img.alt = "item #" + claim.item.id;
    img.dataset.itemId = claim.item.id;
    img.src = claim.item.image_url;
    claim.img = img;
    claim.ready = img.decode().catch(function () { /* a broken image still shows its alt text */ });
    for (const candidate of claim.candidates) {
      for (const src of candidate.exemplars.slice(0, 4)) {
        if (thumbs.has(src)) continue;
        const thumb = new Image();
        thumb.src = src;
        thumbs.set(src, thumb);
        if (thumbs.size > 400) thumbs.delete(thumbs.keys().next().value);
      }
    }
    return claim;
  }

  async function fill() {
    const wanted = BUFFER - buffer.length + (current ? 0 : 1);
    if (filling || wanted <= 0) return;
    if (current && performance.now() - emptyAt < EMPTY_RETRY_MS) return;
    filling = true;
    let failed = false;
    try {
      const at = ++fetches;
      const result = await post(urls.claimUrl + "?count=" + wanted);
      if (result.status === 204) {
        emptyAt = performance.now();
      } else if (result.ok) {
        showStats(result.body);
        claimsOf(result.body).forEach(function (claim) { buffer.push(prepare(claim, at)); });
      } else {
        failed = true;
        say("Could not fetch the next items: " + errorText(result), "error");
      }
    } catch (err) {
      failed = true;
      say("Could not fetch the next items: network error (is the server running?).", "error");
    } finally {
      filling = false;
    }
    if (waitingForItem) {
      if (buffer.length) showNext();
      else if (failed) { el.loadingText.textContent = "Could not load the next item."; el.retry.hidden = false; }
      else setState("empty");
    }
  }

  // --- Showing -------------------------------------------------------------------------------

  function setState(state) {
    root.dataset.state = state;
    el.loading.hidden = state !== "loading";
    el.loadingText.textContent = "Loading…";
    el.retry.hidden = true;
    el.empty.hidden = state !== "empty";
    el.main.hidden = state !== "item";
    if (state !== "item") { current = null; delete root.dataset.itemId; }
    if (state === "empty") refreshStatsSoon(); // what is hidden, and why, as of now
    waitingForItem = state === "loading";
    if (waitingForItem) viaLoading = true;
  }

  function showNext() {
    if (buffer.length) {
      show(buffer.shift());
      afterPaint().then(fill);
    } else {
      setState("loading");
      fill();
    }
  }

  function percent(score) {
    return score === null || score === undefined ? "–" : (100 * score).toFixed(score >= 0.995 || score < 0.1 ? 1 : 0) + "%";
  }

  function show(claim) {
    toggled.clear();
    setState("item");
    current = claim;
    const item = claim.item;
    root.dataset.itemId = item.id;
    el.stage.classList.remove("zoomed");
    el.stage.replaceChildren(claim.img);
    el.caption.textContent = "#" + item.id + (item.filename ? " · " + item.filename : "") + " · " + item.width + "×" + item.height;
    el.itemLink.href = item.page_url;
    renderModel(claim);
    renderCandidates(claim);
    shownAt = performance.now();
    seq += 1;
    root.dataset.seq = seq;
    const detail = { itemId: item.id, seq: seq, keyAt: lastKeyAt, prefetched: !viaLoading };
    lastKeyAt = null;
    viaLoading = false;
    detail.renderedAt = performance.now();
    claim.ready.then(function () {
      detail.readyAt = performance.now();
      requestAnimationFrame(function () {
        detail.frameAt = performance.now();
        setTimeout(function () { // after the frame that shows the image was painted
          if (detail.seq !== seq) return;
          detail.paintedAt = performance.now();
          document.dispatchEvent(new CustomEvent("loupe:shown", { detail: detail }));
          if (typeof window.__loupeShown === "function") window.__loupeShown(detail);
        }, 0);
      });
    });
  }

  function renderModel(claim) {
    const item = claim.item;
    el.reason.textContent = item.status_reason || "";
    el.reason.hidden = !item.status_reason;
    const rows = Object.entries(item.scores || {}).sort(function (a, b) { return b[1] - a[1]; });
    const unknownName = claim.unknown && claim.unknown.label;
    el.scores.replaceChildren.apply(el.scores, rows.map(function (pair) {
      const tr = document.createElement("tr");
      if (pair[0] === unknownName) tr.className = "rv-unknown";
      const name = document.createElement("th");
      name.textContent = pair[0];
      const barCell = document.createElement("td");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(0, Math.min(100, 100 * pair[1])).toFixed(1) + "%";
      barCell.appendChild(bar);
      const num = document.createElement("td");
      num.className = "num";
      num.textContent = percent(pair[1]);
      tr.append(name, barCell, num);
      return tr;
    }));
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td class="muted">No scores for this item.</td>';
      el.scores.appendChild(tr);
    }
    const decision = item.decision;
    el.version.textContent = decision ? "Model: " + decision.backend + " · " + decision.model_version : "";
  }

  function candidateRow(key, name, score, pictures, extraClass) {
    const exemplars = pictures.urls;
    const li = document.createElement("li");
    li.className = "rv-cand" + (extraClass ? " " + extraClass : "");
    li.dataset.key = key || "";
    li.dataset.label = name;
    li.setAttribute("role", "button");
    li.title = (multi && key !== "0" ? "Toggle " : "Pick ") + name + (key ? " (key " + key + ")" : " (no number key: find it with /)");
    const kbd = document.createElement("kbd");
    kbd.textContent = key || "·";
    if (!key) kbd.className = "rv-nokey";
    const label = document.createElement("span");
    label.className = "rv-cand-name";
    label.textContent = name;
    const value = document.createElement("span");
    value.className = "rv-cand-score";
    value.textContent = percent(score);
    const meter = document.createElement("span");
    meter.className = "rv-meter";
    const fillBar = document.createElement("span");
    fillBar.style.width = Math.max(0, Math.min(100, 100 * (score || 0))).toFixed(1) + "%";
    meter.appendChild(fillBar);
    const text = document.createElement("span");
    text.className = "rv-cand-text";
    text.append(label, meter);
    li.append(kbd, text, value);
    if (exemplars.length) {
      const pics = document.createElement("span");
      pics.className = "rv-exemplars" + (pictures.auto ? " rv-auto" : "");
      for (const src of exemplars.slice(0, 4)) {
        const img = document.createElement("img");
        img.src = src;
        img.alt = (pictures.auto ? "auto-accepted item shown as an example of " : "example of ") + name;
        img.title = pictures.auto ? "Auto-accepted with a high score, not checked by a person (no one has labelled " + name + " yet). Click to enlarge" : "Click to enlarge";
        img.loading = "eager";
        img.dataset.enlarge = src;
        pics.appendChild(img);
      }
      li.appendChild(pics);
    }
    return li;
  }

  // The class Enter accepts: the model's highest score, unknown included.
  function topName(claim) {
    if (claim.top) return claim.top;
    const first = claim.candidates[0];
    return first ? first.label : (claim.unknown ? claim.unknown.label : null);
  }

  // Listed by score, unknown included; each class shows its own key, the same on every item.
  function renderCandidates(claim) {
    const top = topName(claim);
    const entries = claim.candidates.map(function (c) {
      return { key: c.key ? String(c.key) : "", label: c.label, score: c.score, pictures: freshExemplars(c), unknown: false };
    });
    if (claim.unknown) entries.push({ key: "0", label: claim.unknown.label, score: claim.unknown.score, pictures: { urls: [], auto: false }, unknown: true });
    entries.sort(function (a, b) { return (b.score || 0) - (a.score || 0); });
    const rows = entries.map(function (c) {
      const classes = (c.unknown ? "rv-unknown" : "") + (c.label === top ? " rv-top" : "");
      return candidateRow(c.key, c.label, c.score, c.pictures, classes.trim());
    });
    el.cands.replaceChildren.apply(el.cands, rows);
    if (el.acceptName) el.acceptName.textContent = top || "";
    el.mode.textContent = multi ? "several may apply: toggle, then Enter" : "";
    renderToggles();
  }

  function renderToggles() {
    el.cands.querySelectorAll(".rv-cand").forEach(function (li) {
      li.classList.toggle("on", toggled.has(li.dataset.label));
    });
    if (!multi) return;
    el.selected.hidden = toggled.size === 0;
    el.selected.textContent = toggled.size ? "Selected: " + Array.from(toggled).join(", ") + " · Enter confirms, Esc clears" : "";
  }

  // --- Acting --------------------------------------------------------------------------------

  // Background work waits until the next item is on screen, so it never competes with that
  // frame (a hidden tab runs no animation frames: then it waits 100 ms at most).
  const waiting = new Set(); // resolvers of afterPaint() promises, run at once when leaving
  let leaving = false;
  function afterPaint() {
    if (leaving) return Promise.resolve();
    return new Promise(function (resolve) {
      function done() { clearTimeout(timer); waiting.delete(done); resolve(); }
      const timer = setTimeout(done, 100);
      waiting.add(done);
      requestAnimationFrame(function () { setTimeout(done, 0); });
    });
  }

  function save(job) {
    pending += 1;
    root.dataset.pending = pending;
    chain = chain.then(afterPaint).then(job).catch(function (err) {
      say("Unexpected error: " + err, "error");
    }).finally(function () {
      pending -= 1;
      root.dataset.pending = pending;
      if (!pending) refreshStatsSoon();
    });
    return chain;
  }

  function putBack(claim) {
    // The lease is still ours: decide this item again, next.
    if (current) buffer.unshift(claim);
    else show(claim);
  }

  function decide(names) {
    if (!current || !names.length) return;
    const claim = current;
    const seconds = Math.round((performance.now() - shownAt) / 100) / 10;
    showNext();
    save(async function () {
      let result;
      try {
        result = await post(url(urls.decisionUrl, claim.lease.token), { labels: names, seconds_spent: seconds }, { keepalive: true });
      } catch (err) {
        say(itemName(claim) + " was not saved: network error. It comes up again next.", "error");
        putBack(claim);
        return;
      }
      if (result.status === 201) {
        bump(el.pace, 1);
        if (names.length === 1 && result.body && result.body.status === "reviewed") addLabelled(names[0], claim.item.image_url);
        if (result.body && result.body.status !== "needs_review") bump(el.remaining, -1);
      } else if (result.status === 409) {
        say(itemName(claim) + " was not saved: " + errorText(result), "error"); // not ours any more
      } else {
        say(itemName(claim) + " was not saved: " + errorText(result) + " It comes up again next.", "error");
        putBack(claim);
      }
    });
  }

  function skip() {
    if (!current) return;
    const claim = current;
    showNext();
    save(async function () {
      try {
        const result = await post(url(urls.skipUrl, claim.lease.token), {}, { keepalive: true });
        if (!result.ok) say(itemName(claim) + " was not skipped: " + errorText(result), "error");
      } catch (err) {
        say(itemName(claim) + " was not skipped: network error. Its lease runs out by itself.", "error");
      }
    });
  }

  function undo() {
    say("Undoing your last decision…", "info");
    save(async function () {
      let result;
      try {
        result = await post(urls.undoUrl);
      } catch (err) {
        say("Undo failed: network error.", "error");
        return;
      }
      if (!result.ok) {
        say("Undo failed: " + errorText(result), "error");
        return;
      }
      showStats(result.body);
      if (current) buffer.unshift(current);
      const claim = prepare(result.body, ++fetches);
      show(claim);
      say(itemName(claim) + " is back: decide again.", "info");
    });
  }

  function accept() {
    if (!current) return;
    if (multi && toggled.size) { decide(Array.from(toggled)); return; }
    const top = topName(current);
    if (top) decide([top]);
  }

  // A number key means the same class on every item of the project (its place in the class list).
  function pickKey(key) {
    if (!current) return;
    const label = (current.labels || []).find(function (l) { return l.key !== null && String(l.key) === key; });
    if (label) pickName(label.name);
    else say("No class has key " + key + " in this project. Press / to find any class.", "info");
  }

  function pickName(name) {
    if (!current) return;
    const unknown = current.unknown && current.unknown.label;
    if (!multi || name === unknown) { decide([name]); return; }
    if (toggled.has(name)) toggled.delete(name); else toggled.add(name);
    renderToggles();
  }

  // --- Search over all classes ---------------------------------------------------------------

  function openSearch() {
    if (!current) return;
    el.search.hidden = false;
    el.searchInput.value = "";
    renderSearch();
    el.searchInput.focus();
  }

  function closeSearch() {
    el.search.hidden = true;
    el.searchInput.blur();
  }

  function renderSearch() {
    const query = el.searchInput.value.trim().toLowerCase();
    const labels = current ? current.labels : [];
    const scores = (current && current.item.scores) || {};
    searchMatches = labels.filter(function (label) { return label.name.toLowerCase().includes(query); })
      .sort(function (a, b) {
        const pa = a.name.toLowerCase().startsWith(query) ? 0 : 1;
        const pb = b.name.toLowerCase().startsWith(query) ? 0 : 1;
        return pa - pb || (scores[b.name] || 0) - (scores[a.name] || 0) || a.name.localeCompare(b.name);
      });
    searchIndex = Math.min(searchIndex, Math.max(0, searchMatches.length - 1));
    if (!query) searchIndex = 0;
    el.results.replaceChildren.apply(el.results, searchMatches.map(function (label, index) {
      const li = document.createElement("li");
      li.dataset.label = label.name;
      li.className = index === searchIndex ? "active" : "";
      if (toggled.has(label.name)) li.classList.add("on");
      const name = document.createElement("span");
      name.textContent = label.name;
      const score = document.createElement("span");
      score.className = "muted";
      score.textContent = percent(scores[label.name]);
      li.append(name, score);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); closeSearch(); pickName(label.name); });
      return li;
    }));
    if (!searchMatches.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No class matches.";
      el.results.appendChild(li);
    }
  }

  el.searchInput.addEventListener("input", function () { searchIndex = 0; renderSearch(); });
  el.searchInput.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { e.preventDefault(); closeSearch(); }
    else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!searchMatches.length) return;
      searchIndex = (searchIndex + (e.key === "ArrowDown" ? 1 : -1) + searchMatches.length) % searchMatches.length;
      renderSearch();
    } else if (e.key === "Enter") {
      e.preventDefault();
      const match = searchMatches[searchIndex];
      if (!match) return;
      lastKeyAt = e.timeStamp;
      closeSearch();
      pickName(match.name);
    }
  });
  el.search.addEventListener("mousedown", function (e) { if (e.target === el.search) closeSearch(); });

  // --- Help ----------------------------------------------------------------------------------

  function toggleHelp(open) { el.help.hidden = open === undefined ? !el.help.hidden : !open; }
  el.help.addEventListener("mousedown", function (e) { if (e.target === el.help) toggleHelp(false); });

  // --- Keys and clicks -----------------------------------------------------------------------

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const target = e.target;
    if (target && target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    if (!el.search.hidden) { // focus left the search box (a click in the dialog)
      if (e.key === "Escape") closeSearch(); else el.searchInput.focus();
      return;
    }
    if (!el.help.hidden) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    const key = e.key;
    if (key === "?") { e.preventDefault(); toggleHelp(true); return; }
    if ((key === "z" || key === "Z") && !e.repeat) { e.preventDefault(); undo(); return; }
    if (key === "Escape") {
      if (toggled.size) { toggled.clear(); renderToggles(); }
      el.stage.classList.remove("zoomed");
      return;
    }
    if (!current || e.repeat) return; // holding a key down must not decide a run of items
    if (key >= "0" && key <= "9" && key.length === 1) { e.preventDefault(); lastKeyAt = e.timeStamp; pickKey(key); }
    else if (key === "Enter") {
      if (target && target.closest && target.closest("button, a")) return; // the focused control acts
      e.preventDefault(); lastKeyAt = e.timeStamp; accept();
    } else if (key === "s" || key === "S") { e.preventDefault(); lastKeyAt = e.timeStamp; skip(); }
    else if (key === "/") { e.preventDefault(); openSearch(); }
  });

  document.addEventListener("click", function (e) {
    const action = e.target.closest("[data-action]");
    if (action) {
      action.blur(); // so Enter keeps meaning "accept", not "press this button again"
      const name = action.dataset.action;
      if (name === "accept") accept();
      else if (name === "unknown") pickKey("0");
      else if (name === "skip") skip();
      else if (name === "undo") undo();
      else if (name === "search") openSearch();
      else if (name === "help") toggleHelp();
      else if (name === "recheck") { emptyAt = -Infinity; setState("loading"); fill(); }
      return;
    }
    if (e.target.closest("[data-enlarge]")) return; // an exemplar: lightbox.js enlarges it
    const row = e.target.closest(".rv-cand");
    if (row && current) { pickName(row.dataset.label); return; }
    if (e.target.closest("#rv-stage")) el.stage.classList.toggle("zoomed");
  });

  // --- Leases --------------------------------------------------------------------------------

  function held() { return (current ? [current] : []).concat(buffer); }

  async function renew() {
    const claims = held();
    if (!claims.length) return;
    let result;
    try {
      result = await post(urls.renewUrl, { tokens: claims.map(function (c) { return c.lease.token; }) });
    } catch (err) {
      say("Could not renew your hold on the items (network error); retrying soon.", "error");
      return;
    }
    if (!result.ok) { say("Could not renew your hold on the items: " + errorText(result), "error"); return; }
    const lost = new Set((result.body && result.body.lost) || []);
    if (!lost.size) return;
    const dropped = buffer.filter(function (c) { return lost.has(c.lease.token); });
    buffer = buffer.filter(function (c) { return !lost.has(c.lease.token); });
    if (dropped.length) fill();
    if (current && lost.has(current.lease.token)) {
      say(itemName(current) + " is no longer held for you (the lease ran out or a colleague has it): a decision on it will not be stored. Press S to move on.", "error");
    }
  }
  // Every 30 s, or a third of the lease when the project's leases are shorter.
  function noteLease(claim) {
    const left = Date.parse(claim.lease.expires_at) - Date.now();
    if (left > 0) renewMs = Math.max(5000, Math.min(renewMs, left / 3));
  }
  let renewedAt = Date.now();
  let renewing = false;
  setInterval(function () {
    if (renewing || Date.now() - renewedAt < renewMs) return;
    renewing = true;
    renewedAt = Date.now();
    renew().finally(function () { renewing = false; });
  }, 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) renew(); }); // timers slept

  // Leaving the page: give the leases back at once instead of letting them run out. sendBeacon
  // cannot send the CSRF header; a keepalive fetch can, and outlives the page.
  window.addEventListener("pagehide", function () {
    leaving = true;
    Array.from(waiting).forEach(function (done) { done(); }); // a save waiting for a frame goes now
    for (const claim of held()) {
      post(url(urls.releaseUrl, claim.lease.token), {}, { keepalive: true }).catch(function () {});
    }
    buffer = [];
  });
  window.addEventListener("pageshow", function (e) { if (e.persisted) location.reload(); }); // leases were released

  setState("loading");
  fill();
})();
