// Integrations page: keeps each running S3 import's progress bar and counts current.
(function () {
  "use strict";
  const POLL_MS = 2000;

  function render(box, job) {
    const bar = box.querySelector("progress");
    bar.max = Math.max(job.listed, 1);
    bar.value = job.processed;
    box.dataset.state = job.state;
    box.querySelector(".import-state").textContent = job.state_display;
    box.querySelector(".import-counts").textContent =
      job.processed + " of " + job.listed + (job.listing_done ? "" : "+") + ": " + job.imported + " imported, " +
      job.duplicates + " duplicates, " + job.skipped + " imported before, " + job.failed + " failed";
    box.querySelector(".import-error").textContent = job.error;
  }

  function poll(box) {
    if (box.dataset.state === "done") return;
    fetch(box.dataset.statusUrl, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (job) render(box, job);
        if (!job || job.state === "queued" || job.state === "running") setTimeout(function () { poll(box); }, POLL_MS);
      })
      .catch(function () { setTimeout(function () { poll(box); }, POLL_MS * 3); });
  }

  document.querySelectorAll(".import").forEach(function (box) {
    if (box.dataset.state === "queued" || box.dataset.state === "running") poll(box);
  });
})();
