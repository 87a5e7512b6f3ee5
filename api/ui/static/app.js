// nurture web view: confirmations for the few writes, and the map refreshing itself.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
const live = document.querySelector("[data-refresh]");
if (live) {
  const every = Number(live.getAttribute("data-every") || "3000");
  const refresh = async () => {
    try {
      const answer = await fetch(live.getAttribute("data-refresh"), { credentials: "same-origin" });
      if (answer.ok) {
        live.innerHTML = await answer.text();
        live.setAttribute("data-refreshed", String(Date.now()));
      }
    } catch (error) {
      // offline for a moment: the next round tries again
    }
    window.setTimeout(refresh, every);
  };
  window.setTimeout(refresh, every);
}
