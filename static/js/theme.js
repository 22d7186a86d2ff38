// Light or dark: follows the system setting until the reader picks one with the toggle.
const KEY = "switchboard:theme";
const root = document.documentElement;
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

function stored() {
  try {
    const value = localStorage.getItem(KEY);
    return value === "dark" || value === "light" ? value : null;
  } catch {
    return null;
  }
}

function apply() {
  const choice = stored();
  if (choice) root.dataset.theme = choice;
  else delete root.dataset.theme;
  const dark = choice ? choice === "dark" : systemDark.matches;
  const toggle = document.getElementById("theme-toggle");
  if (toggle) toggle.setAttribute("aria-pressed", String(dark));
}

function toggle() {
  const dark = root.dataset.theme ? root.dataset.theme === "dark" : systemDark.matches;
  const next = dark ? "light" : "dark";
  try {
    localStorage.setItem(KEY, next);
  } catch {
    // Without storage the choice lasts for this page only.
  }
  root.dataset.theme = next;
  document.getElementById("theme-toggle")?.setAttribute("aria-pressed", String(next === "dark"));
}

apply();
systemDark.addEventListener("change", apply);
document.getElementById("theme-toggle")?.addEventListener("click", toggle);
