// Counting's view on the service's web page: the image as it is, and the number
// of objects the model found beside it.
export default {
  noun: "counter",
  what: "the number of objects",
  render(ctx, body, g, kit) {
    const n = Number(body.objects);
    return {
      panel: `<p id="objects"><b>${n}</b> objects</p>`,
      summary: `${n} objects`,
      count: n,
    };
  },
};
