"""Synthetic objects: lamp, mug, bottle, vase, guitar, car, tower, rocket and airplane (generators for
pcdviz.data.synthetic).

Each generator adds its parts' triangles to a _Shape from proportions it draws from `rng`; airplane and car
noses point to +x, and upright objects (rocket, tower, bottle, lamp, guitar) grow along +y. Units are roughly
metres.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .synthetic_primitives import (Y_TO_X, Y_TO_Z, _basis_to, _beam, _box, _cylinder, _ellipsoid, _place, _prism,
                                   _revolve, _rot_x, _rot_z, _strip, _tube)

if TYPE_CHECKING:
    from .synthetic import _Shape


def _lamp(rng, m: _Shape) -> None:
    U = rng.uniform
    kind = rng.choice(["table", "floor", "desk"], p=[0.45, 0.3, 0.25])
    if kind == "desk":   # articulated arm with a cone shade
        br, bh = U(0.06, 0.1), U(0.015, 0.04)
        m.add("base", _cylinder(br, bh, n_seg=20))
        a1, a2 = U(0.25, 0.45), U(0.22, 0.4)
        ang1, ang2 = U(0.0, 0.5), U(0.8, 1.6)   # from vertical, towards +x
        p0 = np.array([0, bh, 0])
        p1 = p0 + a1 * np.array([np.sin(ang1), np.cos(ang1), 0])
        p2 = p1 + a2 * np.array([np.sin(ang2), np.cos(ang2), 0])
        pr = U(0.006, 0.012)
        m.add("pole", _beam(p0, p1, 2 * pr, True), _beam(p1, p2, 2 * pr, True),
              _ellipsoid((pr * 1.8,) * 3, p1, n_seg=8, n_ring=5))
        sl, r0, r1 = U(0.1, 0.17), U(0.015, 0.03), U(0.05, 0.09)
        ang = U(0.2, 0.8)
        down = np.array([np.sin(ang), -np.cos(ang), 0])   # the shade points down and outwards
        m.add("shade", _revolve([0, r0, r1], [0, 0, sl], 20, p2 - down * 0.02, _basis_to(down)))
        return
    floor = kind == "floor"
    br = U(0.12, 0.2) if floor else U(0.06, 0.12)
    if floor or rng.random() < 0.5:   # a disc or dome base
        bh = U(0.015, 0.04)
        m.add("base", _revolve([0, br, br * U(0.6, 1.0), br * 0.3], [0, 0, bh, bh * 1.5], 24))
        body_h = bh * 1.5
    else:                               # a bulbous ceramic body
        body_h = U(0.1, 0.28)
        a = np.linspace(0, 1, 12)
        rb = br * (0.6 + 0.4 * np.sin(np.pi * a) ** U(0.5, 1.5))
        rb[-1] = br * 0.15
        m.add("base", _revolve(np.r_[0, rb], np.r_[0, a * body_h], 20))
    pole_len = U(1.2, 1.7) if floor else U(0.1, 0.35)
    pr = U(0.008, 0.016) if floor else U(0.006, 0.012)
    m.add("pole", _cylinder(pr, pole_len, (0, body_h, 0), caps=(False, True), n_seg=10))
    sr = U(0.15, 0.25) if floor else U(0.1, 0.2)
    sh = sr * U(0.6, 1.3)
    top_r = sr * U(0.45, 0.9)
    prof = np.linspace(0, 1, 5)
    bell = U(-0.3, 0.3)   # straight, bell or flared sides
    r = sr + (top_r - sr) * prof + bell * sr * np.sin(np.pi * prof) * 0.3
    y0 = body_h + pole_len - sh * U(0.4, 0.8)
    m.add("shade", _revolve(r, y0 + prof * sh, 28))


def _mug(rng, m: _Shape) -> None:
    U = rng.uniform
    r, w = U(0.035, 0.05), U(0.004, 0.008)
    h = r * U(1.3, 3.2)
    rt = r * U(0.95, 1.18)   # slight taper either way
    prof_r = [0, r, rt, rt - w, r - w, 0]
    prof_y = [0, 0, h, h, w * 1.5, w * 1.5]
    m.add("body", _revolve(prof_r, prof_y, 28))
    hh = h * U(0.5, 0.78)
    yc = h * U(0.45, 0.58)
    ex = U(0.02, 0.038)
    sq = U(1.0, 2.5)   # squarer handles for larger exponents
    a = np.linspace(-np.pi / 2, np.pi / 2, 17)
    c, s = np.cos(a), np.sin(a)
    cx = np.sign(c) * np.abs(c) ** (1 / sq)
    sy = np.sign(s) * np.abs(s) ** (1 / sq)
    wall = r + (rt - r) * (yc / h)
    path = np.stack([wall - w + ex * cx, yc + hh / 2 * sy, np.zeros_like(a)], axis=1)
    m.add("handle", _tube(path, U(0.004, 0.008), 8))


def _bottle(rng, m: _Shape) -> None:
    U = rng.uniform
    R = U(0.03, 0.05)
    hb = R * U(2.0, 6.0)
    hs = R * U(0.3, 1.6)
    rn = R * U(0.22, 0.45)
    hn = R * U(0.5, 3.0)
    s = np.linspace(0, 1, 9)
    waist = U(0.85, 1.0) if rng.random() < 0.4 else 1.0
    body_r = np.r_[0, R * 0.9, R, R * waist, R, rn + (R - rn) * (0.5 + 0.5 * np.cos(np.pi * s[1:]))]
    body_y = np.r_[0, 0, 0.08 * R, hb * 0.5, hb, hb + hs * s[1:]]
    if rng.random() < 0.3:   # a round flask: body is a flattened sphere
        a = np.linspace(-np.pi / 2, np.pi / 2, 12)
        ry = hb / 2
        body_r = np.r_[0, R * np.cos(a[1:])]
        body_r[-1] = rn
        body_y = np.r_[0, ry + ry * np.sin(a[1:])]
        body_y[-1] = 2 * ry - 0.02 * R
    m.add("body", _revolve(body_r, body_y, 24))
    y0 = body_y[-1]
    lip = rn * U(1.0, 1.2)
    m.add("neck", _revolve([rn, rn, lip, lip], [y0, y0 + hn, y0 + hn, y0 + hn + 0.1 * R], 16))
    ch, cr = R * U(0.3, 0.9), lip * U(1.05, 1.25)
    ytop = y0 + hn + 0.1 * R
    m.add("cap", _revolve([rn, cr, cr, 0], [ytop - ch * 0.6] * 2 + [ytop + ch * 0.4] * 2, 16))


def _vase(rng, m: _Shape) -> None:
    U = rng.uniform
    H = U(1.4, 3.6)
    rf, tm, rt = U(0.35, 0.75), U(0.2, 0.7), U(0.22, 0.65)
    t = np.linspace(0, 1, 17)
    up = t < tm
    r = np.where(up, rf + (1 - rf) * np.sin(np.pi / 2 * np.clip(t / tm, 0, 1)),
                 rt + (1 - rt) * np.cos(np.pi / 2 * np.clip((t - tm) / (1 - tm), 0, 1)))
    m.add("body", _revolve(np.r_[0, r], np.r_[0, t * H], 28))
    hn = H * U(0.12, 0.5)
    rl = rt * U(1.0, 1.8)
    pinch = U(0.0, 0.25)
    s = np.linspace(0, 1, 8)
    rn = rt * (1 - pinch * np.sin(np.pi * s)) + (rl - rt) * s ** 2
    wall = 0.04
    # neck outside, rim, and a short inside wall so the opening reads as open
    m.add("neck", _revolve(np.r_[rn, rl - wall, rn[-1:0:-1][:3] - wall],
                           np.r_[H + s * hn, H + hn, H + hn * s[-1:0:-1][:3]], 28))


def _guitar(rng, m: _Shape) -> None:
    U = rng.uniform
    a1 = 0.19 * U(0.88, 1.12)
    a2 = a1 * U(0.66, 0.85)
    c1, c2 = a1, a1 + (a1 + a2) * U(0.68, 0.82)
    Lb = c2 + a2
    waist = a2 * U(0.55, 0.8)
    y = Lb * (1 - np.cos(np.pi * np.linspace(0, 1, 33))) / 2
    w = np.maximum(np.sqrt(np.clip(a1 ** 2 - (y - c1) ** 2, 0, None)),
                   np.sqrt(np.clip(a2 ** 2 - (y - c2) ** 2, 0, None)))
    w = np.where((y > c1) & (y < c2), np.maximum(w, waist), w)
    electric = rng.random() < 0.3
    T = U(0.035, 0.05) if electric else U(0.07, 0.12)
    m.add("body", _strip(y, -w, w, T))
    if not electric:   # bridge
        m.add("body", _box((a1 * 0.8, 0.02, 0.012), (0, c1 * U(0.6, 0.9), T / 2 + 0.006)))
    nw, nd = U(0.045, 0.06), U(0.02, 0.03)
    top = Lb + U(0.38, 0.5)
    zc = T / 2 + 0.008 - nd / 2
    m.add("neck", _strip([c2 - a2 * 0.3, top], [-nw / 2, -nw * 0.55], [nw / 2, nw * 0.55], nd, (0, 0, zc)))
    hl, hw, tilt = U(0.14, 0.2), U(0.065, 0.09), U(0.08, 0.25)
    hv = np.array([0, hl * 0.3, hl])
    head = [_strip(hv, [-nw * 0.55, -hw / 2, -hw * 0.42], [nw * 0.55, hw / 2, hw * 0.42], 0.016)]
    for i in range(3):   # tuning pegs, three a side
        py = hl * (0.35 + 0.22 * i)
        for sx in (-1, 1):
            head.append(_cylinder(0.005, 0.025, (sx * hw * 0.45, py, 0), _rot_z(-sx * np.pi / 2), n_seg=6))
    m.add("head", _place(np.concatenate(head), (0, top, zc), _rot_x(-tilt)))


def _car(rng, m: _Shape) -> None:
    U = rng.uniform
    kind = rng.choice(["sedan", "hatch", "suv", "pickup"], p=[0.35, 0.25, 0.25, 0.15])
    W, wr = U(0.38, 0.46), U(0.065, 0.09)
    gc = wr * U(0.45, 0.7)   # body sill height
    hb = U(0.16, 0.22) if kind in ("suv", "pickup") else U(0.12, 0.17)
    dxf, dyf = U(0.04, 0.12), hb * U(0.25, 0.6)
    dxr, dyr = U(0.01, 0.06), hb * U(0.1, 0.4)
    wx_f, wx_r = U(0.29, 0.36), U(0.29, 0.36)
    # side profile over x: sill with two wheel arches below, bonnet and boot chamfers above
    x = np.linspace(-0.5, 0.5, 61)
    bottom = np.full_like(x, gc)
    for wx in (wx_f, -wx_r):
        arch = wr * 1.12
        inside = np.abs(x - wx) < arch
        bottom[inside] = np.maximum(gc, wr + np.sqrt(arch ** 2 - (x[inside] - wx) ** 2))
    top = np.interp(x, [-0.5, -0.5 + dxr, 0.5 - dxf, 0.5],
                    [gc + hb - dyr, gc + hb, gc + hb, gc + hb - dyf])
    bottom = np.minimum(bottom, top - 0.02)
    bottom[[0, -1]] += 0.015   # rounded bumpers
    M = np.stack([[0, 1, 0], [1, 0, 0], [0, 0, 1]], axis=1)   # u = up, v = along the car, w = across
    m.add("body", _strip(x, bottom, top, W, M=M))
    y0 = gc + hb
    if kind == "sedan":
        xr, xf, hc = U(-0.33, -0.18), U(0.08, 0.22), U(0.1, 0.14)
        sr, sf = (xf - xr) * U(0.15, 0.3), (xf - xr) * U(0.2, 0.35)
    elif kind == "hatch":
        xr, xf, hc = U(-0.49, -0.44), U(0.1, 0.25), U(0.11, 0.15)
        sr, sf = (xf - xr) * U(0.04, 0.15), (xf - xr) * U(0.15, 0.3)
    elif kind == "suv":
        xr, xf, hc = U(-0.49, -0.46), U(0.1, 0.22), U(0.12, 0.17)
        sr, sf = (xf - xr) * U(0.0, 0.05), (xf - xr) * U(0.1, 0.2)
    else:
        xr, xf, hc = U(-0.15, -0.02), U(0.15, 0.25), U(0.12, 0.16)
        sr, sf = (xf - xr) * U(0.0, 0.05), (xf - xr) * U(0.15, 0.3)
        bed_l = xr + 0.5   # open load bed: side walls and tailgate
        for sz in (-1, 1):
            m.add("body", _box((bed_l - 0.02, 0.07, 0.02), (-0.5 + bed_l / 2, y0 + 0.035, sz * (W / 2 - 0.01))))
        m.add("body", _box((0.02, 0.07, W), (-0.49, y0 + 0.035, 0)))
    cabin = [(xr, y0), (xf, y0), (xf - sf, y0 + hc), (xr + sr, y0 + hc)]
    m.add("cabin", _prism(cabin, W * U(0.78, 0.92)))
    ww = U(0.05, 0.085)
    for wx in (wx_f, -wx_r):
        for sz in (-1, 1):
            z = sz * (W / 2 - ww / 2 + U(0.0, 0.015))
            m.add("wheels", _revolve([0, wr * 0.6, wr, wr, wr * 0.6, 0],
                                     [0, 0, ww * 0.15, ww * 0.85, ww, ww], 18, (wx, wr, z - ww / 2), Y_TO_Z))


def _tower(rng, m: _Shape) -> None:
    U = rng.uniform
    section = rng.choice(["square", "octagon", "round"])
    n_seg, phase, k = {"square": (4, np.pi / 4, np.sqrt(2)), "octagon": (8, np.pi / 8, 1 / np.cos(np.pi / 8)),
                       "round": (24, 0.0, 1.0)}[section]

    def block(width, y0, h):
        r = width / 2 * k
        return _revolve([0, r, r, 0], [y0, y0, y0 + h, y0 + h], n_seg, phase=phase)

    w = 1.0
    ph = U(0.05, 0.2)
    m.add("base", block(w * U(1.2, 1.7), 0.0, ph))
    y = ph
    n = int(rng.integers(2, 6))
    ledges = rng.random() < 0.5
    shrink = U(0.6, 0.88)
    for i in range(n):
        h = w * U(0.8, 2.4) * (1.3 if i == 0 else 1.0)
        m.add("tiers", block(w, y, h))
        y += h
        if ledges:
            m.add("tiers", block(w * 1.15, y, 0.05 * w))
            y += 0.05 * w
        w *= shrink
    sh = w * U(0.8, 3.5)
    sr = w / 2 * k * U(0.6, 1.0)
    m.add("spire", _revolve([0, sr, 0], [y, y, y + sh], n_seg, phase=phase))
    if rng.random() < 0.5:
        m.add("spire", _cylinder(w * 0.03, sh * U(0.3, 0.8), (0, y + sh * 0.9, 0), n_seg=6))


def _rocket(rng, m: _Shape) -> None:
    U = rng.uniform
    R, Hb = 1.0, U(6.0, 14.0)
    if rng.random() < 0.4:   # two stages joined by an interstage
        ys = Hb * U(0.45, 0.75)
        Rt = R * U(0.65, 0.9)
        m.add("body", _revolve([0, R, R, Rt, Rt], [0, 0, ys, ys + 0.6, Hb], 24))
    else:
        Rt = R
        m.add("body", _revolve([0, R, R], [0, 0, Hb], 24))
    ln, kexp = Rt * U(1.5, 4.0), U(0.5, 1.0)
    s = np.linspace(0, 1, 10)
    m.add("nose_cone", _revolve(Rt * np.cos(s * np.pi / 2) ** kexp, Hb + s * ln, 24))
    n = int(rng.choice([3, 4]))
    cr = R * U(1.5, 3.5)
    ct, span = cr * U(0.2, 0.7), R * U(0.8, 2.2)
    drop = U(0.2, 1.0) * (cr - ct)
    y0 = R * U(-0.6, 0.3)
    fin_phase = rng.uniform(0, np.pi)
    for a in fin_phase + np.arange(n) * 2 * np.pi / n:
        # local u = height, v = radial distance, w = across the fin
        M = np.stack([[0, 1, 0], [np.cos(a), 0, np.sin(a)], [-np.sin(a), 0, np.cos(a)]], axis=1)
        m.add("fins", _strip([R * 0.95, R + span], [y0, y0 - drop], [y0 + cr, y0 - drop + ct], 0.08 * R, M=M))
    r_throat, r_exit, nl = R * U(0.3, 0.55), R * U(0.55, 0.85), R * U(0.5, 1.2)
    s = np.linspace(0, 1, 6)
    m.add("nozzle", _revolve(r_throat + (r_exit - r_throat) * s ** 0.6, -s * nl, 20))
    if rng.random() < 0.35:
        k = int(rng.choice([2, 4]))
        rb, hb = R * U(0.3, 0.5), Hb * U(0.35, 0.6)
        lb = rb * U(1.5, 3.0)
        s = np.linspace(0, 1, 6)
        prof_r = np.r_[0, rb * 0.6, rb, rb * np.cos(s[1:] * np.pi / 2) ** 0.7]
        prof_y = np.r_[-rb * 0.6, -rb * 0.6, 0, hb + s[1:] * lb]
        prof_r[-1] = 0
        for a in fin_phase + np.pi / n + np.arange(k) * 2 * np.pi / k:
            m.add("boosters", _revolve(prof_r, prof_y, 14, ((R + rb) * np.cos(a), 0, (R + rb) * np.sin(a))))


def _airplane(rng, m: _Shape) -> None:
    U = rng.uniform
    fighter = rng.random() < 0.3
    rf = U(0.035, 0.065)
    nose_l, tail_l = U(0.05, 0.14), U(0.18, 0.32)
    r_tail = rf * U(0.15, 0.35)
    s = np.linspace(0, 1, 28)
    r = np.full_like(s, rf)
    tail = s < tail_l
    r[tail] = r_tail + (rf - r_tail) * (s[tail] / tail_l) ** 0.7
    nose = s > 1 - nose_l
    r[nose] = rf * np.sqrt(np.clip(1 - ((s[nose] - (1 - nose_l)) / nose_l) ** 2, 0, 1))
    m.add("fuselage", _revolve(np.r_[0, r], np.r_[0, s] - 0.5, 20, R=Y_TO_X))
    # wings: trapezoid planform per side, local u = x (chord), v = span, w = thickness
    if fighter:
        cr, span = U(0.35, 0.5), U(0.18, 0.3)
        ct = U(0.02, 0.08)
        sweep = (cr - ct) * U(0.8, 1.0)
        x_le = U(0.05, 0.2)
    else:
        cr, span = U(0.13, 0.26), U(0.36, 0.62)
        ct = cr * U(0.25, 0.5)
        sweep = span * U(0.1, 0.55)
        x_le = U(0.0, 0.18)
    dih, wy, th = U(0.0, 0.1), -rf * U(0.0, 0.7), U(0.012, 0.025)
    for side in (-1, 1):
        M = np.stack([[1, 0, 0], [0, np.sin(dih), side * np.cos(dih)], [0, np.cos(dih), -side * np.sin(dih)]], axis=1)
        m.add("wings", _strip([0, span], [x_le - cr, x_le - sweep - ct], [x_le, x_le - sweep], [th, th * 0.5],
                              (0, wy, 0), M))
    # vertical fin: local u = x, v = up
    fc = U(0.1, 0.2) * (1.3 if fighter else 1.0)
    fhgt = U(0.1, 0.2)
    fsweep = fc * U(0.3, 0.9)
    fct = fc * U(0.3, 0.6)
    xt = -0.5 + 0.02
    m.add("tail_fin", _strip([0, fhgt], [xt, xt + fsweep], [xt + fc, xt + fsweep + fct], 0.01,
                             (0, r_tail * 0.5, 0)))
    sc, sspan = U(0.06, 0.12), U(0.09, 0.2) * (0.7 if fighter else 1.0)
    ssweep = sc * U(0.3, 0.8)
    for side in (-1, 1):
        M = np.stack([[1, 0, 0], [0, 0, side], [0, 1, 0]], axis=1)
        m.add("stabilizers", _strip([0, sspan], [xt + 0.01, xt + 0.01 + ssweep],
                                    [xt + 0.01 + sc, xt + 0.01 + ssweep + sc * 0.5], 0.008,
                                    (0, r_tail * 0.8, 0), M))
    if not fighter and rng.random() < 0.85:
        re, le = U(0.018, 0.032), U(0.08, 0.14)
        stations = [U(0.28, 0.4)] if rng.random() < 0.65 else [U(0.25, 0.32), U(0.55, 0.7)]
        for f in stations:
            z = f * span
            x_front = x_le - sweep * f + le * U(0.3, 0.6)
            y = wy + np.sin(dih) * z - re * 1.4
            prof_r = [0, re * 0.75, re, re, re * 0.6, 0]
            prof_y = [0, 0, le * 0.15, le * 0.7, le, le]
            for side in (-1, 1):
                m.add("engines", _revolve(prof_r, -np.asarray(prof_y), 16, (x_front, y, side * z), Y_TO_X),
                      _box((le * 0.4, re * 0.8, 0.006), (x_front - le * 0.5, y + re * 1.0, side * z)))
