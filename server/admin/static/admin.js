/* The admin panel's only script: confirmations, no double submits, and the dashboard's poll.
   No framework, no inline script (the Content-Security-Policy allows scripts from here only). */
(function () {
  "use strict";

  // Buttons with data-confirm ask first; a submitted form's buttons are disabled right after the
  // submit (after, so the clicked button's name/value is still sent) against double clicks.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var button = ev.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      ev.preventDefault();
      return;
    }
    setTimeout(function () {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    }, 0);
  });

  // Dashboard: fetch the figures every few seconds and replace the text of each [data-k] element.
  var dash = document.querySelector("[data-poll]");
  if (!dash) return;
  var url = dash.getAttribute("data-poll");
  var every = parseInt(dash.getAttribute("data-every"), 10) || 3000;
  var state = document.getElementById("poll-state");

  function apply(data) {
    var values = data.values || {};
    Object.keys(values).forEach(function (key) {
      dash.querySelectorAll('[data-k="' + key + '"]').forEach(function (el) {
        if (el.textContent !== values[key]) {
          el.textContent = values[key];
          el.classList.remove("changed");
          void el.offsetWidth; // restart the highlight animation
          el.classList.add("changed");
        }
      });
    });
    var alerts = data.alerts || {};
    Object.keys(alerts).forEach(function (key) {
      dash.querySelectorAll('[data-alert="' + key + '"]').forEach(function (el) {
        el.classList.toggle("alert", !!alerts[key]);
      });
    });
    var audit = dash.querySelector('[data-k="audit"]');
    if (audit) {
      audit.classList.toggle("good", data.audit_ok === true);
      audit.classList.toggle("bad", data.audit_ok === false);
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location = "/admin/login?next=/admin"; throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) { apply(data); if (state) state.textContent = ""; })
      .catch(function () { if (state) state.textContent = state.getAttribute("data-failed"); })
      .finally(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
