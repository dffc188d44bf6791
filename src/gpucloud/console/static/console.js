// gpucloud console: live parts of pages, live job output, and the submit form's estimate.
// Plain JavaScript, no dependencies. Every page works without it (reload to update).
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var PART_HEADERS = { "X-Console-Part": "1" };

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function announce(text) {
    var box = document.getElementById("announcer");
    if (box && text && box.textContent !== text) box.textContent = text;
  }

  // A live part: <div data-live-src="URL" data-live-every="MS">. Its HTML is fetched again
  // every MS milliseconds (not while the tab is hidden) and swapped in when it changed, unless
  // the keyboard focus is inside it. It stops once its content carries data-live-done.
  function startLive(el) {
    var every = Number(el.getAttribute("data-live-every")) || 2000;
    var last = null;
    function schedule() { window.setTimeout(tick, every); }
    function tick() {
      if (document.hidden) { schedule(); return; }
      fetch(el.getAttribute("data-live-src"), {
        headers: PART_HEADERS, credentials: "same-origin", cache: "no-store"
      }).then(function (res) {
        if (res.status === 401) { window.location.reload(); return null; }
        return res.ok ? res.text() : null;
      }).then(function (html) {
        if (html !== null && html !== last && !el.contains(document.activeElement)) {
          var before = el.querySelector("[data-announce]");
          var said = before ? before.getAttribute("data-announce") : null;
          el.innerHTML = html;
          last = html;
          var after = el.querySelector("[data-announce]");
          if (after && after.getAttribute("data-announce") !== said) {
            announce(after.getAttribute("data-announce"));
          }
        }
        if (!el.querySelector("[data-live-done]")) schedule();
      }).catch(schedule);  // a network blip: try again
    }
    if (!el.querySelector("[data-live-done]")) schedule();
  }

  // Live output: <pre data-log-src="URL">. Polls URL?offset=BYTES and appends; stops when the
  // server says the job has ended (X-Log-Final: 1) and everything was read.
  function startLog(pre) {
    var offset = 0;
    var decoder = new TextDecoder();
    var status = document.getElementById(pre.getAttribute("data-log-status") || "");
    function tick() {
      fetch(pre.getAttribute("data-log-src") + "?offset=" + offset, {
        headers: PART_HEADERS, credentials: "same-origin", cache: "no-store"
      }).then(function (res) {
        if (res.status === 401) { window.location.reload(); return; }
        if (!res.ok) { window.setTimeout(tick, 3000); return; }
        var final = res.headers.get("X-Log-Final") === "1";
        return res.arrayBuffer().then(function (buf) {
          if (buf.byteLength) {
            var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
            if (offset === 0) pre.textContent = "";
            pre.appendChild(document.createTextNode(decoder.decode(buf, { stream: !final })));
            offset += buf.byteLength;
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
          if (final) {
            if (offset === 0) pre.textContent = "(no output)";
            pre.setAttribute("data-log-complete", "");
            if (status) status.textContent = "complete";
            return;
          }
          window.setTimeout(tick, buf.byteLength ? 300 : 1000);
        });
      }).catch(function () { window.setTimeout(tick, 3000); });
    }
    tick();
  }

  // The submit form's estimate: re-priced (POST, with the CSRF token) as the form changes.
  function startEstimate(form) {
    var target = document.getElementById(form.getAttribute("data-estimate-target"));
    var timer = null;
    var asked = 0;
    function run() {
      var mine = ++asked;
      fetch(form.getAttribute("data-estimate-src") + "?part=estimate", {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-Console-Part": "1", "X-CSRF-Token": csrfToken() }
      }).then(function (res) {
        if (res.status === 401) { window.location.reload(); return null; }
        return res.text();
      }).then(function (html) {
        if (html !== null && mine === asked && target) target.innerHTML = html;
      }).catch(function () {});
    }
    function later() { window.clearTimeout(timer); timer = window.setTimeout(run, 300); }
    form.addEventListener("input", later);
    form.addEventListener("change", later);
  }

  function selectOnFocus(input) {
    input.addEventListener("focus", function () { input.select(); });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-src]"), startLive);
    Array.prototype.forEach.call(document.querySelectorAll("pre[data-log-src]"), startLog);
    Array.prototype.forEach.call(document.querySelectorAll("form[data-estimate-src]"), startEstimate);
    Array.prototype.forEach.call(document.querySelectorAll("[data-select-on-focus]"), selectOnFocus);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
