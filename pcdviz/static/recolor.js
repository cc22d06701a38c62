// pcdviz: a view's colours, range, titles and status line from the page bundle (pcdviz/pagedata.py) and the
// settings, with no server round trip (issue 16). It follows attention_views.patch_values, _panel,
// attention_view, _caption_notes and _color_limits (pcdviz/attention_views.py) step by step, with numpy's float32 and
// float64 rounding where the server has it, so the colours equal /view's: tests/test_page_colours.py runs
// this file (node) against Explorer.view, tests/test_browser.py the page against the /view endpoint.
(function (root) {
  'use strict';
  const f32 = Math.fround;
  const TYPES = {f4: Float32Array, u1: Uint8Array, u2: Uint16Array, i4: Int32Array};

  function decode(a) {  // {"dtype", "b64"} -> typed array (little-endian, as pagedata writes it)
    if (!a || a.b64 === undefined) return a;
    const bin = (typeof atob === 'function') ? atob(a.b64) : Buffer.from(a.b64, 'base64').toString('binary');
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TYPES[a.dtype](bytes.buffer);
  }

  function prepare(bundle) {  // decode every array once; the bundle is then used for many recolours
    if (!bundle || bundle.__ready) return bundle;
    for (const src of bundle.sources || []) {
      for (const k of src.k) for (const key of Object.keys(k)) if (k[key] && k[key].b64 !== undefined) k[key] = decode(k[key]);
      for (const key of ['groups', 'centers']) if (src[key]) src[key] = decode(src[key]);
    }
    bundle.__ready = true;
    return bundle;
  }

  // numpy's pairwise summation (float64, or float32 with f32 = true), as np.sum / np.mean use it
  function pairwise(a, lo, n, single) {
    const r = single ? f32 : (x => x);
    if (n < 8) { let s = 0; for (let i = lo; i < lo + n; i++) s = r(s + a[i]); return s; }
    if (n <= 128) {
      const p = [a[lo], a[lo + 1], a[lo + 2], a[lo + 3], a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]].map(r);
      let i = 8;
      for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) p[j] = r(p[j] + a[lo + i + j]);
      let s = r(r(r(p[0] + p[1]) + r(p[2] + p[3])) + r(r(p[4] + p[5]) + r(p[6] + p[7])));
      for (; i < n; i++) s = r(s + a[lo + i]);
      return s;
    }
    let n2 = Math.floor(n / 2); n2 -= n2 % 8;
    return r(pairwise(a, lo, n2, single) + pairwise(a, lo + n2, n - n2, single));
  }
  const sum64 = a => pairwise(a, 0, a.length, false);
  const mean32 = a => f32(pairwise(a, 0, a.length, true) / a.length);

  // _fuse_heads over H rows of length n starting at off, stride between heads: one head, or mean/max/min
  function fuse(x, off, stride, H, n, head) {
    const out = new Float32Array(n);
    if (typeof head === 'number') { for (let g = 0; g < n; g++) out[g] = x[off + head * stride + g]; return out; }
    for (let g = 0; g < n; g++) {
      let s = x[off + g];
      for (let h = 1; h < H; h++) {
        const v = x[off + h * stride + g];
        s = head === 'mean' ? f32(s + v) : head === 'max' ? Math.max(s, v) : Math.min(s, v);
      }
      out[g] = head === 'mean' ? f32(s / H) : s;
    }
    return out;
  }

  function multipleOfUniform(v) {  // attention.multiple_of_uniform
    const m = sum64(v) / v.length, out = new Float32Array(v.length);
    if (m > 0) for (let i = 0; i < v.length; i++) out[i] = f32(v[i] / m);
    return out;
  }

  function uniformDeviation(v) {  // attention.uniform_deviation
    if (!v.length || !(mean32(v) > 0)) return Infinity;
    const m = multipleOfUniform(v);
    let d = 0;
    for (let i = 0; i < m.length; i++) d = Math.max(d, Math.abs(f32(m[i] - 1)));
    return d;
  }

  function massThreshold(v, keep) {  // attention.mass_threshold: the largest entries holding `keep` of the mass
    const n = v.length, c = Float64Array.from(v, x => Math.max(x, 0)), mask = new Uint8Array(n);
    const total = sum64(c);
    if (keep <= 0 || total <= 0) return mask;
    const order = Array.from({length: n}, (_, i) => i).sort((a, b) => (c[b] - c[a]) || (a - b));
    let cum = 0, nKeep = n;
    for (let i = 0; i < n; i++) { cum += c[order[i]]; if (cum / total >= keep - 1e-9) { nKeep = i + 1; break; } }
    for (let i = 0; i < nKeep; i++) mask[order[i]] = 1;
    return mask;
  }

  function toDisplay(k, vals) {  // MapsView.to_display: attention.to_points' sparse rule, then nearest input point
    const onInput = new Float64Array(k.N), pg = k.pg;
    if (k.pw) {   // the smooth rule (averaged maps): k.per entries per input point, in order
      const pw = k.pw, per = k.per;
      for (let e = 0; e < pg.length; e++) onInput[(e / per) | 0] += vals[pg[e]] * pw[e];
    } else {      // the groups rule: weight 1 / count
      const pp = k.pp, pc = k.pc;
      for (let e = 0; e < pp.length; e++) onInput[pp[e]] += vals[pg[e]] * (1 / pc[e]);
    }
    const near = k.near, out = new Float32Array(near.length);
    for (let m = 0; m < near.length; m++) out[m] = onInput[near[m]];   // float32 as astype(np.float32)
    return out;
  }

  const layerIndex = (layer, L) => (layer < 0 || layer >= L) ? L - 1 : layer;
  const headValue = (head, H) => ['mean', 'max', 'min'].includes(head) ? head : Math.min(parseInt(head, 10), H - 1);
  function roundHalfEven(x) {
    const r = Math.round(x);
    return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }
  function relativeLayer(layer, nFrom, nTo) {  // explorer.relative_layer
    layer = layerIndex(layer, nFrom);
    if (nFrom === nTo) return layer;
    return nFrom <= 1 ? nTo - 1 : roundHalfEven(layer * (nTo - 1) / (nFrom - 1));
  }
  const pct = x => (x * 100).toFixed(0) + '%';

  function patchValues(src, k, s, q) {  // Explorer.patch_values for patching k (q: that patching's query)
    const {L, H, G} = src, c = src.cls, kk = src.k[k];
    const layer = layerIndex(s.layer, L), head = headValue(s.head, H);
    const htxt = typeof head === 'number' ? `head ${head}` : `${head} of heads`;
    const extra = {layer: layer, head: head};
    let vals, title;
    if (s.mode === 'cls' || s.mode === 'heads') {
      vals = fuse(kk.glob, layer * H * G, G, H, G, head);
      title = (c ? 'CLS → patches' : 'mean attention received (no CLS token)') + ` · layer ${layer} · ${htxt}`;
    } else if (s.mode === 'rollout') {
      const fusion = typeof head === 'string' ? head : 'mean';
      vals = kk.roll.slice(['mean', 'max', 'min'].indexOf(fusion) * G, (['mean', 'max', 'min'].indexOf(fusion) + 1) * G);
      extra.layer = null; extra.head = fusion;
      title = `rollout over ${L} layers · ${fusion} of heads`;
    } else if (s.mode === 'query') {
      const T = G + c, row = fuse(kk.att, ((layer * H) * T + (c + q)) * T, T * T, H, T, head);
      vals = row.slice(c);
      extra.query = q;
      title = `patch ${q} → patches · layer ${layer} · ${htxt}` + (c ? ` · to CLS ${row[0].toFixed(3)}` : '');
    } else {
      throw new Error(`the page cannot draw the ${s.mode} view by itself`);
    }
    extra.deviation = uniformDeviation(vals);
    extra.level = s.units === 'uniform' ? 1.0 : mean32(vals);
    if (s.units === 'uniform') vals = multipleOfUniform(vals);
    if (s.keep < 1) {
      const mask = massThreshold(vals, s.keep);
      vals = Float32Array.from(vals, (v, i) => mask[i] ? v : 0);
      title += ` · top ${pct(s.keep)} of mass`;
    }
    return {vals, title, extra};
  }

  function panel(b, src, s, mainQuery, prefix) {  // attention_views._panel: patching 0's title, values over all patchings
    const K = src.k.length, q = i => src.k[i].qmap[mainQuery];
    const first = patchValues(src, 0, s, q(0)), extra = first.extra;
    let values = toDisplay(src.k[0], first.vals), title = first.title;
    if (K > 1) {
      const acc = Float64Array.from(values);
      for (let i = 1; i < K; i++) {
        const pk = patchValues(src, i, s, q(i)), d = toDisplay(src.k[i], pk.vals);
        for (let m = 0; m < acc.length; m++) acc[m] += d[m];
        extra.deviation = Math.max(extra.deviation, pk.extra.deviation);
      }
      values = Float32Array.from(acc, x => x / K);
      title += ` · mean of ${K} patchings`;
    }
    extra.nearUniform = extra.deviation <= b.tol;
    if (extra.nearUniform) title += ` · near uniform (±${pct(extra.deviation)})`;
    return {title: prefix + title, values, extra, src};
  }

  function highlightMask(src, q) {  // MapsView.patch_mask on the displayed points (patching 0's group of q)
    const k = src.k[0], inGroup = new Uint8Array(k.N), gk = src.gk;
    for (let j = 0; j < gk; j++) inGroup[src.groups[q * gk + j]] = 1;
    return Uint8Array.from(k.near, n => inGroup[n]);
  }

  function percentile(sorted, p) {  // np.percentile, linear
    const idx = p / 100 * (sorted.length - 1), lo = Math.floor(idx), hi = Math.min(lo + 1, sorted.length - 1), t = idx - lo;
    const a = sorted[lo], d = sorted[hi] - a;
    return t >= 0.5 ? sorted[hi] - d * (1 - t) : a + d * t;
  }

  function colorLimits(arrays, how, level) {  // explorer._color_limits
    let n = 0, mx = -Infinity, mn = Infinity;
    for (const a of arrays) for (let i = 0; i < a.length; i++) { const v = a[i]; if (isFinite(v)) { n++; if (v > mx) mx = v; if (v < mn) mn = v; } }
    if (how === 'auto' && level === null) return [-1, 1];
    if (n === 0) return [0, 1];
    let lo, hi;
    if (how === 'auto') { lo = 0; hi = Math.max(mx, 2 * level); }
    else if (how === 'zero') { lo = 0; hi = mx; }
    else if (how === 'robust') {
      const all = new Float32Array(n); let j = 0;
      for (const a of arrays) for (let i = 0; i < a.length; i++) if (isFinite(a[i])) all[j++] = a[i];
      all.sort();
      lo = percentile(all, 2); hi = percentile(all, 98);
    } else { lo = mn; hi = mx; }
    if (!(hi > lo)) hi = lo + 1e-6;
    return [lo, hi];
  }

  function autoPointSize(n, panels) {  // explorer.auto_point_size
    const size = 3.0 * Math.sqrt(2048 / Math.max(n, 1)) * (panels > 2 ? 0.75 : 1.0);
    return Math.min(Math.max(size, 1.0), 3.5);
  }

  // The whole view: {panels: [{title, values, highlight, cmin, cmax}], caption, colorscale, colorbarTitle, size}
  function recolor(b, s) {
    prepare(b);
    const names = b.names, main = b.sources[0], K = b.patchings;
    const query = Math.min(Math.max(s.query | 0, 0), main.G - 1);
    const panels = [];
    let caption;
    if (names.length === 1 && s.mode === 'heads') {
      const layer = layerIndex(s.layer, main.L);
      for (let h = 0; h < main.H; h++) {
        const p = panel(b, main, Object.assign({}, s, {head: String(h)}), query, '');
        p.title = `head ${h}` + (p.extra.nearUniform ? ' · near uniform' : '');
        panels.push(p);
      }
      const what = main.cls ? 'CLS → patches' : 'mean attention received (the model has no CLS token)';
      caption = `${what}, all ${main.H} heads of layer ${layer}` + (s.keep < 1 ? `, top ${pct(s.keep)} of mass` : '');
      if (K > 1) caption += ` · mean of ${K} patchings`;
    } else {
      b.sources.forEach((src, i) => {
        const sp = Object.assign({}, s, {layer: relativeLayer(s.layer, main.L, src.L)});
        const p = panel(b, src, sp, query, names.length === 1 ? '' : `${src.name}: `);
        if (s.mode === 'query') p.highlight = highlightMask(src, p.extra.query);
        panels.push(p);
      });
      caption = names.length === 1 ? panels[0].title : `${names.length} checkpoints · ${panels[0].title}`;
    }
    caption += notes(b, s, panels) + (b.note || '');
    const shared = names.length > 1 || s.mode === 'heads';
    const lims = shared ? Array(panels.length).fill(colorLimits(panels.map(p => p.values), s.color_range, panels[0].extra.level))
                        : panels.map(p => colorLimits([p.values], s.color_range, p.extra.level));
    panels.forEach((p, i) => { p.cmin = lims[i][0]; p.cmax = lims[i][1]; });
    const size = Number(s.point_size) || autoPointSize(b.M, panels.length);
    return {panels, caption, colorscale: b.colorscales[s.colorscale] || s.colorscale,
            colorbarTitle: s.units === 'uniform' ? '× uniform<br>(1 = even)' : 'attention<br>weight',
            size, symbol: size <= b.square_max ? 'square' : 'circle'};   // render.marker_symbol
  }

  function notes(b, s, panels) {  // attention_views._caption_notes
    let out = '';
    const flat = panels.filter(p => p.extra.nearUniform);
    if (flat.length) {
      const which = panels.length === 1 ? 'the map is' : `${flat.length} of ${panels.length} maps are`;
      const looks = s.color_range === 'auto' ? 'so the colours stay nearly flat (an untrained model looks like this)'
                                              : `so the contrast the '${s.color_range}' colour range gives it is noise`;
      out += ` · ⚠️ near uniform: ${which} within ±${pct(b.tol)} of uniform on every patch, ${looks}`;
    }
    if (s.mode === 'query') {
      const main = b.sources[0], head = headValue(s.head, main.H), dep = main.dep[String(head)];
      const layer = panels[0].extra.layer || 0;
      let best = 0;
      dep.forEach((d, i) => { if (d > dep[best]) best = i; });
      out += ' · query dependence by layer: ' + dep.map((d, i) => `${i}: ${d.toFixed(3)}`).join(' · ');
      if (dep[layer] < b.qlow) {
        out += ` · ⚠️ at layer ${layer} every query patch gets nearly the same map (dependence ` +
               `${dep[layer].toFixed(3)} < ${b.qlow}; 0 = identical maps); layer ${best} differs most`;
      }
    }
    return out;
  }

  // Whether this bundle lets the page draw these settings by itself (else the page asks the server).
  function canRecolor(b, s) {
    return !!(b && b.local && b.local.includes(s.mode) && b.mode === s.mode && b.sources && b.sources.length);
  }

  const api = {prepare, recolor, canRecolor, decode};
  root.pcdvizRecolor = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
