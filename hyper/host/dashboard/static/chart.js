// The overview's throughput chart: jobs ended per minute over the last hour (uPlot),
// read again every 10 seconds.
(function () {
  "use strict";
  var box = document.getElementById("throughput");
  if (!box || !window.uPlot) return;
  var plot = null;

  function options() {
    return {
      width: Math.max(box.clientWidth, 320),
      height: 220,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [{}, { label: "jobs / minute", size: 60 }],
      series: [
        {},
        {
          label: "ended",
          stroke: "#2563eb",
          fill: "rgba(37, 99, 235, 0.18)",
          width: 1,
          paths: window.uPlot.paths.bars({ size: [0.8, 40] }),
          points: { show: false },
        },
      ],
    };
  }

  function draw() {
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (data) {
        if (!data) return;
        var series = [data.t, data.n];
        if (plot === null) {
          plot = new window.uPlot(options(), series, box);
          box.dataset.ready = "true";
        } else {
          plot.setData(series);
        }
        box.dataset.total = String(data.n.reduce(function (a, b) { return a + b; }, 0));
      })
      .catch(function () {});
  }

  draw();
  setInterval(draw, 10000);
  window.addEventListener("resize", function () {
    if (plot) plot.setSize({ width: Math.max(box.clientWidth, 320), height: 220 });
  });
})();
