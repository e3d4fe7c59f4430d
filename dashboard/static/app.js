// Panorama dashboard: live refresh that keeps the scroll position, chart
// hover, and picking a minute by clicking a chart. No build step, no
// library; served from this origin only (the CSP allows nothing inline).
(function () {
  "use strict";

  function charts(root) {
    root.querySelectorAll("figure.chart svg[data-t]").forEach(function (svg) {
      var times = svg.getAttribute("data-t").split("|");
      var ms = (svg.getAttribute("data-ms") || "").split(",");
      var series = svg.getAttribute("data-s").split(";").map(function (s) {
        var i = s.indexOf(":");
        return { label: s.slice(0, i), values: s.slice(i + 1).split(",") };
      });
      var tip = svg.parentNode.querySelector("output.tip");
      var line = svg.querySelector("line.hover");
      var n = times.length;
      function index(ev) {
        var r = svg.getBoundingClientRect();
        var vb = svg.viewBox.baseVal;
        var x = (ev.clientX - r.left) / r.width * vb.width;
        var left = 48, right = vb.width - 4;
        var f = n <= 1 ? 0 : (x - left) / (right - left) * (n - 1);
        return Math.max(0, Math.min(n - 1, Math.round(f)));
      }
      svg.addEventListener("mousemove", function (ev) {
        var i = index(ev);
        var vb = svg.viewBox.baseVal;
        var x = n <= 1 ? 48 + (vb.width - 48) / 2 : 48 + (vb.width - 52) * i / (n - 1);
        line.setAttribute("x1", x);
        line.setAttribute("x2", x);
        line.setAttribute("visibility", "visible");
        tip.textContent = times[i] + "  " + series.map(function (s) {
          return s.label + " " + (s.values[i] === "" ? "–" : s.values[i]);
        }).join("  ·  ");
      });
      svg.addEventListener("mouseleave", function () {
        line.setAttribute("visibility", "hidden");
        tip.textContent = "";
      });
      var href = svg.getAttribute("data-href");
      if (href) {
        svg.classList.add("clickable");
        svg.addEventListener("click", function (ev) {
          var i = index(ev);
          if (ms[i]) { location.href = href + "&at=" + ms[i] + "#samples"; }
        });
      }
    });
  }

  // Swap <main> for a fresh copy every N seconds: the document stays, so
  // the scroll position does too. Skipped while the user types in a form,
  // while the tab is hidden, and when the session has ended (the login page
  // comes back instead of the page).
  function refresh() {
    var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (!every) { return; }
    setInterval(function () {
      if (document.hidden) { return; }
      var a = document.activeElement;
      if (a && a.form) { return; }
      fetch(location.href, { credentials: "same-origin", headers: { "X-Refresh": "1" } })
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (text) {
          if (!text) { return; }
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.getElementById("main");
          var main = document.getElementById("main");
          if (!fresh || !main) { return; }
          var x = window.scrollX, y = window.scrollY;
          main.replaceWith(document.adoptNode(fresh));
          window.scrollTo(x, y);
          charts(fresh);
          document.body.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { /* the next tick tries again */ });
    }, every * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    charts(document);
    refresh();
  });
})();
