// The console's one script: live re-validation of a record being corrected, and the keyboard.
// Values from the server go into the page as text (textContent), never as markup.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('input[name="ids"]').forEach((box) => { box.checked = all.checked; });
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.altKey && (e.key === "n" || e.key === "N")) { window.location = "/next"; e.preventDefault(); }
  });
  const form = document.getElementById("resolve");
  if (!form) return;
  const itemId = form.dataset.item;
  const inputs = Array.from(form.querySelectorAll('input[name^="field."]')).filter((i) => !i.readOnly);
  const live = document.getElementById("live");
  if (!inputs.length || !live) return;

  function nextFailing(input) {
    const start = inputs.indexOf(input);
    for (let k = 1; k < inputs.length; k++) {
      const candidate = inputs[(start + k) % inputs.length];
      if (candidate.closest("tr").classList.contains("failing")) return candidate;
    }
    return null;
  }

  let pending = null;
  async function check() {
    const set = {};
    inputs.forEach((i) => { if (i.value !== i.defaultValue) set[i.name.slice(6)] = i.value; });
    const response = await fetch(`/api/items/${itemId}/check`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ set }), credentials: "same-origin",
    });
    if (!response.ok) { live.textContent = `could not check the record (${response.status})`; return; }
    const result = await response.json();
    const byField = {};
    result.failures.forEach((f) => { (byField[f.field] = byField[f.field] || []).push(f); });
    form.querySelectorAll("td.checks").forEach((cell) => {
      const failures = byField[cell.dataset.checksFor] || [];
      cell.replaceChildren(...failures.map((f) => {
        const div = document.createElement("div");
        div.textContent = `${f.reason} (${f.check})`;
        return div;
      }));
      cell.classList.toggle("ok", failures.length === 0);
      cell.closest("tr").classList.toggle("failing", failures.length > 0);
    });
    live.textContent = result.passes ? "The record passes every check." :
      `${result.failures.length} check(s) still fail: ` + result.failures.map((f) => `${f.field}: ${f.reason}`).join("; ");
  }
  function schedule() { clearTimeout(pending); pending = setTimeout(check, 250); }

  inputs.forEach((input) => {
    input.addEventListener("input", schedule);
    input.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.ctrlKey || e.metaKey) return;  // Ctrl+Enter: the page's shortcut below
      e.preventDefault();
      clearTimeout(pending);
      check().then(() => { (nextFailing(input) || document.getElementById("approve")).focus(); });
    });
  });
  // Ctrl+Enter approves, Ctrl+Shift+Enter rejects, wherever the focus is on the page
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
    e.preventDefault();
    document.getElementById(e.shiftKey ? "reject" : "approve").click();
  });
  document.getElementById("reason")?.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); document.getElementById("reject").click(); }
  });
  const first = inputs.find((i) => i.closest("tr").classList.contains("failing")) || inputs[0];
  first.focus();
  // a value typed before this script ran (a slow load), or put back by the browser (Back), is checked now
  if (inputs.some((i) => i.value !== i.defaultValue)) schedule();
})();
