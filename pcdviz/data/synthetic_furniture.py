"""Synthetic furniture: chair, bench, sofa, stool, table, desk and bed (generators for pcdviz.data.synthetic).

Each generator adds its parts' triangles to a _Shape from proportions it draws from `rng`; furniture faces +z
(a chair's back is at -z) and a bed's headboard is at -x. Units are roughly metres.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .synthetic_primitives import Y_TO_Z, _beam, _box, _cylinder, _ellipsoid, _place, _revolve, _rot_x, _tube

if TYPE_CHECKING:
    from .synthetic import _Shape


def _chair(rng, m: _Shape) -> None:
    U = rng.uniform
    W, D, H, t = U(0.40, 0.62), U(0.38, 0.56), U(0.40, 0.50), U(0.025, 0.08)
    m.add("seat", _box((W, t, D), (0, H - t / 2, 0)))
    lt, inset = U(0.025, 0.055), U(0.0, 0.05)
    round_legs = rng.random() < 0.4
    splay = U(0.0, 0.05) if rng.random() < 0.4 else 0.0
    corners = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            top = np.array([sx * (W / 2 - lt / 2 - inset), H - t, sz * (D / 2 - lt / 2 - inset)])
            bottom = top + [sx * splay, -(H - t), sz * splay]
            corners.append((bottom, top))
            m.add("legs", _beam(bottom, top, lt, round_legs))
    if rng.random() < 0.3:   # stretchers between front and back legs
        y = U(0.08, 0.2)
        for sx in (0, 2):
            (b0, t0), (b1, t1) = corners[sx], corners[sx + 1]
            f = y / (H - t)
            m.add("legs", _beam(b0 + (t0 - b0) * f, b1 + (t1 - b1) * f, lt * 0.7, round_legs))
    # back, built around its bottom-back edge then tilted backwards
    BH, bt, tilt = U(0.30, 0.62), U(0.02, 0.06), U(0.0, 0.25)
    bw = W * U(0.85, 1.0)
    style = rng.choice(["panel", "slats", "rails"], p=[0.5, 0.25, 0.25])
    if style == "panel":
        back = [_box((bw, BH, bt), (0, BH / 2, 0))]
    else:
        pw = U(0.025, 0.05)
        rail = U(0.05, 0.12)
        back = [_box((pw, BH, bt), (sx * (bw / 2 - pw / 2), BH / 2, 0)) for sx in (-1, 1)]
        back.append(_box((bw, rail, bt), (0, BH - rail / 2, 0)))
        if style == "slats":
            k = int(rng.integers(2, 5))
            for x in np.linspace(-bw / 2 + pw, bw / 2 - pw, k + 2)[1:-1]:
                back.append(_box((U(0.02, 0.06), BH - rail, bt * 0.6), (x, (BH - rail) / 2, 0)))
        else:
            for yy in np.linspace(0.1, BH - rail, int(rng.integers(1, 3)) + 1)[:-1]:
                back.append(_box((bw - 2 * pw, rail * 0.6, bt * 0.6), (0, yy + rail * 0.3, 0)))
    m.add("back", _place(np.concatenate(back), (0, H, -D / 2 + bt / 2), _rot_x(-tilt)))
    if rng.random() < 0.3:   # armrests on front posts
        ah, aw = U(0.16, 0.26), U(0.04, 0.08)
        for sx in (-1, 1):
            x = sx * (W / 2 - aw / 2)
            m.add("arms", _box((aw, U(0.02, 0.04), D * U(0.75, 0.95)), (x, H + ah, -D * 0.05)),
                  _beam((x, H, D / 2 - 0.05), (x, H + ah, D / 2 - 0.05), aw * 0.6))


def _bench(rng, m: _Shape) -> None:
    U = rng.uniform
    L, D, H, t = U(0.8, 1.8), U(0.28, 0.5), U(0.38, 0.48), U(0.03, 0.07)
    if rng.random() < 0.2:   # upholstered: a thick cushion on a board
        ct = U(0.06, 0.14)
        m.add("seat", _box((L, t, D), (0, H - ct - t / 2, 0)), _box((L * 0.98, ct, D * 0.96), (0, H - ct / 2, 0)))
        H -= ct
    elif rng.random() < 0.4:   # slatted seat: boards along x with gaps
        k = int(rng.integers(3, 6))
        gap = U(0.008, 0.02)
        bd = (D - gap * (k - 1)) / k
        for i in range(k):
            m.add("seat", _box((L, t, bd), (0, H - t / 2, -D / 2 + bd / 2 + i * (bd + gap))))
    else:
        m.add("seat", _box((L, t, D), (0, H - t / 2, 0)))
    inset = U(0.02, 0.18)
    if rng.random() < 0.5:   # four legs
        lt = U(0.03, 0.07)
        round_legs = rng.random() < 0.3
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (L / 2 - lt / 2 - inset), sz * (D / 2 - lt / 2 - U(0.0, 0.04))
                m.add("legs", _beam((x, 0, z), (x, H - t, z), lt, round_legs))
    else:                    # two slab ends
        lt = U(0.04, 0.09)
        sd = D * U(0.75, 1.0)
        for sx in (-1, 1):
            m.add("legs", _box((lt, H - t, sd), (sx * (L / 2 - lt / 2 - inset), (H - t) / 2, 0)))
    if rng.random() < 0.5:   # stretcher along the length
        y = U(0.08, 0.2)
        m.add("legs", _box((L - 2 * inset, 0.04, 0.04), (0, y, 0)))
    if rng.random() < 0.45:  # backrest: long and low
        BH, tilt = U(0.2, 0.42), U(0.05, 0.25)
        pw = U(0.03, 0.06)
        back = [_box((pw, BH, pw), (sx * (L / 2 - inset - pw / 2), BH / 2, 0)) for sx in (-1, 1)]
        nb = int(rng.integers(1, 3))
        bh = U(0.07, 0.16)
        for i in range(nb):
            back.append(_box((L - 2 * inset + 0.1, bh, 0.025), (0, BH - bh / 2 - i * (bh + 0.03), 0.02)))
        m.add("backrest", _place(np.concatenate(back), (0, H, -D / 2 + 0.03), _rot_x(-tilt)))


def _sofa(rng, m: _Shape) -> None:
    U = rng.uniform
    L, D = U(0.9, 2.4), U(0.72, 1.0)
    r = rng.random()
    fh = U(0.04, 0.12) if r < 0.45 else U(0.12, 0.25) if r < 0.65 else 0.0   # short, tall or no feet
    bh = U(0.12, 0.28) if fh < 0.12 else U(0.06, 0.14)
    arms = rng.random() < 0.9
    aw = U(0.08, 0.25) if arms else 0.0
    inner = L - 2 * aw
    base_y = fh + bh
    m.add("base", _box((inner, bh, D), (0, fh + bh / 2, 0)))
    if fh > 0:
        ft = U(0.03, 0.06)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (L / 2 - 0.06), sz * (D / 2 - 0.06)
                m.add("base", _beam((x, 0, z), (x, fh, z), ft, rng.random() < 0.5))
    bt = U(0.12, 0.25)
    back_top = base_y + U(0.3, 0.55)
    back_len = L if rng.random() < 0.5 else inner
    m.add("back", _box((back_len, back_top - fh, bt), (0, (back_top + fh) / 2, -D / 2 + bt / 2)))
    # seat cushions
    ct = U(0.1, 0.18)
    k = max(1, int(round(inner / U(0.55, 0.8))))
    gap = 0.015
    cw = (inner - gap * (k - 1)) / k
    for i in range(k):
        x = -inner / 2 + cw / 2 + i * (cw + gap)
        m.add("seat", _box((cw, ct, D - bt), (x, base_y + ct / 2, bt / 2)))
        if rng.random() < 0.5 and back_top - base_y - ct > 0.25:   # back cushions
            bch = back_top - base_y - ct - 0.03
            m.add("back", _place(_box((cw, bch, U(0.08, 0.14)), (0, bch / 2, 0.05)),
                                 (x, base_y + ct, -D / 2 + bt), _rot_x(-0.12)))
    if arms:
        arm_top = min(base_y + ct + U(0.05, 0.3), back_top - U(0.0, 0.1))
        for sx in (-1, 1):
            x = sx * (L / 2 - aw / 2)
            m.add("arms", _box((aw, arm_top - fh, D), (x, (arm_top + fh) / 2, 0)))
            if rng.random() < 0.4:   # rolled arm top
                m.add("arms", _cylinder(aw * 0.6, D, (x, arm_top, -D / 2), Y_TO_Z, n_seg=14))


def _stool(rng, m: _Shape) -> None:
    U = rng.uniform
    H, t = U(0.45, 0.8), U(0.03, 0.06)
    r = U(0.14, 0.22)
    if rng.random() < 0.7:
        m.add("seat", _cylinder(r, t, (0, H - t, 0), n_seg=24))
    else:
        m.add("seat", _box((2 * r, t, 2 * r), (0, H - t / 2, 0)))
    n = int(rng.choice([3, 4]))
    lt = U(0.02, 0.045)
    r_top, r_bot = r * U(0.55, 0.8), r * U(0.75, 1.35)
    phase = rng.uniform(0, np.pi)
    round_legs = rng.random() < 0.6
    for a in phase + np.arange(n) * 2 * np.pi / n:
        d = np.array([np.cos(a), 0, np.sin(a)])
        m.add("legs", _beam(d * r_bot, d * r_top + [0, H - t, 0], lt, round_legs))
    if rng.random() < 0.55:
        y = H * U(0.25, 0.45)
        rr = r_bot + (r_top - r_bot) * y / (H - t)
        if rng.random() < 0.6:   # ring
            a = np.linspace(0, 2 * np.pi, 33)
            ring = np.stack([rr * np.cos(a), np.full_like(a, y), rr * np.sin(a)], axis=1)
            m.add("footrest", _tube(ring, lt * 0.4, 6, ref=(0, 1, 0)))
        else:                    # crossbars between the legs
            for a in phase + np.arange(n) * 2 * np.pi / n:
                a2 = a + 2 * np.pi / n
                p0 = np.array([rr * np.cos(a), y, rr * np.sin(a)])
                p1 = np.array([rr * np.cos(a2), y, rr * np.sin(a2)])
                m.add("footrest", _beam(p0, p1, lt * 0.7, True))


def _table(rng, m: _Shape) -> None:
    U = rng.uniform
    round_top = rng.random() < 0.3
    L = U(0.6, 2.0)
    D = max(0.45, L * (U(0.8, 1.0) if round_top else U(0.45, 1.0)))
    H, t = U(0.42, 0.78), U(0.02, 0.07)
    if round_top:
        m.add("top", _revolve([0, L / 2, L / 2, 0], [0, 0, t, t], 32, (0, H - t, 0),
                              scale_xz=(1.0, D / L)))
    else:
        m.add("top", _box((L, t, D), (0, H - t / 2, 0)))
    style = rng.choice(["four", "pedestal", "trestle"],
                       p=[0.35, 0.65, 0.0] if round_top else [0.75, 0.05, 0.2])
    if style == "four":
        lt = U(0.03, 0.08)
        round_legs = rng.random() < 0.4
        f = 0.7 if round_top else 1.0
        inset = U(0.0, 0.12)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (f * L / 2 - lt / 2 - inset), sz * (f * D / 2 - lt / 2 - inset)
                # round legs may taper towards the floor
                m.add("legs", _beam((x, 0, z), (x, H - t, z), lt * (U(0.5, 1.0) if round_legs else 1.0),
                                    round_legs, r1=lt / 2 if round_legs else None))
        if rng.random() < 0.5:   # apron under the top
            ah = U(0.05, 0.12)
            ax, az = f * L / 2 - lt / 2 - inset, f * D / 2 - lt / 2 - inset
            for sz in (-1, 1):
                m.add("legs", _box((2 * ax, ah, 0.02), (0, H - t - ah / 2, sz * az)))
            for sx in (-1, 1):
                m.add("legs", _box((0.02, ah, 2 * az), (sx * ax, H - t - ah / 2, 0)))
        if not round_top and rng.random() < 0.35:   # a lower shelf between the legs
            ax, az = f * L / 2 - inset, f * D / 2 - inset
            m.add("shelf", _box((2 * ax, U(0.015, 0.04), 2 * az), (0, U(0.08, 0.35) * H, 0)))
    elif style == "pedestal":
        cr = U(0.04, 0.1)
        m.add("legs", _cylinder(cr, H - t, (0, 0, 0), caps=(False, False), n_seg=16))
        if rng.random() < 0.5:
            fr = min(L, D) / 2 * U(0.4, 0.75)
            m.add("legs", _revolve([0, fr, fr * 0.7, cr], [0, 0, U(0.02, 0.06), U(0.06, 0.1)], 24))
        else:
            fr = min(L, D) / 2 * U(0.5, 0.8)
            for a in np.arange(4) * np.pi / 2 + np.pi / 4:
                m.add("legs", _beam((0, 0.02, 0), (fr * np.cos(a), 0.02, fr * np.sin(a)), 0.04))
    else:   # trestle: two end panels and a stretcher
        pt, inset = U(0.04, 0.08), U(0.05, 0.2)
        for sx in (-1, 1):
            m.add("legs", _box((pt, H - t, D * U(0.55, 0.8)), (sx * (L / 2 - inset), (H - t) / 2, 0)))
        m.add("legs", _box((L - 2 * inset, 0.05, 0.04), (0, U(0.1, 0.3), 0)))


def _desk(rng, m: _Shape) -> None:
    U = rng.uniform
    L, D, H, t = U(0.95, 1.8), U(0.5, 0.8), U(0.68, 0.78), U(0.02, 0.05)
    m.add("top", _box((L, t, D), (0, H - t / 2, 0)))
    side = rng.choice([-1, 1])
    two_pedestals = rng.random() < 0.2
    pw, pd, inset = U(0.3, 0.5), D * U(0.85, 0.97), U(0.0, 0.04)
    plinth = U(0.0, 0.08)
    ph = H - t - plinth
    pz = D / 2 - pd / 2 - 0.01
    k = int(rng.integers(2, 5))
    gap = 0.012
    fronts = rng.dirichlet(np.full(k, 4.0)) * (ph - gap * (k + 1))
    handles = rng.random() < 0.6
    for ps in ((-1, 1) if two_pedestals else (side,)):
        px = ps * (L / 2 - pw / 2 - inset)
        m.add("drawers", _box((pw, ph, pd), (px, plinth + ph / 2, pz)))
        if plinth > 0.01:
            m.add("drawers", _box((pw * 0.9, plinth, pd * 0.9), (px, plinth / 2, pz)))
        y = plinth + ph - gap
        for fh in fronts:
            yc = y - fh / 2
            m.add("drawers", _box((pw - 0.03, fh, 0.015), (px, yc, pz + pd / 2 + 0.0075), skip=("-z",)))
            if handles:
                m.add("drawers", _box((pw * 0.3, 0.015, 0.02), (px, yc + fh * 0.25, pz + pd / 2 + 0.025)))
            y -= fh + gap
    if two_pedestals:
        return
    px = side * (L / 2 - pw / 2 - inset)
    ox = -side * (L / 2 - inset)
    if rng.random() < 0.6:   # two legs on the free side
        lt = U(0.03, 0.06)
        round_legs = rng.random() < 0.4
        for sz in (-1, 1):
            x, z = ox + side * lt / 2, sz * (D / 2 - lt / 2 - U(0.0, 0.04))
            m.add("legs", _beam((x, 0, z), (x, H - t, z), lt, round_legs))
    else:                    # a side panel
        st = U(0.02, 0.05)
        m.add("legs", _box((st, H - t, D * U(0.85, 1.0)), (ox + side * st / 2, (H - t) / 2, 0)))
    if rng.random() < 0.4:   # modesty panel at the back
        mh = U(0.25, 0.45)
        x0, x1 = ox, px - side * pw / 2
        m.add("legs", _box((abs(x1 - x0), mh, 0.02), ((x0 + x1) / 2, H - t - mh / 2, -D / 2 + 0.04)))


def _bed(rng, m: _Shape) -> None:
    U = rng.uniform
    L, W = U(1.9, 2.2), U(0.9, 1.9)
    ftop = U(0.15, 0.4)
    if rng.random() < 0.55:   # rail frame on legs
        rh, lt = U(0.08, 0.18), U(0.04, 0.08)
        m.add("frame", _box((L, rh, W), (0, ftop - rh / 2, 0)))
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (L / 2 - lt / 2), sz * (W / 2 - lt / 2)
                m.add("frame", _beam((x, 0, z), (x, ftop - rh, z), lt, rng.random() < 0.3))
    else:                     # platform down to the floor
        m.add("frame", _box((L, ftop, W), (0, ftop / 2, 0), skip=("-y",)))
    mt = U(0.14, 0.3)
    mtop = ftop + mt
    m.add("mattress", _box((L - 0.04, mt, W - 0.04), (0, ftop + mt / 2, 0), skip=("-y",)))
    if rng.random() < 0.4:   # blanket over the foot end
        bl = (L - 0.04) * U(0.5, 0.75)
        m.add("mattress", _box((bl, 0.03, W + 0.02), ((L - 0.04) / 2 - bl / 2 + 0.01, mtop + 0.012, 0)))
    ht = U(0.04, 0.1)
    head_top = mtop + U(0.3, 0.8)
    head_bottom = 0.0 if rng.random() < 0.6 else ftop * 0.5
    m.add("headboard", _box((ht, head_top - head_bottom, W + U(0.0, 0.1)),
                            (-L / 2 - ht / 2, (head_top + head_bottom) / 2, 0)))
    if rng.random() < 0.35:
        foot_top = mtop + U(-0.05, 0.25)
        m.add("footboard", _box((ht, foot_top, W + 0.02), (L / 2 + ht / 2, foot_top / 2, 0)))
    n = 1 if W < 1.3 else 2
    for i in range(n):
        pz = (W - 0.04) / n
        z = -W / 2 + 0.02 + pz * (i + 0.5)
        ry = U(0.05, 0.08)
        m.add("pillows", _ellipsoid((U(0.14, 0.22), ry, pz / 2 * U(0.75, 0.92)),
                                    (-L / 2 + U(0.22, 0.3), mtop + ry * 0.8, z)))
