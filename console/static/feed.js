// Live alert feed: server-sent events from /alerts/stream. The server renders each row (escaped
// by the template engine); this script only places it. No reload, reconnects on its own.
(function () {
  "use strict";
  var feed = document.getElementById("feed");
  var badge = document.getElementById("live");
  var empty = document.getElementById("feed-empty");
  if (!feed || !window.EventSource) { return; }
  function status(kind) {
    badge.className = "live" + (kind === "live" ? " on" : kind === "reconnecting" ? " off" : "");
    badge.textContent = badge.dataset[kind] || kind;
  }
  function refreshEmpty() {
    if (empty) { empty.classList.toggle("hidden", feed.rows.length > 0); }
  }
  function place(msg) {
    var old = document.getElementById("alert-" + msg.alert_id);
    if (!msg.matches) {
      if (old) { old.remove(); }
      refreshEmpty();
      return;
    }
    var tpl = document.createElement("template");
    tpl.innerHTML = msg.html.trim();
    var row = tpl.content.firstElementChild;
    if (old) { old.replaceWith(row); } else { feed.insertBefore(row, feed.firstElementChild); }
    refreshEmpty();
  }
  var source = new EventSource(feed.dataset.stream);
  source.onopen = function () { status("live"); };
  source.onerror = function () {
    status("reconnecting");
    // 401 (session ended) closes the stream for good: reload, which leads to the sign-in page.
    if (source.readyState === EventSource.CLOSED) { window.setTimeout(function () { window.location.reload(); }, 3000); }
  };
  source.addEventListener("alert", function (ev) { place(JSON.parse(ev.data)); });
  source.addEventListener("resync", function () { window.location.reload(); });
  window.addEventListener("pagehide", function () { source.close(); });
})();
