// Detection's view on the service's web page: boxes and `name conf` labels over
// the image, a table of counts per class beside it. `kit` holds the page's drawing
// helpers (index.html).
export default {
  noun: "detector",
  what: "the model's boxes",
  render(ctx, body, g, kit) {
    const {colorOf, drawLabel, escapeHtml, strokeBox} = kit;
    const dets = body.detections || [];
    // All boxes first, then all labels: no box line crosses a label.
    for (const d of dets) strokeBox(ctx, d.box, colorOf(d.class_id), g);
    for (const d of dets) {
      const track = d.track_id ? `#${d.track_id} ` : "";  // a tracked frame
      drawLabel(ctx, `${track}${d.class_name} ${d.confidence.toFixed(2)}`, d.box.x1, d.box.y1,
        colorOf(d.class_id), g);
    }
    const ids = Object.fromEntries(dets.map((d) => [d.class_name, d.class_id]));
    const rows = Object.entries(body.counts || {}).map(([name, n]) =>
      `<tr><td><span class="swatch" style="background:${colorOf(ids[name])}"></span>` +
      `${escapeHtml(name)}</td><td class="n">${n}</td></tr>`).join("");
    return {
      panel: `<table id="counts"><tr><th>class</th><th>count</th></tr>${rows}</table>`,
      summary: `${dets.length} boxes`,
      count: dets.length,
    };
  },
};
