// Segmentation's view on the service's web page: translucent class-coloured
// polygons with labels over the image, a legend of instances and area per class
// beside it. `kit` holds the page's drawing helpers (index.html).
export default {
  noun: "segmenter",
  what: "the model's masks",
  render(ctx, body, g, kit) {
    const {colorOf, drawLabel, escapeHtml, hexAlpha} = kit;
    const instances = body.instances || [];
    for (const inst of instances) {
      const color = colorOf(inst.class_id);
      // One ring [[x, y], ...] or several (an instance in separate pieces).
      const poly = inst.polygon || [];
      const rings = Array.isArray(poly[0] && poly[0][0]) ? poly : [poly];
      ctx.beginPath();
      for (const ring of rings.filter((r) => r.length > 2)) {
        ring.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.closePath();
      }
      ctx.fillStyle = hexAlpha(color, 0.5);  // the opacity of the server's overlay
      ctx.fill("evenodd");
      ctx.lineWidth = g.line;
      ctx.strokeStyle = color;
      ctx.stroke();
    }
    for (const inst of instances) {
      const first = (inst.polygon || []).flat(Infinity);
      const anchor = inst.box || {x1: first.length ? first[0] : 0, y1: first.length ? first[1] : 0};
      const track = inst.track_id ? `#${inst.track_id} ` : "";  // a tracked frame
      drawLabel(ctx, `${track}${inst.class_name} ${inst.confidence.toFixed(2)}`, anchor.x1, anchor.y1,
        colorOf(inst.class_id), g);
    }
    const area = ctx.canvas.width * ctx.canvas.height;
    const classes = {};
    for (const inst of instances) {
      const c = (classes[inst.class_name] ||= {id: inst.class_id, n: 0, pixels: 0});
      c.n += 1;
    }
    for (const [name, pixels] of Object.entries(body.class_pixels || {})) {
      (classes[name] ||= {id: null, n: 0, pixels: 0}).pixels = Number(pixels);
    }
    const rows = Object.entries(classes).sort((a, b) => b[1].pixels - a[1].pixels)
      .map(([name, c]) =>
        `<tr><td><span class="swatch" style="background:${colorOf(c.id)}"></span>` +
        `${escapeHtml(name)}</td><td class="n">${c.n}</td>` +
        `<td class="n">${(100 * c.pixels / area).toFixed(1)}%</td></tr>`).join("");
    return {
      panel: `<table id="legend"><tr><th>class</th><th>instances</th><th>area</th></tr>` +
        `${rows}</table>`,
      summary: `${instances.length} instances`,
      count: instances.length,
    };
  },
};
