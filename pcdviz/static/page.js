// pcdviz: the page side of instant browsing (issue 16). The page render draws the main plot itself, with the
// vendored gl3d-only plotly (static/vendor; app.launch loads it, async, and calls pcdviz.plotlyLoaded): the
// first figure and its maps come in the page's JSON (#pcd-page-data), drawn as soon as plotly and the plot's
// box (#pcd-plot .pcd-gd) are there. Layer, head, threshold, colour and query changes call
// pcdviz.local(settings): recolor.js computes the view from the bundle the server sent with the last figure
// and the existing plot is updated in place (Plotly.react on the same element: no new WebGL context, the
// cameras stay). Server events (new cloud, checkpoint, mode, comparison, crop) send a new figure and bundle
// as JSON text (#pcd-page-data); pcdviz.apply puts the figure into the same plot, keeping every camera.
// In this render the points themselves are drawn by a small layer of our own inside plotly's scene (one
// gl.POINTS vertex per point instead of plotly's glyph triangles), so that a local change uploads only a colour
// buffer and a frame costs little in software WebGL; see "The points layer" below.
(function () {
  'use strict';
  const PLOT = '#pcd-plot .js-plotly-plot', BOX = '#pcd-plot .pcd-gd';
  const pcd = window.pcdviz = window.pcdviz || {};
  const R = () => window.pcdvizRecolor;
  pcd.bundle = null;
  pcd.lastKey = null;
  pcd.stats = {local: 0, server: 0, applied: 0, lastMs: 0};
  // The plotly that draws this plot (pcdviz.plotlyLoaded), kept: Gradio's own (full) plotly, loaded when a
  // panel's gr.Plot first shows a figure, replaces window.Plotly, and one plotly cannot update a plot another drew.
  pcd.Plotly = null;
  // as gr.Plot draws a figure (responsive, autosized), with the scenes at one pixel per screen pixel instead of
  // plotly's default two: the first draw of a page open fills a quarter of the pixels in software WebGL, and
  // hookPlot raises it to the screen's own pixel ratio where that is higher
  const CONFIG = {responsive: true, plotGlPixelRatio: 1};
  const fitted = layout => Object.assign({}, layout, {autosize: true, margin: Object.assign({}, layout.margin, {autoexpand: true})});

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
    const P = pcd.Plotly, fig = payload.figure;
    if (applyFigure === false || !fig || !P) return;
    let gd = plotEl();
    if (!gd) {   // the page's first figure, into the empty box
      gd = document.querySelector(BOX);
      if (!gd) return;
      P.newPlot(gd, fig.data, fitted(fig.layout || {}), CONFIG);
    } else {
      const layout = withCameras(gd, fitted(fig.layout || {}));
      // the same scenes: new data into the existing ones; other scenes (a comparison or the heads grid coming
      // or going): plotly (3.x) misplaces a kept scene's mouse area after react, so that plot is built anew
      if (sceneKey(gd.layout || {}) === sceneKey(layout)) P.react(gd, fig.data, layout);
      else P.newPlot(gd, fig.data, layout, Object.assign({}, gd._context || CONFIG));
    }
    hookPlot(gd);   // new scenes' points objects (newPlot also drops the plot's event listeners)
    pcd.stats.applied++;
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
    hookPlot(gd);
    expectColours(gd, data);
    return pcd.Plotly.react(gd, data, withCameras(gd, layout));
  }

  // ---- The points layer (issue 16). Plotly's scatter3d draws each point as a font glyph of 6+ triangles,
  // and software WebGL spends nearly all of a frame on those vertices (2,048 squares: 36,864 vertices, ~0.1 s a
  // frame here). In the page render each "points" trace's WebGL object (gl-scatter3d, inside plotly's scene) is
  // drawn instead as one gl.POINTS vertex per point, same camera matrices, same depth buffer, same size (the
  // glyph's extent) and colours; a local change then writes only its colour buffer (bufferSubData) while
  // Plotly.react does the rest (colour bar, titles, gd.data and _fullData). Plotly keeps its own buffers for
  // picking (hover, clicks), and plotly's own draw comes back for anything this layer does not cover
  // (transparency, outlines, per-point sizes or symbols) or when plotly's internals are not what it expects.
  const FAST = pcd.fast = {enabled: true, pixelRatio: true, hooked: 0, drawn: 0, recoloured: 0, rebuilt: 0};
  // pick: plotly's pick pass (gl-scatter3d's pick shader: the pick group, then the point index's bytes)
  const VS = 'attribute vec3 position; attribute vec4 color, id; uniform mat4 model, view, projection; uniform float size, pickV;' +
    ' uniform vec2 offset; varying vec4 vColor; void main() { vec4 c = projection * (view * (model * vec4(position, 1.0)));' +
    ' gl_Position = vec4(c.xyz / c.w + vec3(offset, 0.0), 1.0); gl_PointSize = size; vColor = pickV > 0.5 ? id : color; }';
  const FS = 'precision mediump float; varying vec4 vColor; uniform float round, pick, pickGroup; void main() {' +
    ' if (round > 0.5) { vec2 d = gl_PointCoord - vec2(0.5); if (dot(d, d) > 0.25) discard; }' +
    ' gl_FragColor = pick > 0.5 ? vec4(pickGroup, vColor.bgr) : vColor; }';
  const IDENTITY = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
  const programs = new WeakMap();   // gl context -> {prog, loc, vao ext}

  function programFor(gl) {
    let p = programs.get(gl);
    if (p) return p;
    const ext = gl.getExtension('OES_vertex_array_object');
    const sh = (type, src) => { const s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s); return s; };
    const prog = gl.createProgram();
    gl.attachShader(prog, sh(gl.VERTEX_SHADER, VS));
    gl.attachShader(prog, sh(gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(prog);
    p = ext && gl.getProgramParameter(prog, gl.LINK_STATUS) ? {prog, ext, loc: {}} : {failed: true};
    if (p.failed) console.error('pcdviz: the points layer did not link', gl.getProgramInfoLog(prog));
    if (!p.failed) {
      for (const u of ['model', 'view', 'projection', 'size', 'offset', 'round', 'pick', 'pickV', 'pickGroup']) p.loc[u] = gl.getUniformLocation(prog, u);
      for (const a of ['position', 'color', 'id']) p.loc[a] = gl.getAttribLocation(prog, a);
    }
    programs.set(gl, p);
    return p;
  }

  // plotly's colour scale on a value, as plotly computes it (Colorscale.makeColorScaleFunc: d3's linear scale
  // over the stops, clamped; tinycolor rounds each channel to an integer)
  function parseColour(c) {
    c = String(c).trim();
    let m = /^#([0-9a-f]{6})$/i.exec(c);
    if (m) { const n = parseInt(m[1], 16); return [n >> 16, (n >> 8) & 255, n & 255]; }
    m = /^#([0-9a-f]{3})$/i.exec(c);
    if (m) return [0, 1, 2].map(i => parseInt(m[1][i] + m[1][i], 16));
    m = /^rgba?\(([^)]*)\)$/i.exec(c);
    if (m) { const p = m[1].split(',').map(Number); if (p.length >= 3 && p.slice(0, 3).every(isFinite)) return p.slice(0, 3); }
    return null;
  }
  function scaleColours(values, marker, out) {  // -> out (Uint8Array, RGBA per point), or null when unsure
    let cs = marker.colorscale;
    const lo = marker.cmin, hi = marker.cmax;
    if (!Array.isArray(cs) || cs.length < 2 || !isFinite(lo) || !isFinite(hi)) return null;
    if (marker.reversescale) cs = cs.slice().reverse().map(s => [1 - s[0], s[1]]);
    const dom = cs.map(s => lo + s[0] * (hi - lo)), rgb = cs.map(s => parseColour(s[1])), k = dom.length - 1;
    if (rgb.some(c => !c)) return null;
    for (let m = 0, o = 0; m < values.length; m++, o += 4) {
      const v = values[m];
      if (!isFinite(v)) { out[o] = out[o + 1] = out[o + 2] = 0x44; out[o + 3] = 255; continue; }   // plotly's defaultLine
      let i = 1;
      while (i < k && dom[i] <= v) i++;
      i -= 1;
      const d = dom[i + 1] - dom[i];
      let t = d ? (v - dom[i]) / d : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const a = rgb[i], b = rgb[i + 1];
      out[o] = Math.round(a[0] + (b[0] - a[0]) * t);
      out[o + 1] = Math.round(a[1] + (b[1] - a[1]) * t);
      out[o + 2] = Math.round(a[2] + (b[2] - a[2]) * t);
      out[o + 3] = 255;
    }
    return out;
  }

  // the layer's state for one gl-scatter3d object, rebuilt from plotly's options after each plotly update
  function rebuild(sp, st) {
    st.ok = false;
    const n = sp.pointCount, V = n ? sp.vertexCount / n : 0, o = st.opts || {};
    if (!n || !Number.isInteger(V) || V < 3 || sp.lineWidth > 0 || sp.hasAlpha || sp.opacity < 1 ||
        (sp.axesProject || []).some(Boolean) || Array.isArray(o.size) || Array.isArray(o.glyph) || !st.glyph) return false;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;   // point 0's glyph, in CSS px
    for (let v = 0; v < V && 2 * v + 1 < st.glyph.length; v++) {
      x0 = Math.min(x0, st.glyph[2 * v]); x1 = Math.max(x1, st.glyph[2 * v]);
      y0 = Math.min(y0, st.glyph[2 * v + 1]); y1 = Math.max(y1, st.glyph[2 * v + 1]);
    }
    const glyph = String(o.glyph || '');
    if (!(x1 > x0) || 2 * V > st.glyph.length || (glyph !== '■' && glyph !== '●')) return false;   // render.marker_symbol's two
    const pts = sp.points, pos = new Float32Array(3 * n);
    for (let m = 0; m < n; m++) {
      const p = pts[m];
      if (!p || !isFinite(p[0]) || !isFinite(p[1]) || !isFinite(p[2])) return false;
      pos[3 * m] = p[0]; pos[3 * m + 1] = p[1]; pos[3 * m + 2] = p[2];
    }
    const rgba = new Uint8Array(4 * n), c = o.color;
    const many = Array.isArray(c) && Array.isArray(c[0]);
    for (let m = 0; m < n; m++) {
      const cc = many ? c[m] : c;
      if (!cc || cc.length < 3) return false;
      for (let j = 0; j < 3; j++) rgba[4 * m + j] = Math.round(Math.min(Math.max(cc[j], 0), 1) * 255);
      rgba[4 * m + 3] = 255;
    }
    const gl = sp.gl, P = programFor(gl);
    if (P.failed) return false;
    const ids = new Uint8Array(new Uint32Array(Array.from({length: n}, (_, m) => m)).buffer);   // little-endian bytes
    if (!st.pos) { st.pos = gl.createBuffer(); st.col = gl.createBuffer(); st.ids = gl.createBuffer(); st.vao = P.ext.createVertexArrayOES(); }
    gl.bindBuffer(gl.ARRAY_BUFFER, st.pos);
    gl.bufferData(gl.ARRAY_BUFFER, pos, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, st.col);
    gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.DYNAMIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, st.ids);
    gl.bufferData(gl.ARRAY_BUFFER, ids, gl.STATIC_DRAW);
    P.ext.bindVertexArrayOES(st.vao);
    for (const [buf, name, k, type, norm] of [[st.pos, 'position', 3, gl.FLOAT, false], [st.col, 'color', 4, gl.UNSIGNED_BYTE, true],
                                              [st.ids, 'id', 4, gl.UNSIGNED_BYTE, true]]) {
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      gl.enableVertexAttribArray(P.loc[name]);
      gl.vertexAttribPointer(P.loc[name], k, type, norm, 0, 0);
    }
    P.ext.bindVertexArrayOES(null);
    gl.bindBuffer(gl.ARRAY_BUFFER, null);
    Object.assign(st, {n, rgba, w: Math.max(x1 - x0, y1 - y0), cx: (x0 + x1) / 2, cy: (y0 + y1) / 2,
                       round: glyph === '●' ? 1 : 0, ok: true});
    FAST.rebuilt++;
    return true;
  }

  // gl-scatter3d's ortho shader offsets a glyph vertex by glyph * pixelRatio * 2 / drawingBufferWidth in clip space,
  // in the draw (pixelRatio: the plot's) and in the pick pass (pixelRatio 1, into a buffer of the plot's CSS size)
  // what plotly's trace object keeps as `color` (one 'rgb(...)' per point, for the hover label), made when read
  function hoverColours(st) {
    return new Proxy([], {get(t, k) {
      if (k === 'length') return st.n;
      if (typeof k === 'string' && /^\d+$/.test(k)) {
        const o = 4 * Number(k), c = st.rgba;
        return o < c.length ? `rgb(${c[o]},${c[o + 1]},${c[o + 2]})` : undefined;
      }
      return Reflect.get(t, k);
    }});
  }

  function drawPoints(sp, st, params, pick) {
    const gl = sp.gl, P = programFor(gl), L = P.loc, plotPr = (st.glplot && st.glplot.pixelRatio) || sp.pixelRatio || 1;
    const pr = pick ? 1 : sp.pixelRatio || 1, fbo = pick ? 1 / plotPr : 1;
    gl.useProgram(P.prog);
    gl.uniformMatrix4fv(L.model, false, params.model || IDENTITY);
    gl.uniformMatrix4fv(L.view, false, params.view || IDENTITY);
    gl.uniformMatrix4fv(L.projection, false, params.projection || IDENTITY);
    gl.uniform1f(L.size, Math.max(st.w * pr * fbo, 1));
    gl.uniform2f(L.offset, 2 * pr * st.cx / gl.drawingBufferWidth, -2 * pr * st.cy / gl.drawingBufferHeight);
    gl.uniform1f(L.round, st.round);
    gl.uniform1f(L.pick, pick ? 1 : 0);
    gl.uniform1f(L.pickV, pick ? 1 : 0);
    gl.uniform1f(L.pickGroup, (sp.pickId || 0) / 255);
    P.ext.bindVertexArrayOES(st.vao);
    gl.drawArrays(gl.POINTS, 0, st.n);
    P.ext.bindVertexArrayOES(null);
    FAST.drawn++;
  }

  const sameGeometry = (a, b) => !!(a && b && a._input && b._input && a._length === b._length && a.mode === b.mode &&
    ['x', 'y', 'z'].every(k => a._input[k] === b._input[k]) && a.opacity === b.opacity && a.marker && b.marker &&
    a.marker.size === b.marker.size && a.marker.symbol === b.marker.symbol && a.marker.opacity === b.marker.opacity &&
    (a.marker.line || {}).width === (b.marker.line || {}).width);

  function hookTrace(tr) {  // plotly's scatter3d trace object (LineWithMarkers) of a "points" trace
    const sp = tr.scatterPlot;
    if (!sp || sp.__pcd || typeof sp.update !== 'function' || typeof sp.draw !== 'function' || !sp.glyphBuffer ||
        typeof sp.glyphBuffer.update !== 'function' || !sp.gl || typeof tr.update !== 'function') return false;
    const st = sp.__pcd = {ok: false, stale: true, opts: null, glyph: null, glplot: tr.scene && tr.scene.glplot};
    const spUpdate = sp.update, glyphUpdate = sp.glyphBuffer.update, draw = sp.draw, drawPick = sp.drawPick, trUpdate = tr.update;
    sp.glyphBuffer.update = function (arr) {   // keep point 0's glyph (its extent gives the point size)
      if (arr && arr.length !== undefined) st.glyph = Float32Array.from(arr.subarray ? arr.subarray(0, 4096) : arr.slice(0, 4096));
      return glyphUpdate.apply(this, arguments);
    };
    sp.update = function (opts) { st.opts = opts; st.stale = true; return spUpdate.apply(this, arguments); };
    sp.draw = function (params) {
      if (FAST.enabled && st.stale) { st.stale = false; rebuild(sp, st); }
      if (!FAST.enabled || !st.ok) return draw.apply(this, arguments);
      drawPoints(sp, st, params || {}, false);
    };
    sp.drawPick = function (params) {
      if (FAST.enabled && st.stale) { st.stale = false; rebuild(sp, st); }
      if (!FAST.enabled || !st.ok || typeof drawPick !== 'function') return drawPick.apply(this, arguments);
      drawPoints(sp, st, params || {}, true);
    };
    // a local change (paint) hands plotly a new colour array and nothing else: only the colour buffer changes
    tr.update = function (data) {
      const m = data && data.marker;
      if (FAST.enabled && st.ok && !st.stale && m && m.color === st.expect && sameGeometry(this.data, data) &&
          scaleColours(m.color, m, st.rgba)) {
        this.data = data;
        this.color = st.hoverColours || (st.hoverColours = hoverColours(st));
        const gl = sp.gl;
        gl.bindBuffer(gl.ARRAY_BUFFER, st.col);
        gl.bufferSubData(gl.ARRAY_BUFFER, 0, st.rgba);
        gl.bindBuffer(gl.ARRAY_BUFFER, null);
        FAST.recoloured++;
        return;
      }
      return trUpdate.apply(this, arguments);
    };
    // scene.plot sets the aspect ratio on every plotly update, and gl-plot3d then redraws its pick buffers (and reads
    // them back); the same ratio changes nothing there, so only a new one does that
    const gp = st.glplot;
    if (gp && !gp.__pcd && typeof gp.setAspectratio === 'function' && Array.isArray(gp.aspect)) {
      const setAspect = gp.setAspectratio;
      gp.__pcd = true;
      gp.setAspectratio = function (a) {
        if (FAST.enabled && a && this.aspect[0] === a.x && this.aspect[1] === a.y && this.aspect[2] === a.z) return;
        return setAspect.apply(this, arguments);
      };
    }
    trUpdate.call(tr, tr.data);   // once, so the glyph and options are seen (plotly built this object before us)
    FAST.hooked++;
    return true;
  }

  function scenesOf(gd) {
    const fl = gd && gd._fullLayout, out = [];
    if (!fl) return out;
    for (const k of Object.keys(fl)) if (/^scene\d*$/.test(k) && fl[k] && fl[k]._scene && fl[k]._scene.traces) out.push(fl[k]._scene);
    return out;
  }

  // the "points" traces' objects of every scene of the plot, hooked once each (page render only)
  function hookPlot(gd) {
    if (!FAST.enabled || !gd || !gd._fullData) return;
    try {
      for (const sc of scenesOf(gd)) {
        for (const uid of Object.keys(sc.traces)) {
          const tr = sc.traces[uid];
          if (tr && tr.data && tr.data.name === 'points' && tr.scatterPlot && !tr.scatterPlot.__pcd) {
            hookTrace(tr);
            // plotly renders its scenes at twice the screen's pixels (plotGlPixelRatio 2), antialiased as well:
            // four times the pixels to fill and to composite on a plain screen; the page render draws at the
            // screen's own pixel ratio (the canvas is resized on the next frame; the plot is made at 1, CONFIG,
            // so only a screen with more pixels resizes it)
            const dpr = Math.max(window.devicePixelRatio || 1, 1);
            if (FAST.pixelRatio && sc.glplot.pixelRatio !== dpr) sc.glplot.pixelRatio = dpr;
            sc.glplot.redraw();
          }
        }
      }
      const ev = gd._ev || 'emitter';   // plotly's event emitter: newPlot purges it (and our listener with it)
      if (gd.__pcdHooked !== ev && typeof gd.on === 'function') {   // plots plotly rebuilds get hooked too
        gd.__pcdHooked = ev;
        gd.on('plotly_afterplot', () => hookPlot(gd));
      }
    } catch (e) {
      console.error('pcdviz: the points layer is off', e);
      FAST.enabled = false;
    }
  }
  pcd.hookPlot = hookPlot;

  function expectColours(gd, data) {  // tells each hooked points object which colour array a paint brings
    for (const sc of scenesOf(gd)) {
      for (const uid of Object.keys(sc.traces)) {
        const tr = sc.traces[uid], st = tr && tr.scatterPlot && tr.scatterPlot.__pcd;
        if (!st) continue;
        const d = data.find(t => t.uid === uid) || data[tr.data.index];
        st.expect = d && d.marker ? d.marker.color : null;
      }
    }
  }

  // The page's first plot (page render only: the server render has no box), drawn as soon as plotly has run
  // and Gradio has mounted the box and the JSON's textbox, whichever comes last.
  pcd.plotlyLoaded = function (P) {
    pcd.Plotly = P;
    firstPlot();
  };
  // without plotly the box says why, instead of staying empty (a proxy that blocks the file, say)
  pcd.plotlyFailed = function (src) {
    const box = document.querySelector(BOX);
    if (!box) { setTimeout(() => pcd.plotlyFailed(src), 100); return; }
    box.textContent = '⚠️ The plot cannot be drawn: the page could not load plotly.js from ' + src +
      '. Reload the page; if this stays, `pcdviz app --render server` draws with Gradio\'s own plotly.';
  };
  function firstPlot() {
    if (!pcd.Plotly || plotEl()) return;
    const box = document.querySelector(BOX), el = document.querySelector('#pcd-page-data textarea, #pcd-page-data input');
    if (box && el && el.value) pcd.setData(el.value, true);
    else setTimeout(firstPlot, 10);
  }

  // A local change: recolour in the page, or ask the server (the hidden redraw button) when the bundle cannot.
  // Returns the status line (or the current one, unchanged, when nothing needs doing).
  pcd.local = function (a, status) {
    loadInitial();
    const s = settingsOf(a), key = JSON.stringify(s), gd = plotEl();
    pcd.settings = s;
    if (key === pcd.lastKey) return status;
    if (!gd || !pcd.Plotly || !R().canRecolor(pcd.bundle, s)) {
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
