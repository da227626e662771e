// Dashboard: each plot is its own request (an HTML fragment), loaded side by side.
(function () {
  "use strict";
  document.querySelectorAll("figure.plot[data-plot-url]").forEach(function (figure) {
    fetch(figure.dataset.plotUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("the server answered " + response.status); }
        return response.text();
      })
      .then(function (html) { figure.innerHTML = html; })
      .catch(function (error) {
        figure.innerHTML = "";
        var message = document.createElement("p");
        message.className = "error";
        message.textContent = "This plot could not be loaded (" + error.message + "). Reload the page to try again.";
        figure.appendChild(message);
      })
      .finally(function () { figure.setAttribute("aria-busy", "false"); figure.classList.add("loaded"); });
  });
})();
