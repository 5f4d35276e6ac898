// The roadmap page: nodes that open in place, keyboard moves, the track selector.
// Plain JavaScript, no library and no network: the page works from file://.
"use strict";

(function () {
  const graph = document.querySelector(".graph");
  if (!graph) return;
  const nodes = Array.from(graph.querySelectorAll(".node"));

  function setOpen(node, open) {
    const button = node.querySelector(".node-button");
    button.setAttribute("aria-expanded", String(open));
    node.querySelector(".card").hidden = !open;
    node.classList.toggle("open", open);
  }

  // a click (or Enter / Space: they click a button) opens or closes the card
  nodes.forEach(function (node) {
    const button = node.querySelector(".node-button");
    button.addEventListener("click", function () {
      setOpen(node, button.getAttribute("aria-expanded") !== "true");
    });
  });

  // arrow keys: focus the nearest step in that direction; Escape closes the card
  const directions = {ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0],
                      ArrowRight: [1, 0]};

  function centre(node) {
    const style = node.style;
    return [parseFloat(style.getPropertyValue("--x")) +
              parseFloat(style.getPropertyValue("--w")) / 2,
            parseFloat(style.getPropertyValue("--y")) +
              parseFloat(style.getPropertyValue("--h")) / 2];
  }

  // up / down: the nearest layer in that direction, then the closest in it;
  // left / right: the same layer first, then the closest in that direction
  function nearest(from, dir) {
    const [x0, y0] = centre(from);
    let best = null, bestKey = null;
    nodes.forEach(function (node) {
      if (node === from) return;
      const [x, y] = centre(node);
      const along = (x - x0) * dir[0] + (y - y0) * dir[1];
      if (along <= 0) return;
      const across = Math.abs((x - x0) * dir[1]) + Math.abs((y - y0) * dir[0]);
      const key = dir[1] !== 0 ? [along, across] : [across, along];
      if (bestKey === null || key[0] < bestKey[0] ||
          (key[0] === bestKey[0] && key[1] < bestKey[1])) {
        best = node; bestKey = key;
      }
    });
    return best;
  }

  graph.addEventListener("keydown", function (event) {
    const node = event.target.closest(".node");
    if (!node) return;
    if (event.key === "Escape") {
      setOpen(node, false);
      node.querySelector(".node-button").focus();
      return;
    }
    if (!(event.key in directions) ||
        !event.target.classList.contains("node-button")) return;
    const next = nearest(node, directions[event.key]);
    if (next) {
      event.preventDefault();
      next.querySelector(".node-button").focus();
    }
  });

  // the track selector: depth of each node, its estimate, the track's summary
  function showTrack(track) {
    graph.dataset.track = track;
    document.querySelectorAll(".track-summary [data-track]").forEach(function (p) {
      p.hidden = p.dataset.track !== track;
    });
    nodes.forEach(function (node) {
      node.dataset.depth = node.dataset[track];
      node.querySelectorAll("[data-track]").forEach(function (el) {
        el.hidden = track !== "all" ? el.dataset.track !== track
                                    : el.closest(".node-est") !== null;
      });
    });
    graph.querySelectorAll(".edge").forEach(function (edge) {
      const source = document.getElementById("card-" + edge.dataset.source);
      const target = document.getElementById("card-" + edge.dataset.target);
      edge.classList.toggle("dim", track !== "all" &&
        (source.dataset[track] === "absent" || target.dataset[track] === "absent"));
    });
  }

  document.querySelectorAll("input[name=track]").forEach(function (input) {
    input.addEventListener("change", function () { showTrack(input.value); });
    if (input.checked) showTrack(input.value);
  });

  // index.html#card-ID (the chapters' "back to the roadmap") opens that card
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.classList.contains("node")) {
    setOpen(target, true);
    target.querySelector(".node-button").focus();
  }
})();
