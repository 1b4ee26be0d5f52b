// Theme before first paint. Loaded synchronously in <head> (a classic script, not a module, so
// it runs before the body is parsed; no inline script, so a strict CSP holds).
//
// <html data-theme> is always "light" or "dark": the choice stored in localStorage when there is
// one, else the system setting (prefers-color-scheme), followed live. The toggle stores a choice
// only while it differs from the system setting, so choosing what the system says returns to
// following it. Without JavaScript the CSS media query alone picks the theme.
(function () {
  "use strict";
  var KEY = "prompthub-theme";
  var root = document.documentElement;
  var system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function systemTheme() {
    return system && system.matches ? "dark" : "light";
  }
  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "dark" || value === "light" ? value : null;
    } catch (e) {
      return null; // storage disabled: follow the system
    }
  }
  function remember(theme) {
    try {
      if (theme === systemTheme()) window.localStorage.removeItem(KEY);
      else window.localStorage.setItem(KEY, theme);
    } catch (e) {
      /* not remembered, still applied */
    }
  }
  function current() {
    return stored() || systemTheme();
  }
  function apply() {
    var theme = current();
    root.setAttribute("data-theme", theme);
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("aria-pressed", theme === "dark" ? "true" : "false");
      button.title = theme === "dark" ? "Switch to light theme" : "Switch to dark theme";
    }
  }

  apply();
  if (system && system.addEventListener) system.addEventListener("change", apply);
  // Another tab changed the choice.
  window.addEventListener("storage", function (e) {
    if (e.key === KEY) apply();
  });
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.hidden = false; // useless without JavaScript, so the markup starts hidden
    apply();
    button.addEventListener("click", function () {
      remember(current() === "dark" ? "light" : "dark");
      apply();
    });
  });
})();
