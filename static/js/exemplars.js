// Project page, "Classes, keys and exemplars": drop pictures on a class (or click to choose) to add
// them as its exemplars, one request per file through the same checks as any upload; a refused
// file says why under its class. × removes an exemplar. No framework, no build step.
(function () {
  "use strict";
  const list = document.querySelector("#classes .class-list");
  const token = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (!list || !token) return;
  const headers = { "X-CSRFToken": token.value, Accept: "application/json" };

  function note(card, text, kind) {
    const li = document.createElement("li");
    li.className = kind;
    li.textContent = text;
    card.querySelector(".pic-messages").appendChild(li);
    if (kind !== "error") setTimeout(function () { li.remove(); }, 4000);
  }

  function recount(card) {
    card.querySelector(".exemplar-count").textContent = card.querySelectorAll(".pic.exemplar").length;
  }

  function addFigure(card, exemplar, removeUrl) {
    const figure = document.createElement("figure");
    figure.className = "pic exemplar";
    figure.dataset.exemplarId = exemplar.id;
    const img = document.createElement("img");
    img.src = exemplar.image_url;
    img.dataset.enlarge = exemplar.image_url;
    img.alt = "exemplar of " + exemplar.label;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "pic-remove";
    remove.dataset.removeUrl = removeUrl;
    remove.setAttribute("aria-label", "Remove this exemplar");
    remove.title = "Remove this exemplar";
    remove.textContent = "×";
    figure.append(img, remove);
    const pics = card.querySelector(".class-pics");
    pics.querySelectorAll(".pic.stand-in").forEach(function (el) { el.remove(); }); // a real exemplar now
    pics.insertBefore(figure, pics.firstChild);
    recount(card);
  }

  async function upload(card, file) {
    const body = new FormData();
    body.append("image", file);
    let response, data = null;
    try {
      response = await fetch(card.dataset.uploadUrl, { method: "POST", credentials: "same-origin", headers: headers, body: body });
      try { data = await response.json(); } catch (err) { data = null; }
    } catch (err) {
      note(card, file.name + ": not added (network error).", "error");
      return;
    }
    if (response.status === 201 && data) {
      addFigure(card, data, list.dataset.removeUrl.replace(/\/0\/$/, "/" + data.id + "/"));
      note(card, file.name + ": added as an exemplar of " + card.dataset.label + ".", "info");
    } else {
      note(card, file.name + ": not added. " + ((data && data.error) || "The server answered HTTP " + response.status + "."), "error");
    }
  }

  async function uploadAll(card, files) {
    for (const file of Array.from(files)) await upload(card, file); // one at a time, in order
  }

  list.querySelectorAll(".class-card[data-upload-url]").forEach(function (card) {
    const drop = card.querySelector(".pic-drop");
    const input = drop.querySelector("input");
    input.addEventListener("change", function () { uploadAll(card, input.files); input.value = ""; });
    ["dragenter", "dragover"].forEach(function (name) {
      card.addEventListener(name, function (e) { e.preventDefault(); card.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      card.addEventListener(name, function (e) { e.preventDefault(); if (name === "drop" || !card.contains(e.relatedTarget)) card.classList.remove("over"); });
    });
    card.addEventListener("drop", function (e) { uploadAll(card, e.dataTransfer.files); });
  });

  list.addEventListener("click", async function (e) {
    const button = e.target.closest(".pic-remove");
    if (!button) return;
    const card = button.closest(".class-card");
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.removeUrl, { method: "DELETE", credentials: "same-origin", headers: headers });
      if (!response.ok) throw new Error("HTTP " + response.status);
      button.closest("figure").remove();
      recount(card);
    } catch (err) {
      button.disabled = false;
      note(card, "The exemplar was not removed (" + err.message + ").", "error");
    }
  });
})();
