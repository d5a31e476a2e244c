// Click a figure to see it enlarged (the book's figures are drawn at twice their displayed
// resolution); click again or press Escape to close. Plain JavaScript, nothing fetched.
(function () {
  "use strict";
  function close(overlay) {
    overlay.remove();
    document.removeEventListener("keydown", overlay.onKey);
  }
  function open(img) {
    var overlay = document.createElement("div");
    overlay.className = "bnlib-enlarged";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "Enlarged figure (click or press Escape to close)");
    var big = document.createElement("img");
    big.src = img.currentSrc || img.src;
    big.alt = img.alt;
    overlay.appendChild(big);
    overlay.addEventListener("click", function () { close(overlay); });
    overlay.onKey = function (e) { if (e.key === "Escape") { close(overlay); } };
    document.addEventListener("keydown", overlay.onKey);
    document.body.appendChild(overlay);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".cell_output img, figure img").forEach(function (img) {
      img.classList.add("bnlib-zoomable");
      img.title = img.title || "Click to enlarge";
      img.addEventListener("click", function () { open(img); });
    });
  });
})();
