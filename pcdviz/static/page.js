// pcdviz: the page side of instant browsing (issue 16). Layer, head, threshold, colour and query changes call
// pcdviz.local(settings): recolor.js computes the view from the bundle the server sent with the last figure
// and the existing plot is updated in place (Plotly.react on the same element: no new WebGL context, the
// cameras stay). Server events (new cloud, checkpoint, mode, comparison, crop) send a new figure and bundle
// as JSON text (#pcd-page-data); pcdviz.apply puts the figure into the same plot, keeping every camera.
(function () {
  'use strict';
  const PLOT = '#pcd-plot .js-plotly-plot';
  const pcd = window.pcdviz = window.pcdviz || {};
  const R = () => window.pcdvizRecolor;
  pcd.bundle = null;
  pcd.lastKey = null;
  pcd.stats = {local: 0, server: 0, applied: 0, lastMs: 0};

  const plotEl = () => document.querySelector(PLOT);

  function loadInitial() {  // the first view's bundle is the hidden textbox's first value
    if (pcd.bundle) return;
    const el = document.querySelector('#pcd-page-data textarea, #pcd-page-data input');
    if (el && el.value) pcd.setData(el.value, false);
  }

  function liveCameras(gd) {  // scene id -> the camera the person sees now
    const out = {}, fl = gd && gd._fullLayout;
    if (!fl) return out;
    for (const k of Object.keys(fl)) {
      if (/^scene\d*$/.test(k) && fl[k]._scene && fl[k]._scene.getCamera) out[k] = fl[k]._scene.getCamera();
    }
    return out;
  }

  function withCameras(gd, layout) {  // a layout whose scenes keep the live cameras (new scenes: the first's)
    const cams = liveCameras(gd), first = cams.scene;
    const out = Object.assign({}, layout);
    for (const k of Object.keys(out)) {
      if (/^scene\d*$/.test(k)) {
        const cam = cams[k] || first;
        if (cam) out[k] = Object.assign({}, out[k], {camera: JSON.parse(JSON.stringify(cam))});
      }
    }
    return out;
  }

  const sceneKey = layout => Object.keys(layout).filter(k => /^scene\d*$/.test(k)).sort().join(',');

  // A server figure (and its bundle) -> the existing plot, in place.
  pcd.setData = function (text, applyFigure) {
    if (!text) return;
    let payload;
    try { payload = JSON.parse(text); } catch (e) { return; }
    pcd.bundle = payload.bundle ? R().prepare(payload.bundle) : null;
    pcd.lastKey = null;
    const gd = plotEl();
    if (applyFigure !== false && payload.figure && gd && window.Plotly) {
      const fig = payload.figure, layout = withCameras(gd, fig.layout || {});
      // the same scenes: new data into the existing ones; other scenes (a comparison or the heads grid coming
      // or going): plotly (3.x) misplaces a kept scene's mouse area after react, so that plot is built anew
      if (sceneKey(gd.layout || {}) === sceneKey(layout)) window.Plotly.react(gd, fig.data, layout);
      else window.Plotly.newPlot(gd, fig.data, layout, Object.assign({}, gd._context || {}));
      pcd.stats.applied++;
    }
  };

  pcd.apply = function (text, a) {
    pcd.setData(text, true);
    if (a) { pcd.settings = settingsOf(a); pcd.lastKey = JSON.stringify(pcd.settings); }
  };

  // A click in query mode: the main checkpoint's patch whose centre is nearest (attention.nearest_patch, first
  // patching) becomes the query in the page. false: the page cannot (another mode, or no patch -> patch maps
  // here), so the server picks (pick_point).
  pcd.pick = function (xyz) {
    const s = pcd.settings, b = pcd.bundle;
    if (!s || s.mode !== 'query' || !R().canRecolor(b, s) || !b.sources[0].centers) return false;
    const c = b.sources[0].centers, G = b.sources[0].G, qq = xyz[0] * xyz[0] + xyz[1] * xyz[1] + xyz[2] * xyz[2];
    let best = 0, bestD = Infinity;
    for (let g = 0; g < G; g++) {
      const cx = c[3 * g], cy = c[3 * g + 1], cz = c[3 * g + 2];
      const d = qq - 2 * (xyz[0] * cx + xyz[1] * cy + xyz[2] * cz) + (cx * cx + cy * cy + cz * cz);
      if (d < bestD) { bestD = d; best = g; }
    }
    // through a hidden textbox whose input event (a js-only handler in app.py) sets the query box and calls
    // pcdviz.local, so Gradio's own values stay what the page shows
    const el = document.querySelector('#pcd-pick textarea, #pcd-pick input');
    if (!el) return false;
    el.value = JSON.stringify({q: best, t: Date.now()});
    el.dispatchEvent(new Event('input', {bubbles: true}));
    return true;
  };

  function settingsOf(a) {
    return {mode: String(a.mode), layer: parseInt(a.layer, 10), head: String(a.head), query: parseInt(a.query, 10) || 0,
            keep: Number(a.keep), point_size: Number(a.point_size) || 0, colorscale: String(a.colorscale),
            color_range: String(a.color_range), units: String(a.units)};
  }

  function traceIndex(gd, scene, name) {
    for (let i = 0; i < gd.data.length; i++) {
      if ((gd.data[i].scene || 'scene') === scene && gd.data[i].name === name) return i;
    }
    return -1;
  }

  function paint(gd, r) {  // the recoloured view -> the plot, one Plotly.react (marker colours, titles)
    const data = gd.data.slice(), layout = Object.assign({}, gd.layout);
    r.panels.forEach((p, i) => {
      const scene = i === 0 ? 'scene' : 'scene' + (i + 1);
      const t = traceIndex(gd, scene, 'points');
      if (t < 0) throw new Error('the plot has no panel ' + (i + 1));
      const marker = Object.assign({}, data[t].marker, {color: p.values, cmin: p.cmin, cmax: p.cmax,
                                                        colorscale: r.colorscale, size: r.size, symbol: r.symbol});
      if (marker.colorbar) marker.colorbar = Object.assign({}, marker.colorbar, {title: Object.assign({}, marker.colorbar.title, {text: r.colorbarTitle})});
      data[t] = Object.assign({}, data[t], {marker});
      const h = traceIndex(gd, scene, 'highlight');
      if (h >= 0 && p.highlight) {
        const src = gd._fullData.find(f => f.index === t) || data[t], xs = [], ys = [], zs = [], ids = [];
        for (let m = 0; m < p.highlight.length; m++) {
          if (p.highlight[m]) { xs.push(src.x[m]); ys.push(src.y[m]); zs.push(src.z[m]); ids.push(m); }
        }
        data[h] = Object.assign({}, data[h], {x: xs, y: ys, z: zs, customdata: ids,
                                             marker: Object.assign({}, data[h].marker, {size: r.size * 1.8 + 1})});
      }
      const c = traceIndex(gd, scene, 'patch centres');
      if (c >= 0) data[c] = Object.assign({}, data[c], {marker: Object.assign({}, data[c].marker, {size: r.size + 2})});
    });
    if (r.panels.length === 1) {
      layout.title = Object.assign({}, layout.title, {text: r.panels[0].title});
    } else if (layout.annotations) {
      layout.annotations = layout.annotations.map((a, i) => i < r.panels.length ? Object.assign({}, a, {text: r.panels[i].title}) : a);
    }
    return window.Plotly.react(gd, data, withCameras(gd, layout));
  }

  // A local change: recolour in the page, or ask the server (the hidden redraw button) when the bundle cannot.
  // Returns the status line (or the current one, unchanged, when nothing needs doing).
  pcd.local = function (a, status) {
    loadInitial();
    const s = settingsOf(a), key = JSON.stringify(s), gd = plotEl();
    pcd.settings = s;
    if (key === pcd.lastKey) return status;
    if (!gd || !window.Plotly || !R().canRecolor(pcd.bundle, s)) {
      pcd.lastKey = key;
      pcd.stats.server++;
      const btn = document.querySelector('#pcd-redraw');
      if (btn) btn.click();
      return status;
    }
    pcd.lastKey = key;
    const t0 = performance.now();
    try {
      const r = R().recolor(pcd.bundle, s);
      const t1 = performance.now();
      paint(gd, r);
      pcd.stats.marks = [t0, t1, performance.now()];   // entered, recoloured, plot updated (bench_page.py)
      pcd.stats.local++;
      pcd.stats.lastMs = performance.now() - t0;
      return `${r.caption} · ${pcd.stats.lastMs.toFixed(0)} ms in the page`;
    } catch (e) {
      console.error('pcdviz: recolouring in the page failed', e);
      pcd.lastKey = null;
      return `⚠️ The page could not recolour the plot (${String(e.message || e).slice(0, 200)}); change a setting to ask the server.`;
    }
  };
})();
