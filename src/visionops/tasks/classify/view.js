// Classification's view on the service's web page: the top classes stacked in the
// image's corner, probability bars beside it. `kit` holds the page's drawing
// helpers (index.html).
export default {
  noun: "classifier",
  what: "the most likely classes",
  render(ctx, body, g, kit) {
    const {colorOf, drawLabel, escapeHtml} = kit;
    const preds = (body.predictions || []).slice()
      .sort((a, b) => b.probability - a.probability);
    let top = 0;
    for (const p of preds.slice(0, 3)) {  // stacked from the top-left corner
      drawLabel(ctx, `${p.class_name} ${p.probability.toFixed(2)}`, 0, top,
        colorOf(p.class_id), g, true);
      top += g.font + 2 * g.pad;
    }
    const bars = preds.slice(0, 5).map((p) =>
      `<div class="bar-row" data-class="${escapeHtml(p.class_name)}">` +
      `<span class="name" title="${escapeHtml(p.class_name)}">${escapeHtml(p.class_name)}</span>` +
      `<div class="bar"><div style="width:${(100 * p.probability).toFixed(1)}%;` +
      `background:${colorOf(p.class_id)}"></div></div>` +
      `<span class="n">${p.probability.toFixed(2)}</span></div>`).join("");
    return {
      panel: `<div id="bars">${bars}</div>`,
      summary: preds.length
        ? `top ${preds[0].class_name} ${preds[0].probability.toFixed(2)}` : "no classes",
      count: preds.length,
    };
  },
};
