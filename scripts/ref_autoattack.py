#!/usr/bin/python3
"""ref_autoattack.py -- an independent PyTorch implementation of AutoAttack, to check Concord against.

Written from the papers, not from any public code:
  * APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", Algorithm 1), with the CE, DLR and targeted-DLR losses;
  * FAB (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast adaptive boundary
    attack"), targeted version as AutoAttack runs it (FAB-T);
  * Square (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), Linf (Alg. 1 + 2) and L2 (Alg. 3);
  * AutoAttack "standard": APGD-CE -> APGD-T -> FAB-T -> Square, each on what is still robust.

It reads a Concord checkpoint through scripts/ckpt_to_torch.py (docs/checkpoint.md; mlp and lenet5),
evaluates the first --n test examples in file order (the examples `concord attack --limit N` uses),
checks every adversarial example (finite, in [0,1], inside the eps-ball, re-classified) before counting
it, prints one summary line per component and writes per-example outcomes with --json.
Run `ref_autoattack.py --help` for the CLI and `ref_autoattack.py --selftest` for the self-checks.
Full description, choices and measured numbers: docs/ref_autoattack.md.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sqlite3  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from fractions import Fraction  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # AutoAttack "standard", in this order
TOL = {"Linf": 1e-6, "L2": 1e-5}  # slack on ||x_adv - x|| <= eps when verifying an adversarial example


# ----------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------
def parse_eps(text):
    v = float(Fraction(text)) if "/" in text else float(text)
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"eps {text!r}: must be a finite number >= 0")
    return v


def bview(v, like):
    """Per-example vector v (B,) reshaped to broadcast against a batch like (B, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def lp_dist(d, norm):
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def margin(z, y):
    """z_y - max_{j != y} z_j (negative <=> some other class scores higher)."""
    zy = z.gather(1, y[:, None])[:, 0]
    return zy - z.scatter(1, y[:, None], float("-inf")).amax(1)


# ----------------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------------
def ce_loss(z, y, t=None):
    return F.cross_entropy(z, y, reduction="none")


def dlr_loss(z, y, t=None):
    """DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), pi = classes by decreasing logit.
    1e-12 in the denominator only guards an exact three-way tie (not in the paper)."""
    zs = z.sort(1, descending=True)[0]
    return -margin(z, y) / (zs[:, 0] - zs[:, 2] + 1e-12)


def dlr_targeted_loss(z, y, t):
    """Targeted DLR(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    zs = z.sort(1, descending=True)[0]
    zy = z.gather(1, y[:, None])[:, 0]
    zt = z.gather(1, t[:, None])[:, 0]
    return -(zy - zt) / (zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3]) + 1e-12)


LOSSES = {"ce": ce_loss, "dlr": dlr_loss, "dlr-t": dlr_targeted_loss}


# ----------------------------------------------------------------------------------------------------
# projections
# ----------------------------------------------------------------------------------------------------
def saturating_solve(a, b, target, power):
    """Row-wise: smallest s >= 0 with F(s) = sum_i a_i * min(s, b_i)**power >= target, where a_i >= 0,
    b_i >= 0 (b_i = 0 wherever a_i = 0). F is continuous and non-decreasing, piecewise a polynomial of
    degree `power` between the sorted breakpoints b_i, so one sort gives the exact solution. When
    F(max b) < target no s reaches it; max b is returned (every coordinate saturated).
    a, b: (B, n) float64; target: (B,) float64; power 1 or 2. Returns (B,) float64."""
    a, b, target = a.numpy(), b.numpy(), target.numpy()  # numpy: several times faster than torch 1.13 here
    order = np.argsort(b, axis=1)
    bs = np.take_along_axis(b, order, 1)
    asrt = np.take_along_axis(a, order, 1)
    bp = bs if power == 1 else bs * bs
    P = np.cumsum(asrt * bp, 1)  # sum_{j <= k} a_j b_j^p
    total = asrt.sum(1, keepdims=True)
    A = total - np.cumsum(asrt, 1)  # sum_{j > k} a_j
    Fk = P + bp * A  # F at each breakpoint
    hit = Fk >= target[:, None]
    anyhit = hit.any(1)
    k = hit.argmax(1)  # first breakpoint where F reaches the target
    rows = np.arange(a.shape[0])
    Pprev = np.where(k > 0, P[rows, k - 1], 0.0)
    Aprev = np.where(k > 0, A[rows, k - 1], total[:, 0])
    s = np.maximum(target - Pprev, 0) / np.maximum(Aprev, 1e-300)
    if power == 2:
        s = np.sqrt(s)
    s = np.where(anyhit, s, bs[:, -1])
    return torch.from_numpy(np.where(target > 0, s, 0.0))


def project_ball_box(xn, x, eps, norm):
    """Euclidean projection of xn onto {v : ||v - x||_p <= eps, 0 <= v <= 1} (x in [0,1]).
    Linf: coordinate-wise clip. L2: the projection is clip01(x + t (xn - x)) for the t in [0,1] that puts
    it on the sphere (KKT of the separable problem), found exactly by saturating_solve."""
    if norm == "Linf":
        return torch.min(torch.max(xn, x - eps), x + eps).clamp(0, 1)
    dt = xn.dtype
    B = x.shape[0]
    x64, d = x.double().reshape(B, -1), (xn.double() - x.double()).reshape(B, -1)
    cap = torch.where(d > 0, 1 - x64, x64).clamp(min=0)
    ad = d.abs()
    full = x64 + torch.sign(d) * torch.min(ad, cap)  # clip01(xn)
    need = (full - x64).norm(dim=1) > eps
    if need.any():
        a = ad ** 2
        b = torch.where(ad > 0, cap / ad.clamp(min=1e-300), torch.zeros_like(ad))
        t = saturating_solve(a, b, torch.full((B,), float(eps) ** 2, dtype=torch.float64), 2).clamp(max=1)
        on_sphere = x64 + torch.sign(d) * torch.min(t[:, None] * ad, cap)
        full = torch.where(need[:, None], on_sphere, full)
    return full.reshape(x.shape).to(dt)


def fab_project(z, w, bias, norm):
    """Minimal-norm step delta (Linf or L2) with w.(z + delta) + bias = 0 and z + delta in [0,1]^d
    (the FAB projection onto a hyperplane intersected with the box). Rows of (B, d) float64. When the
    hyperplane is out of reach inside the box, the step that gets closest is returned."""
    r = -(bias + (w * z).sum(1))  # need w.delta = r
    wp = w * torch.sign(r)[:, None]  # need wp.delta = |r| >= 0
    cap = torch.where(wp > 0, 1 - z, z).clamp(min=0)  # room in the direction sign(wp_i)
    aw = wp.abs()
    if norm == "Linf":  # delta_i = sign(wp_i) min(t, cap_i); wp.delta = sum |w_i| min(t, cap_i)
        t = saturating_solve(aw, torch.where(aw > 0, cap, torch.zeros_like(cap)), r.abs(), 1)
        mag = torch.min(t[:, None].expand_as(cap), cap)
    else:  # delta_i = sign(wp_i) min(lam |w_i|, cap_i); wp.delta = sum w_i^2 min(lam, cap_i / |w_i|)
        b = torch.where(aw > 0, cap / aw.clamp(min=1e-300), torch.zeros_like(cap))
        lam = saturating_solve(aw ** 2, b, r.abs(), 1)
        mag = torch.min(lam[:, None] * aw, cap)
    return torch.sign(wp) * mag


# ----------------------------------------------------------------------------------------------------
# APGD
# ----------------------------------------------------------------------------------------------------
def apgd_checkpoints(n_iter):
    """w_j = ceil(p_j n_iter), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), for
    p_j <= 1. Computed in exact hundredths (every p_j is a multiple of 0.01), so no float rounding."""
    p = [0, 22]
    while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    return [-(-pj * n_iter // 100) for pj in p]


def random_start(x, eps, norm, gen):
    if norm == "Linf":
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1
        return (x + eps * u).clamp(0, 1)
    u = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    u = u / bview(lp_dist(u, "L2").clamp(min=1e-12), u)
    return (x + eps * u).clamp(0, 1)  # clipping moves every coordinate towards x: stays in the ball


def step_direction(g, norm):
    if norm == "Linf":
        return g.sign()
    return g / bview(lp_dist(g, "L2").clamp(min=1e-12), g)


def apgd(fwd, x, y, eps, norm, n_iter, loss, t=None, gen=None, rho=0.75, momentum=0.75):
    """One APGD run (Algorithm 1) from a random start in the ball. Returns (x_adv, found): found[i] when
    some iterate was misclassified; x_adv[i] is that iterate (else x[i]). An example leaves the batch as
    soon as it is misclassified; the others' trajectories do not depend on the batch."""
    loss_fn = LOSSES[loss]
    B = x.shape[0]
    x_adv, found = x.clone(), torch.zeros(B, dtype=torch.bool)
    if B == 0 or n_iter < 1:
        return x_adv, found
    checks = sorted({w for w in apgd_checkpoints(n_iter)[1:] if 0 < w < n_iter})
    S = {"idx": torch.arange(B), "x": x, "y": y, "t": y if t is None else t}

    def lossgrad(xa):
        xa = xa.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            z = fwd(xa)
            lv = loss_fn(z, S["y"], S["t"])
            g, = torch.autograd.grad(lv.sum(), xa)
        return lv.detach(), g.detach(), z.detach()

    def record(xa, z):
        m = z.argmax(1) != S["y"]
        if m.any():
            x_adv[S["idx"][m]] = xa[m]
            found[S["idx"][m]] = True
        return m

    def drop(mask):  # keep only rows where mask is False
        keep = ~mask
        for k in list(S):
            S[k] = S[k][keep]

    x0 = random_start(x, eps, norm, gen)
    eta = torch.full((B,), 2.0 * eps, dtype=x.dtype)
    f0, g0, z0 = lossgrad(x0)
    m0 = record(x0, z0)
    x1 = project_ball_box(x0 + bview(eta, x0) * step_direction(g0, norm), x, eps, norm)
    f1, g1, z1 = lossgrad(x1)
    m1 = record(x1, z1)
    better = f1 > f0
    S.update(xprev=x0, xcur=x1, gcur=g1, fcur=f1,
             xmax=torch.where(bview(better, x1), x1, x0), gmax=torch.where(bview(better, g1), g1, g0),
             fmax=torch.max(f0, f1), eta=eta,
             cnt=better.to(x.dtype),  # sum over i in [w_{j-1}, w_j - 1] of 1[f(x^(i+1)) > f(x^(i))]
             eta_ck=eta.clone(), fmax_ck=f0.clone())  # eta and f_max at the previous checkpoint (w_0 = 0)
    drop(m0 | m1)
    last = 0
    for k in range(1, n_iter):
        if S["idx"].numel() == 0:
            break
        xc, xs = S["xcur"], S["x"]
        e = bview(S["eta"], xc)
        zk = project_ball_box(xc + e * step_direction(S["gcur"], norm), xs, eps, norm)
        xn = project_ball_box(xc + momentum * (zk - xc) + (1 - momentum) * (xc - S["xprev"]), xs, eps, norm)
        fn, gn, zn = lossgrad(xn)
        mn = record(xn, zn)
        fmax_k = S["fmax"]  # f_max over x^(0..k)
        incr = (fn > S["fcur"]).to(x.dtype)  # the i = k term: belongs to the interval starting at k
        up = fn > S["fmax"]
        S["xmax"] = torch.where(bview(up, xn), xn, S["xmax"])
        S["gmax"] = torch.where(bview(up, gn), gn, S["gmax"])
        S["fmax"] = torch.where(up, fn, S["fmax"])
        S["xprev"], S["xcur"], S["gcur"], S["fcur"] = xc, xn, gn, fn
        if k in checks:
            cond1 = S["cnt"] < rho * (k - last)
            cond2 = (S["eta"] == S["eta_ck"]) & (fmax_k == S["fmax_ck"])
            red = cond1 | cond2
            S["eta_ck"], S["fmax_ck"] = S["eta"].clone(), fmax_k.clone()
            S["eta"] = torch.where(red, S["eta"] / 2, S["eta"])
            rb = bview(red, xn)
            S["xcur"] = torch.where(rb, S["xmax"], S["xcur"])  # restart from the best point
            S["gcur"] = torch.where(rb, S["gmax"], S["gcur"])
            S["fcur"] = torch.where(red, S["fmax"], S["fcur"])
            S["cnt"] = torch.zeros_like(S["cnt"])
            last = k
        S["cnt"] = S["cnt"] + incr
        drop(mn)
    return x_adv, found


# ----------------------------------------------------------------------------------------------------
# FAB (targeted)
# ----------------------------------------------------------------------------------------------------
def fab_targeted(fwd, x, y, t, eps, norm, n_iter=100, alpha_max=0.1, eta=1.05, beta=0.9, restarts=1,
                 gen=None, stop_at_eps=True):
    """FAB towards target t: at x_i linearise g = z_t - z_y, project x_i and x_orig onto {g_lin = 0} in the
    box, x_{i+1} = clip01((1-a)(x_i + eta d_i) + a(x_orig + eta d_orig)), a = min(|d_i| / (|d_i| + |d_orig|),
    alpha_max); a misclassified x_{i+1} is recorded (smallest norm kept) and pulled back:
    x_{i+1} = (1-beta) x_orig + beta x_{i+1}. First restart from x_orig; later restarts from a random point
    at radius min(eps, best/2). Returns (x_best, best_norm) with best_norm = inf where nothing was found.
    stop_at_eps: an example leaves the batch once best_norm <= eps (its verdict can no longer change)."""
    B = x.shape[0]
    dt = x.dtype
    best_x, best_n = x.clone(), torch.full((B,), float("inf"), dtype=torch.float64)
    if B == 0:
        return best_x, best_n
    for r in range(restarts):
        act = (best_n > eps) if stop_at_eps else torch.ones(B, dtype=torch.bool)
        idx = act.nonzero()[:, 0]
        if idx.numel() == 0:
            break
        xo, yy, tt = x[idx], y[idx], t[idx]
        if r == 0:
            xc = xo.clone()
        else:
            rad = torch.clamp(best_n[idx] / 2, max=eps).to(dt)
            xc = random_start(xo, 1.0, norm, gen)  # a random direction of norm <= 1 ...
            xc = (xo + bview(rad, xo) * (xc - xo)).clamp(0, 1)  # ... scaled to the radius
        Bn = idx.numel()
        for _ in range(n_iter):
            if idx.numel() == 0:
                break
            xg = xc.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                z = fwd(xg)
                g = z.gather(1, tt[:, None])[:, 0] - z.gather(1, yy[:, None])[:, 0]
                w, = torch.autograd.grad(g.sum(), xg)
            Bn = idx.numel()
            w64 = w.double().reshape(Bn, -1)
            xc64, xo64 = xc.double().reshape(Bn, -1), xo.double().reshape(Bn, -1)
            bias = g.detach().double() - (w64 * xc64).sum(1)  # hyperplane w.v + bias = 0
            d1 = fab_project(xc64, w64, bias, norm)
            d2 = fab_project(xo64, w64, bias, norm)
            n1, n2 = lp_dist(d1, norm), lp_dist(d2, norm)
            a = torch.where(n1 + n2 > 0, n1 / (n1 + n2).clamp(min=1e-300), torch.zeros_like(n1)).clamp(max=alpha_max)
            a = a[:, None]
            xn64 = ((1 - a) * (xc64 + eta * d1) + a * (xo64 + eta * d2)).clamp(0, 1)
            xn = xn64.to(dt).reshape(xo.shape)
            adv = fwd(xn).argmax(1) != yy
            nrm = lp_dist(xn.double() - xo.double(), norm)
            imp = adv & (nrm < best_n[idx])
            if imp.any():
                best_x[idx[imp]] = xn[imp]
                best_n[idx[imp]] = nrm[imp]
            ab = bview(adv, xn)
            xc = torch.where(ab, ((1 - beta) * xo + beta * xn), xn)
            if stop_at_eps:
                keep = best_n[idx] > eps
                if not keep.all():
                    idx, xo, yy, tt, xc = idx[keep], xo[keep], yy[keep], tt[keep], xc[keep]
    return best_x, best_n


# ----------------------------------------------------------------------------------------------------
# Square
# ----------------------------------------------------------------------------------------------------
def square_p(p_init, it, n_iters):
    """Piecewise schedule of the paper for a 10,000-query budget (p halved after iterations 10, 50, 200,
    500, 1000, 2000, 4000, 6000, 8000), rescaled to n_iters: iteration `it` counts as it*10000/n_iters."""
    i = it * 10000 // max(n_iters, 1)
    halvings = sum(1 for e in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000) if i > e)
    return p_init / (2 ** halvings)


def nested_squares(h, w, dtype):
    """The L2 Square attack's pattern eta(r, s) = sum_{k=0}^{M(r,s)} 1/(n+1-k)^2 with
    M(r, s) = n - (Chebyshev distance of (r, s) to the centre); n = the largest such distance."""
    rr = torch.arange(h, dtype=torch.float64)[:, None] - (h // 2)
    cc = torch.arange(w, dtype=torch.float64)[None, :] - (w // 2)
    d = torch.max(rr.abs(), cc.abs())
    n = int(d.max().item())
    M = (n - d).long()
    terms = torch.tensor([1.0 / (n + 1 - k) ** 2 for k in range(n + 1)], dtype=torch.float64).cumsum(0)
    return terms[M].to(dtype)


def l2_update_pattern(s, dtype):
    """Unit-norm s x s update: two halves with the nested-squares pattern, opposite signs."""
    if s == 1:
        return torch.ones(1, 1, dtype=dtype)
    h1 = s // 2
    p = torch.cat([nested_squares(s, h1, dtype), -nested_squares(s, s - h1, dtype)], 1)
    return p / p.norm()


def square_attack(fwd, x, y, eps, norm, n_queries=5000, p_init=0.8, gen=None):
    """Untargeted Square attack, margin loss m = z_y - max_{j!=y} z_j, minimised by random search; a
    candidate replaces the current point only when its margin is lower. n_queries counts model
    evaluations per example, the initial one included; an example stops once misclassified.
    Returns (x_adv, found)."""
    B, C, H, W = x.shape
    dt = x.dtype
    x_adv, found = x.clone(), torch.zeros(B, dtype=torch.bool)
    if B == 0 or n_queries < 1:
        return x_adv, found
    if norm == "Linf":  # vertical stripes: one sign per (channel, column)
        sgn = torch.randint(0, 2, (B, C, 1, W), generator=gen).to(dt) * 2 - 1
        xb = (x + eps * sgn).clamp(0, 1)
    else:  # tiles of the nested-squares pattern with random signs, rescaled to norm eps
        tile = max(min(H, W) // 5, 1)
        delta = torch.zeros_like(x)
        for r0 in range(0, H, tile):
            for c0 in range(0, W, tile):
                hh, ww = min(tile, H - r0), min(tile, W - c0)
                sg = torch.randint(0, 2, (B, C, 1, 1), generator=gen).to(dt) * 2 - 1
                delta[:, :, r0:r0 + hh, c0:c0 + ww] = sg * nested_squares(hh, ww, dt)
        delta = delta * bview(eps / lp_dist(delta, "L2").clamp(min=1e-12), delta)
        xb = (x + delta).clamp(0, 1)
    m = margin(fwd(xb), y)
    S = {"idx": torch.arange(B), "x": x, "y": y, "xb": xb, "m": m}

    def settle():
        ok = S["m"] < 0
        if ok.any():
            x_adv[S["idx"][ok]] = S["xb"][ok]
            found[S["idx"][ok]] = True
            for k in list(S):
                S[k] = S[k][~ok]

    settle()
    rows = torch.arange(H)
    cols = torch.arange(W)
    n_iters = n_queries - 1
    for it in range(n_iters):
        nb = S["idx"].numel()
        if nb == 0:
            break
        xs, xb = S["x"], S["xb"]
        p = square_p(p_init, it, n_iters)
        s = int(round(math.sqrt(p * H * W)))
        s = min(max(s, 1), min(H, W) - 1) if min(H, W) > 1 else 1
        r1 = torch.randint(0, H - s + 1, (nb,), generator=gen)
        c1 = torch.randint(0, W - s + 1, (nb,), generator=gen)
        if norm == "Linf":
            win = ((rows[None, :, None] >= r1[:, None, None]) & (rows[None, :, None] < r1[:, None, None] + s)
                   & (cols[None, None, :] >= c1[:, None, None]) & (cols[None, None, :] < c1[:, None, None] + s))
            win = win[:, None]  # (nb, 1, H, W)
            sgn = torch.randint(0, 2, (nb, C, 1, 1), generator=gen).to(dt) * 2 - 1
            cand = (xs + eps * sgn).clamp(0, 1)
            for _ in range(10):  # a proposal equal to the current window would waste a query: redraw it
                same = ((cand == xb) | ~win).flatten(1).all(1)
                if not same.any():
                    break
                sgn[same] = torch.randint(0, 2, (int(same.sum()), C, 1, 1), generator=gen).to(dt) * 2 - 1
                cand = (xs + eps * sgn).clamp(0, 1)
            xn = torch.where(win, cand, xb)
        else:  # Alg. 3: move the mass of windows W1 and W2 into W1, with a new pattern added
            r2 = torch.randint(0, H - s + 1, (nb,), generator=gen)
            c2 = torch.randint(0, W - s + 1, (nb,), generator=gen)

            def box(r, c):
                return (((rows[None, :, None] >= r[:, None, None]) & (rows[None, :, None] < r[:, None, None] + s)
                         & (cols[None, None, :] >= c[:, None, None]) & (cols[None, None, :] < c[:, None, None] + s))
                        [:, None].to(dt))

            w1, w2 = box(r1, c1), box(r2, c2)
            w12 = torch.max(w1, w2)
            nu = xb - xs
            unused2 = (eps ** 2 - lp_dist(nu, "L2") ** 2).clamp(min=0)
            pat = l2_update_pattern(s, dt)
            tr = torch.randint(0, 2, (nb,), generator=gen).bool()
            pats = torch.where(tr[:, None, None], pat.t()[None], pat[None])  # (nb, s, s), random transpose
            placed = torch.zeros(nb, H, W, dtype=dt)
            bi = torch.arange(nb)[:, None, None]
            ri = r1[:, None, None] + torch.arange(s)[None, :, None]
            ci = c1[:, None, None] + torch.arange(s)[None, None, :]
            placed[bi, ri, ci] = pats
            placed = placed[:, None]  # (nb, 1, H, W), unit norm, inside W1
            rho = torch.randint(0, 2, (nb, C, 1, 1), generator=gen).to(dt) * 2 - 1
            cn = lambda v: v.pow(2).sum((2, 3), keepdim=True).sqrt()  # noqa: E731  per-channel norm
            nu1 = nu * w1
            temp = rho * placed + nu1 / cn(nu1).clamp(min=1e-12)
            avail = (cn(nu * w12) ** 2 + bview(unused2, nu) / C).sqrt()
            new_w1 = temp / cn(temp).clamp(min=1e-12) * avail * w1
            nu_new = nu * (1 - w12) + new_w1
            nrm = lp_dist(nu_new, "L2")
            nu_new = nu_new * bview(torch.clamp(eps / nrm.clamp(min=1e-12), max=1.0), nu_new)  # rounding guard
            xn = (xs + nu_new).clamp(0, 1)
        mn = margin(fwd(xn), S["y"])
        imp = mn < S["m"]
        S["xb"] = torch.where(bview(imp, xn), xn, xb)
        S["m"] = torch.where(imp, mn, S["m"])
        settle()
    return x_adv, found


# ----------------------------------------------------------------------------------------------------
# the components, on a batch of (clean-correct, still robust) examples
# ----------------------------------------------------------------------------------------------------
class Config:
    def __init__(self, **kw):
        self.apgd_iters, self.apgd_restarts, self.n_targets = 100, 1, 9
        self.fab_iters, self.fab_restarts, self.fab_alpha_max, self.fab_eta, self.fab_beta = 100, 1, 0.1, 1.05, 0.9
        self.square_queries, self.square_p_init = 5000, 0.8
        self.__dict__.update(kw)


def run_component(name, fwd, x, y, clean_logits, eps, norm, cfg, gen):
    """Returns (x_adv, found) for one component on one batch."""
    B = x.shape[0]
    x_adv, found = x.clone(), torch.zeros(B, dtype=torch.bool)
    order = clean_logits.argsort(1, descending=True)
    if name in ("apgd-ce", "apgd-dlr"):
        runs = [(None, "ce" if name == "apgd-ce" else "dlr")] * cfg.apgd_restarts
    elif name == "apgd-t":
        runs = [(r, "dlr-t") for r in range(1, min(cfg.n_targets, clean_logits.shape[1] - 1) + 1)]
    elif name == "fab-t":
        runs = [(r, None) for r in range(1, min(cfg.n_targets, clean_logits.shape[1] - 1) + 1)]
    elif name == "square":
        return square_attack(fwd, x, y, eps, norm, cfg.square_queries, cfg.square_p_init, gen)
    else:
        raise ValueError(name)
    for rank, loss in runs:
        act = (~found).nonzero()[:, 0]
        if act.numel() == 0:
            break
        t = order[act, rank] if rank is not None else None
        if name == "fab-t":
            xa, bn = fab_targeted(fwd, x[act], y[act], t, eps, norm, cfg.fab_iters, cfg.fab_alpha_max,
                                  cfg.fab_eta, cfg.fab_beta, cfg.fab_restarts, gen)
            f = bn <= eps
        else:
            xa, f = apgd(fwd, x[act], y[act], eps, norm, cfg.apgd_iters, loss, t, gen)
        x_adv[act[f]] = xa[f]
        found[act[f]] = True
    return x_adv, found


def verify(fwd, x, y, x_adv, found, eps, norm):
    """An adversarial example counts only if finite, in [0,1], within eps (+TOL) of x, and misclassified
    when classified again. Returns (broken, pred, dist, rejected, unconfirmed)."""
    dist = lp_dist(x_adv.double() - x.double(), norm)
    finite = torch.isfinite(x_adv).flatten(1).all(1)
    inbox = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)
    inball = dist <= eps + TOL[norm]
    pred = fwd(x_adv).argmax(1)
    valid = finite & inbox & inball
    broken = found & valid & (pred != y)
    return broken, pred, dist, found & ~valid, found & valid & (pred == y)


def evaluate(fwd, x, y, eps, norm, attacks, cascade, cfg, seed, batch, log=print):
    """Runs the attacks; returns (summary rows, per-example dicts)."""
    N = x.shape[0]
    with torch.no_grad():
        t0, c0 = time.time(), time.process_time()
        logits = torch.cat([fwd(x[i:i + batch]) for i in range(0, N, batch)]) if N else torch.zeros(0, 10)
        clean_pred = logits.argmax(1)
        t_clean, c_clean = time.time() - t0, time.process_time() - c0
    correct = clean_pred == y
    n_cc = int(correct.sum())
    rows = [{"attack": "clean", "n": N, "correct": n_cc, "acc": 100.0 * n_cc / max(N, 1), "seconds": t_clean,
             "cpu_seconds": c_clean}]
    log(f"{'clean':<18} acc    {rows[0]['acc']:6.2f}% ({n_cc}/{N})  {t_clean:7.1f} s  cpu {c_clean:7.1f} s")
    robust_after = {}
    adv_pred_by = {}
    dist_by = {}
    robust = correct.clone()
    final_pred = clean_pred.clone()
    final_dist = torch.zeros(N, dtype=torch.float64)
    broken_by = [None] * N
    t_total = c_total = 0.0
    for ci, name in enumerate(attacks):
        gen = torch.Generator().manual_seed(seed * 1000003 + (COMPONENTS.index(name) + 1) * 7919)
        cur = robust.clone() if cascade else correct.clone()
        pred_c, dist_c = clean_pred.clone(), torch.zeros(N, dtype=torch.float64)
        n_rej = n_unc = 0
        t0, c0 = time.time(), time.process_time()
        pending = cur.nonzero()[:, 0]
        for s in range(0, pending.numel(), batch):
            ids = pending[s:s + batch]
            with torch.no_grad():
                xa, f = run_component(name, fwd, x[ids], y[ids], logits[ids], eps, norm, cfg, gen)
                brk, pr, dd, rej, unc = verify(fwd, x[ids], y[ids], xa, f, eps, norm)
            n_rej += int(rej.sum())
            n_unc += int(unc.sum())
            cur[ids[brk]] = False
            pred_c[ids[brk]] = pr[brk]
            dist_c[ids[brk]] = dd[brk]
        secs, csecs = time.time() - t0, time.process_time() - c0
        t_total += secs
        c_total += csecs
        if cascade:
            newly = robust & ~cur
            for i in newly.nonzero()[:, 0].tolist():
                broken_by[i] = name
            final_pred = torch.where(newly, pred_c, final_pred)
            final_dist = torch.where(newly, dist_c, final_dist)
            robust = cur
        robust_after[name] = cur.clone()
        adv_pred_by[name] = pred_c
        dist_by[name] = dist_c
        nr = int(cur.sum())
        rows.append({"attack": name, "n": N, "clean_correct": n_cc, "robust": nr, "acc": 100.0 * nr / max(N, 1),
                     "rejected": n_rej, "unconfirmed": n_unc, "seconds": secs, "cpu_seconds": csecs})
        label = f"{'after ' if cascade and ci else ''}{name}"
        log(f"{label:<18} robust {rows[-1]['acc']:6.2f}% ({nr}/{N})  broken {n_cc - nr if not cascade else int((~cur & correct).sum())}"
            f"  rejected {n_rej}  unconfirmed {n_unc}  {secs:7.1f} s  cpu {csecs:7.1f} s")
    if cascade:
        nr = int(robust.sum())
        rows.append({"attack": "autoattack" if tuple(attacks) == STANDARD else "cascade", "n": N,
                     "clean_correct": n_cc, "robust": nr, "acc": 100.0 * nr / max(N, 1), "seconds": t_total,
                     "cpu_seconds": c_total})
        log(f"{rows[-1]['attack']:<18} robust {rows[-1]['acc']:6.2f}% ({nr}/{N})  clean {rows[0]['acc']:.2f}%"
            f"  {t_total:7.1f} s  cpu {c_total:7.1f} s (attacks)")
    examples = []
    for i in range(N):
        e = {"index": i, "label": int(y[i]), "clean_pred": int(clean_pred[i]), "clean_correct": bool(correct[i]),
             "robust": {n: bool(robust_after[n][i]) for n in attacks},
             "adv_pred_by": {n: int(adv_pred_by[n][i]) for n in attacks}}
        if cascade:
            e["robust"][rows[-1]["attack"]] = bool(robust[i])
            e["adv_pred"] = int(final_pred[i])
            e["broken_by"] = broken_by[i]
            e["dist"] = float(final_dist[i]) if broken_by[i] else None
        else:
            first = next((n for n in attacks if correct[i] and not robust_after[n][i]), None)
            e["adv_pred"] = int(adv_pred_by[first][i]) if first else int(clean_pred[i])
            e["dist_by"] = {n: (float(dist_by[n][i]) if correct[i] and not robust_after[n][i] else None)
                            for n in attacks}
        examples.append(e)
    return rows, examples


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        sys.exit(f"{path}: size does not match its header {dims}")
    return data.reshape(dims)


def idx_find(d, base):
    for cand in (f"{d}/{base}.gz", f"{d}/{base}", f"{d}/gzip/{base}.gz", f"{d}/gzip/{base}"):
        if os.path.exists(cand):
            return cand
    sys.exit(f"{d}/{base}.gz: not found (pass --data-dir DIR with the IDX test files)")


def to_unit(u8):
    return u8.astype(np.float32) / np.float32(255)  # the same float32 k/255 Concord uses


def png_decode(path):
    """Minimal PNG reader (zlib + the five filters) for non-interlaced 1-16 bit grey, grey+alpha, RGB, RGBA
    and palette images. Returns uint8 (H, W, 1 or 3): palettes expanded, low-bit grey widened, 16-bit
    scaled by round(v*255/65535), alpha dropped -- the conversions Concord's libpng reader makes."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG file")
    pos, idat, plte, hdr = 8, [], None, None
    while pos + 8 <= len(raw):
        ln, typ = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + ln]
        pos += 12 + ln
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"PLTE":
            plte = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
    if hdr is None:
        sys.exit(f"{path}: no IHDR chunk")
    w, h, depth, color, _, _, interlace = hdr
    if interlace:
        sys.exit(f"{path}: interlaced PNG is not supported by this reader (convert the set to .npz)")
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    bits = depth * chans
    stride = (w * bits + 7) // 8
    bpp = max(1, bits // 8)
    data = zlib.decompress(b"".join(idat))
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for r in range(h):
        ft = data[r * (stride + 1)]
        line = np.frombuffer(data, np.uint8, stride, r * (stride + 1) + 1).astype(np.int32)
        if ft == 0:
            cur = line
        elif ft == 2:
            cur = (line + prev) & 255
        else:
            cur = line.copy()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                if ft == 1:
                    pr = a
                elif ft == 3:
                    pr = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (cur[i] + pr) & 255
        out[r] = cur
        prev = cur
    if depth == 16:
        v = out.reshape(h, w * chans, 2).astype(np.uint32)
        v = (v[..., 0] << 8) | v[..., 1]
        px = ((v * 255 + 32767) // 65535).astype(np.uint8).reshape(h, w, chans)
    elif depth == 8:
        px = out.reshape(h, w, chans)
    else:
        bitsv = np.unpackbits(out, axis=1)[:, :w * depth].reshape(h, w, depth)
        v = (bitsv * (1 << np.arange(depth - 1, -1, -1))).sum(2)
        px = (v[..., None] if color == 3 else (v * 255 // ((1 << depth) - 1))[..., None]).astype(np.uint8)
    if color == 3:
        px = plte[px[..., 0]]
    elif color in (4, 6):
        px = px[..., :chans - 1]
    return px


def load_pngdir(root, n):
    if os.path.isdir(f"{root}/test"):
        root = f"{root}/test"
    elif os.path.isdir(f"{root}/train"):
        sys.exit(f"{root}/test: missing ({root} has train/)")
    classes = sorted((e for e in os.listdir(root) if not e.startswith(".") and os.path.isdir(f"{root}/{e}")),
                     key=lambda s: s.encode())
    xs, ys, c0 = [], [], None
    for k, cname in enumerate(classes):
        files = sorted((f for f in os.listdir(f"{root}/{cname}") if not f.startswith(".")
                        and f.lower().endswith(".png") and os.path.isfile(f"{root}/{cname}/{f}")),
                       key=lambda s: s.encode())
        for fname in files:
            if n and len(xs) >= n:
                break
            px = png_decode(f"{root}/{cname}/{fname}")
            if c0 is None:
                c0 = 1 if px.shape[2] == 1 else 3
            if c0 == 1 and px.shape[2] == 3:
                px = ((299 * px[..., 0].astype(np.uint32) + 587 * px[..., 1] + 114 * px[..., 2] + 500) // 1000)
                px = px.clip(0, 255).astype(np.uint8)[..., None]
            elif c0 == 3 and px.shape[2] == 1:
                px = np.repeat(px, 3, 2)
            xs.append(to_unit(px).transpose(2, 0, 1))
            ys.append(k)
    if not xs:
        sys.exit(f"{root}: no PNG images found in class sub-folders")
    return np.stack(xs), np.array(ys, np.int64)


def load_npz(path, n):
    z = np.load(path)
    xk = next((k for k in ("x", "images", "x_test") if k in z), None)
    yk = next((k for k in ("y", "labels", "y_test") if k in z), None)
    if xk is None or yk is None:
        sys.exit(f"{path}: needs arrays x (or images, x_test) and y (or labels, y_test); has {list(z.keys())}")
    x, y = z[xk], z[yk].astype(np.int64).reshape(-1)
    if n:
        x, y = x[:n], y[:n]
    x = to_unit(x) if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if x.min() < 0 or x.max() > 1:
        sys.exit(f"{path}: x must be uint8 or floats in [0,1]")
    return np.ascontiguousarray(x), y


def load_data(spec, data_dir, n):
    if spec.startswith("png:"):
        x, y = load_pngdir(spec[4:], n)
        src = spec
    elif spec.endswith(".npz"):
        x, y = load_npz(spec, n)
        src = spec
    elif spec in ("fashion-mnist", "mnist", "kmnist"):
        d = data_dir or f"/usr/share/datasets/{spec}"
        ip, lp = idx_find(d, "t10k-images-idx3-ubyte"), idx_find(d, "t10k-labels-idx1-ubyte")
        img, lab = read_idx(ip), read_idx(lp)
        if n:
            img, lab = img[:n], lab[:n]
        x, y = to_unit(img)[:, None], lab.astype(np.int64)
        src = f"{ip},{lp}"
    else:
        sys.exit(f"--data {spec}: use fashion-mnist, mnist, kmnist (IDX test files), png:DIR or FILE.npz")
    if n:
        x, y = x[:n], y[:n]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), src


# ----------------------------------------------------------------------------------------------------
# self-tests
# ----------------------------------------------------------------------------------------------------
class Linear(torch.nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b

    def forward(self, x):
        return x.flatten(1) @ self.W.t() + self.b


def _min_margin_linf(W, b, x, y, eps):
    """Closed form: min over {|v - x|_inf <= eps, v in [0,1]} of min_j (z_y - z_j)(v), z = W v + b."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    out = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    for j in range(W.shape[0]):
        v = W[y] - W[j]  # (N, d)
        m = (torch.where(v > 0, lo, hi) * v).sum(1) + b[y] - b[j]
        out = torch.where(y == j, out, torch.min(out, m))
    return out


def _bisect(fn, lo, hi, iters=100):
    """Smallest s in [lo, hi] with fn(s) True (fn monotone), by bisection, row-wise."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        ok = fn(mid)
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    return hi


def _min_dist_to_class(W, b, x, y, norm):
    """Smallest ||delta|| (v = x + delta in the box) that makes some class j != y score at least z_y, for
    z = W v + b, by bisection (independent of saturating_solve): per j, with u = w_j - w_y,
    Linf: the best gain of u.delta within radius r is sum |u_i| min(r, room_i), bisect on r;
    L2: the minimiser is delta_i = sign(u_i) min(t |u_i|, room_i) (KKT), bisect on t, report its norm."""
    N = x.shape[0]
    best = torch.full((N,), float("inf"), dtype=torch.float64)
    for j in range(W.shape[0]):
        u = W[j] - W[y]
        need = -((x * u).sum(1) + b[j] - b[y])
        room = torch.where(u > 0, 1 - x, x)
        if norm == "Linf":
            gain = lambda r: (u.abs() * torch.min(r[:, None].expand_as(room), room)).sum(1)  # noqa: E731
            top = torch.ones(N, dtype=torch.float64)
        else:
            gain = lambda t: (u.abs() * torch.min(t[:, None] * u.abs(), room)).sum(1)  # noqa: E731
            top = torch.full((N,), 1e8, dtype=torch.float64)
        reach = gain(top) >= need
        s = _bisect(lambda r: gain(r) >= need, torch.zeros(N, dtype=torch.float64), top, 100)
        d = s if norm == "Linf" else torch.min(s[:, None] * u.abs(), room).norm(dim=1)
        d = torch.where(reach, d, torch.full_like(d, float("inf")))
        best = torch.where(y == j, best, torch.min(best, d))
    return best


def _png_encode(rows, w, h, depth, color, bpp, plte=None):
    """Test helper: a PNG from row bytes (h, stride), rows filtered with types 0..4 in turn."""
    rows = rows.astype(np.int64)
    out, prev = bytearray(), np.zeros(rows.shape[1], np.int64)
    for r in range(h):
        line, ft = rows[r], r % 5
        left = np.concatenate([np.zeros(bpp, np.int64), line[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if ft == 0:
            pred = np.zeros_like(line)
        elif ft == 1:
            pred = left
        elif ft == 2:
            pred = prev
        elif ft == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out += bytes([ft]) + ((line - pred) & 255).astype(np.uint8).tobytes()
        prev = line

    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)

    blob = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    if plte is not None:
        blob += chunk(b"PLTE", plte.astype(np.uint8).tobytes())
    return blob + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b"")


def selftest(args):
    torch.manual_seed(0)
    fails = []
    clock = [time.time(), time.time()]

    def check(ok, msg):
        now = time.time()
        print(("ok    " if ok else "FAIL  ") + msg + f"  [{now - clock[0]:.1f} s]", flush=True)
        clock[0] = now
        if not ok:
            fails.append(msg)

    # 1. DLR and targeted DLR against their definitions, on random logits
    g = torch.Generator().manual_seed(1)
    z = torch.randn(200, 10, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (200,), generator=g)
    t = (y + 1 + torch.randint(0, 9, (200,), generator=g)) % 10
    ref, reft = [], []
    for i in range(200):
        zi = z[i].tolist()
        srt = sorted(zi, reverse=True)
        other = max(v for k, v in enumerate(zi) if k != y[i])
        ref.append(-(zi[y[i]] - other) / (srt[0] - srt[2]))
        reft.append(-(zi[y[i]] - zi[t[i]]) / (srt[0] - (srt[2] + srt[3]) / 2))
    e1 = (dlr_loss(z, y) - torch.tensor(ref, dtype=torch.float64)).abs().max().item()
    e2 = (dlr_targeted_loss(z, y, t) - torch.tensor(reft, dtype=torch.float64)).abs().max().item()
    check(e1 < 1e-9, f"DLR matches its definition on 200 random logit vectors (max err {e1:.1e})")
    check(e2 < 1e-9, f"targeted DLR matches its definition (max err {e2:.1e})")
    inv = (dlr_loss(z * 7.5 + 3.0, y) - dlr_loss(z, y)).abs().max().item()
    invt = (dlr_targeted_loss(z * 0.3 - 2.0, y, t) - dlr_targeted_loss(z, y, t)).abs().max().item()
    check(inv < 1e-9 and invt < 1e-9, f"DLR / targeted DLR invariant to shift and positive scale ({inv:.1e}, {invt:.1e})")

    # 2. APGD checkpoints against the formula, evaluated independently with exact fractions
    def formula(n):
        p = [Fraction(0), Fraction(22, 100)]
        while p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)) <= 1:
            p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
        return [math.ceil(pj * n) for pj in p]

    for n, lit in ((100, [0, 22, 41, 57, 70, 80, 87, 93, 99]), (10, [0, 3, 5, 6, 7, 8, 9, 10, 10])):
        got = apgd_checkpoints(n)
        check(got == formula(n) == lit, f"APGD checkpoints for {n} steps: {got}")

    # 3. the exact projections against bisection / feasibility
    B, d = 64, 50
    a = torch.rand(B, d, dtype=torch.float64) * (torch.rand(B, d, dtype=torch.float64) > 0.2)
    b = torch.where(a > 0, torch.rand(B, d, dtype=torch.float64) * 2, torch.zeros_like(a))
    for pw in (1, 2):
        Fmax = (a * b ** pw).sum(1)
        T = Fmax * torch.rand(B, dtype=torch.float64) * 0.99
        s = saturating_solve(a, b, T, pw)
        sb = _bisect(lambda v: (a * torch.min(v[:, None].expand_as(b), b) ** pw).sum(1) >= T,
                     torch.zeros(B, dtype=torch.float64), b.max(1)[0])
        check((s - sb).abs().max().item() < 1e-9, f"saturating solver (power {pw}) equals bisection "
              f"(max diff {(s - sb).abs().max().item():.1e})")
    x0 = torch.rand(B, 1, 5, 10, dtype=torch.float64)
    xn = x0 + torch.randn_like(x0) * 0.5
    pr = project_ball_box(xn, x0, 0.4, "L2")
    dd = lp_dist(pr - x0, "L2")
    feas = (dd <= 0.4 + 1e-12).all() and (pr >= 0).all() and (pr <= 1).all()
    worse = True  # no random feasible point is closer to xn than the projection
    for _ in range(200):
        q = x0 + torch.randn_like(x0) * 0.3
        q = x0 + (q - x0) * bview(torch.clamp(0.4 / lp_dist(q - x0, "L2"), max=1), q)
        q = q.clamp(0, 1)
        worse &= bool((lp_dist(q - xn, "L2") >= lp_dist(pr - xn, "L2") - 1e-12).all())
    check(bool(feas) and worse, "L2 ball-and-box projection is feasible and no random feasible point is closer")

    # 4. linear softmax models z = W v + b: the closed form says which examples are breakable
    #    (Linf: min_j of the margin z_y - z_j over box ∩ ball; L2: exact minimal distance by bisection).
    #    Logit scale 20: margins like a trained network's; APGD-CE must break exactly the breakable ones.
    #    Logit scale 1: softmax nearly uniform, the CE gradient points at the mean of the other classes,
    #    not at the nearest boundary -- CE is expected to miss some there; the scale-invariant DLR
    #    losses (APGD-DLR, APGD-T) must not. Every attack must be sound (break nothing unbreakable).
    N, dim, K = 200, 784, 10
    gen = torch.Generator().manual_seed(3)
    models = {}
    for scale in (20.0, 1.0):
        gg = torch.Generator().manual_seed(2)
        W = torch.randn(K, dim, generator=gg, dtype=torch.float64) / math.sqrt(dim) * scale
        bb = torch.randn(K, generator=gg, dtype=torch.float64) * 0.1 * scale
        X = torch.rand(N, 1, 28, 28, generator=gg, dtype=torch.float64)
        lin = Linear(W, bb)
        Y = lin(X).argmax(1)
        info = {}
        for norm in ("Linf", "L2"):
            dist = _min_dist_to_class(W, bb, X.flatten(1), Y, norm)
            eps = float(dist.median())
            if norm == "Linf":
                breakable = _min_margin_linf(W, bb, X.flatten(1), Y, eps) < 0
                agree_cf = bool(((breakable == (dist <= eps)) | ((dist - eps).abs() < 1e-9)).all())
                check(agree_cf, f"scale {scale:g}: closed-form Linf margin and bisection distance agree on "
                      f"which examples are breakable")
            else:
                breakable = dist <= eps
            clear = (dist - eps).abs() > 0.01 * eps  # examples within 1% of the threshold are not compared
            info[norm] = (dist, eps, breakable, clear)
            names = ("apgd-ce",) if scale == 20.0 else ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")
            for name in names:
                with torch.no_grad():
                    xa, f = run_component(name, lin, X, Y, lin(X), eps, norm, Config(square_queries=1000), gen)
                    bk = verify(lin, X, Y, xa, f, eps, norm)[0]
                wrong = bk & ~breakable & clear
                missed = ~bk & breakable & clear
                exact = name in ("apgd-dlr", "apgd-t") or (name == "apgd-ce" and scale == 20.0)
                ok = not bool(wrong.any()) and (not exact or not bool(missed.any()))
                what = "must break exactly the breakable" if exact else "must break nothing unbreakable"
                check(ok, f"scale {scale:g} {norm} eps {eps:.4f}: {name} breaks {int(bk.sum())}, "
                      f"{int(breakable.sum())} of {N} breakable ({what}); missed {int(missed.sum())}, "
                      f"wrongly broken {int(wrong.sum())}, {int((~clear).sum())} within 1% not compared")
        models[scale] = (lin, W, bb, X, Y, info)
    lin, W, bb, X, Y, info = models[20.0]
    with torch.no_grad():
        xa, f = run_component("apgd-ce", lin, X, Y, lin(X), 0.0, "Linf", Config(), gen)
        bk0 = verify(lin, X, Y, xa, f, 0.0, "Linf")[0]
    check(int(bk0.sum()) == 0, "eps = 0 breaks nothing")
    dist_inf, dist_2 = info["Linf"][0], info["L2"][0]
    N = 100
    X, Y, dist_inf, dist_2 = X[:N], Y[:N], dist_inf[:N], dist_2[:N]

    # 5. FAB-T finds (nearly) the minimal perturbation on linear models (Linf and L2)
    for norm in ("Linf", "L2"):
        exact = dist_inf if norm == "Linf" else dist_2
        with torch.no_grad():
            order = lin(X).argsort(1, descending=True)
            best = torch.full((N,), float("inf"), dtype=torch.float64)
            for r in range(1, K):
                _, bn = fab_targeted(lin, X, Y, order[:, r], 1e9, norm, 100, 0.1, 1.05, 0.9, 1, gen,
                                     stop_at_eps=False)
                best = torch.min(best, bn)
        ratio = best / exact
        check(bool((ratio >= 1 - 1e-6).all()) and float(ratio.max()) < 1.05,
              f"FAB-T {norm} on a linear 10-class model: found/minimal norm median {float(ratio.median()):.4f}, "
              f"max {float(ratio.max()):.4f} (must be in [1, 1.05])")
        # binary boundary: the closed form |z_y - z_t| / ||w_t - w_y||_dual for interior points
        W2, b2 = W[:2].clone(), bb[:2].clone()
        lin2 = Linear(W2, b2)
        Xc = 0.45 + 0.1 * torch.rand(100, 1, 28, 28, generator=gg, dtype=torch.float64)
        Y2 = lin2(Xc).argmax(1)
        wdiff = (W2[1 - Y2] - W2[Y2])
        gap = -((Xc.flatten(1) * wdiff).sum(1) + b2[1 - Y2] - b2[Y2])
        closed = gap / (wdiff.abs().sum(1) if norm == "Linf" else wdiff.norm(dim=1))
        step_max = closed if norm == "Linf" else gap * wdiff.abs().amax(1) / wdiff.norm(dim=1) ** 2
        inside = (step_max < 0.44) & (gap > 0)
        with torch.no_grad():
            _, bn = fab_targeted(lin2, Xc, Y2, 1 - Y2, 1e9, norm, 100, 0.1, 1.05, 0.9, 1, gen, stop_at_eps=False)
        rr = (bn / closed)[inside]
        check(rr.numel() > 0 and bool((rr >= 1 - 1e-6).all()) and float(rr.max()) < 1.05,
              f"FAB-T {norm}, binary linear boundary, closed form |gap|/||w||_dual on {rr.numel()} interior "
              f"points: ratio in [{float(rr.min()):.4f}, {float(rr.max()):.4f}]")

    # 6. verification rejects a point outside the ball and one outside [0,1]
    xv = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    lin_v = Linear(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]], dtype=torch.float64),
                   torch.tensor([0.0, 0.0], dtype=torch.float64))
    xa = xv.clone()
    xa[0, 0, 1, 1] = 0.5 + 0.1 + 2e-6  # class 1 wins, but 2e-6 beyond eps = 0.1
    xa[1, 0, 1, 1] = 1.0 + 1e-3  # outside the box
    xa[1, 0, 0, 0] = 0.45
    brk, _, _, rej, _ = verify(lin_v, xv, torch.tensor([0, 0]), xa, torch.tensor([True, True]), 0.1, "Linf")
    check(not bool(brk.any()) and bool(rej.all()), "verification rejects out-of-ball and out-of-box points")

    # 7. data readers: PNG round trip (every filter type, grey/RGB/RGBA/palette/4-bit/16-bit), the class-folder
    #    order of png:DIR, and .npz
    import tempfile
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        g8 = rng.integers(0, 256, (9, 7, 1), dtype=np.uint8)
        cases.append(("grey8", _png_encode(g8[..., 0], 7, 9, 8, 0, 1), g8))
        rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
        cases.append(("rgb8", _png_encode(rgb.reshape(6, -1), 5, 6, 8, 2, 3), rgb))
        rgba = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
        cases.append(("rgba8", _png_encode(rgba.reshape(4, -1), 6, 4, 8, 6, 4), rgba[..., :3]))
        pal = rng.integers(0, 256, (16, 3), dtype=np.uint8)
        ind = rng.integers(0, 16, (5, 8), dtype=np.uint8)
        cases.append(("palette8", _png_encode(ind, 8, 5, 8, 3, 1, pal), pal[ind]))
        g4 = rng.integers(0, 16, (5, 9), dtype=np.uint8)
        packed = np.packbits(np.unpackbits(g4[..., None], axis=2)[..., 4:].reshape(5, -1), axis=1)
        cases.append(("grey4", _png_encode(packed, 9, 5, 4, 0, 1), (g4 * 17)[..., None]))
        g16 = rng.integers(0, 65536, (3, 4), dtype=np.uint16)
        be = np.stack([g16 >> 8, g16 & 255], -1).astype(np.uint8).reshape(3, -1)
        cases.append(("grey16", _png_encode(be, 4, 3, 16, 0, 2),
                      ((g16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)[..., None]))
        for name, blob, want in cases:
            fn = os.path.join(tmp, name + ".png")
            with open(fn, "wb") as f:
                f.write(blob)
            got = png_decode(fn)
            check(got.shape == want.shape and bool((got == want).all()), f"PNG reader: {name} round trip")
        root = os.path.join(tmp, "set")
        imgs = {}
        for cls, files in (("b", ["2.png", "10.png"]), ("a", ["x.PNG"]), (".hidden", ["h.png"])):
            os.makedirs(os.path.join(root, "test", cls))
            os.makedirs(os.path.join(root, "train", cls))
            for fname in files:
                im = rng.integers(0, 256, (4, 4), dtype=np.uint8)
                imgs[(cls, fname)] = im
                with open(os.path.join(root, "test", cls, fname), "wb") as f:
                    f.write(_png_encode(im, 4, 4, 8, 0, 1))
        xs, ys = load_pngdir(root, 0)
        want = [imgs[("a", "x.PNG")], imgs[("b", "10.png")], imgs[("b", "2.png")]]  # byte-wise sorted
        ok = list(ys) == [0, 1, 1] and all(np.array_equal(xs[i, 0], to_unit(w)) for i, w in enumerate(want))
        check(ok, "png:DIR reads DIR/test, classes and files in byte-wise order, hidden folders skipped")
        xn = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
        np.savez(os.path.join(tmp, "d.npz"), x=xn, y=np.arange(5))
        xz, yz = load_npz(os.path.join(tmp, "d.npz"), 3)
        check(xz.shape == (3, 1, 28, 28) and np.array_equal(xz[:, 0], to_unit(xn[:3])) and list(yz) == [0, 1, 2],
              "npz reader: uint8 (N,H,W) -> float32 (N,1,H,W) k/255, first n")

    print(f"selftest: {len(fails)} failed ({time.time() - clock[1]:.0f} s)")
    return 1 if fails else 0


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
EPILOG = """\
attacks (--attack, comma list):
  autoattack  AutoAttack standard: apgd-ce -> apgd-t -> fab-t -> square, each on the examples still robust
              (the default); per-component numbers are "robust after components 1..k"
  apgd-ce     APGD, cross-entropy, --apgd-iters steps, --apgd-restarts runs
  apgd-dlr    APGD, DLR loss
  apgd-t      APGD, targeted DLR, one run per target: the top --n-targets other classes by clean logit
  fab-t       FAB, targeted (same targets), --fab-iters, alpha_max/eta/beta, --fab-restarts
  square      Square, --square-queries model evaluations (initial one included), p_init --square-p-init
  Several names run independently on all clean-correct examples, unless --cascade chains them.

output: one line per component (robust %, counts, adversarials rejected by the check, wall and CPU
seconds) and the ensemble; --json FILE writes {"config", "runs": [{"eps", "norm", "summary",
"examples"}]}, one example per test index: index, label, clean_pred, clean_correct,
robust{component: bool}, adv_pred (class of the adversarial of the first component, in the listed
order, that broke it; else the clean prediction), adv_pred_by{component: pred}; in cascade mode also
broken_by (the component that broke it, or null) and dist (norm of that adversarial), otherwise
dist_by{component: norm or null}. Examples misclassified clean count as not robust everywhere.
Exit status: 0, or 1 when --selftest fails.

An adversarial example counts only if finite, in [0,1], within eps (+1e-6 Linf, +1e-5 L2) and
misclassified when classified again. Results are deterministic for a given --seed, --batch and dtype.

examples:
  ref_autoattack.py --ckpt m.ckpt --eps 0.1 --n 1000 --json aa.json
  ref_autoattack.py --ckpt m.ckpt --attack apgd-ce,square --eps 8/255 --n 1000
  ref_autoattack.py --ckpt m.ckpt --norm L2 --eps 1.0 --n 500
  ref_autoattack.py --selftest
"""


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="ref_autoattack.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Independent PyTorch AutoAttack (APGD-CE, APGD-DLR, APGD-T, FAB-T, Square) on a Concord "
                    "checkpoint (mlp, lenet5), for checking Concord's own implementation.")
    ap.add_argument("--ckpt", help="Concord checkpoint (read with scripts/ckpt_to_torch.py)")
    ap.add_argument("--attack", default="autoattack", help="autoattack or a comma list of apgd-ce, apgd-dlr, "
                    "apgd-t, fab-t, square (default autoattack)")
    ap.add_argument("--cascade", action="store_true", help="chain the listed attacks like AutoAttack does")
    ap.add_argument("--norm", default="Linf", choices=("Linf", "L2"), help="threat model (default Linf)")
    ap.add_argument("--eps", default="8/255", help="budget(s), comma list: 0.1, 8/255 (default 8/255)")
    ap.add_argument("--n", type=int, default=1000, help="first N test examples in file order, 0 = all; "
                    "the examples of `concord attack --limit N` (default 1000)")
    ap.add_argument("--data", default=None, help="fashion-mnist | mnist | kmnist (IDX test files) | png:DIR | "
                    "FILE.npz (arrays x, y); default: the checkpoint's dataset, else fashion-mnist")
    ap.add_argument("--data-dir", default=None, help="directory of the IDX files (default "
                    "/usr/share/datasets/<dataset>)")
    ap.add_argument("--batch", type=int, default=250, help="examples per batch (default 250)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    ap.add_argument("--double", action="store_true", help="run model and attacks in float64")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--mkldnn", action="store_true", help="let torch use oneDNN convolutions (default off: "
                    "im2col + BLAS, faster for small convnets on one thread)")
    ap.add_argument("--json", default=None, help="write per-example outcomes to FILE")
    ap.add_argument("--apgd-iters", type=int, default=100, help="APGD iterations per run (default 100)")
    ap.add_argument("--apgd-restarts", type=int, default=1, help="apgd-ce / apgd-dlr runs (default 1)")
    ap.add_argument("--n-targets", type=int, default=9, help="apgd-t / fab-t target classes (default 9)")
    ap.add_argument("--fab-iters", type=int, default=100, help="FAB iterations per target (default 100)")
    ap.add_argument("--fab-restarts", type=int, default=1, help="FAB runs per target; the first starts at x "
                    "(default 1)")
    ap.add_argument("--fab-alpha-max", type=float, default=0.1, help="FAB alpha_max (default 0.1)")
    ap.add_argument("--fab-eta", type=float, default=1.05, help="FAB overshoot eta (default 1.05)")
    ap.add_argument("--fab-beta", type=float, default=0.9, help="FAB backward step beta (default 0.9)")
    ap.add_argument("--square-queries", type=int, default=5000, help="Square model evaluations per example, "
                    "the initial one included (default 5000)")
    ap.add_argument("--square-p-init", type=float, default=0.8, help="Square initial fraction of pixels per "
                    "square (default 0.8)")
    ap.add_argument("--quiet", action="store_true", help="print only the per-eps summary lines")
    ap.add_argument("--selftest", action="store_true", help="run the self-checks and exit (0 = all passed)")
    args = ap.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    torch.backends.mkldnn.enabled = bool(args.mkldnn)
    if args.selftest:
        return selftest(args)
    if not args.ckpt:
        ap.error("--ckpt is required (or --selftest)")
    try:
        eps_list = [parse_eps(e) for e in args.eps.split(",")]
    except (argparse.ArgumentTypeError, ValueError, ZeroDivisionError) as e:
        ap.error(f"--eps: {e}")
    if args.norm == "Linf" and any(e > 1 for e in eps_list):
        ap.error("--eps: Linf budgets are in [0,1] pixel units (8/255, 0.1)")
    if args.attack == "autoattack":
        attacks, cascade = list(STANDARD), True
    else:
        attacks = [a.strip() for a in args.attack.split(",") if a.strip()]
        bad = [a for a in attacks if a not in COMPONENTS]
        if bad or not attacks:
            ap.error(f"--attack: unknown {bad}; use autoattack or {', '.join(COMPONENTS)}")
        cascade = args.cascade
    cfg = Config(apgd_iters=args.apgd_iters, apgd_restarts=args.apgd_restarts, n_targets=args.n_targets,
                 fab_iters=args.fab_iters, fab_restarts=args.fab_restarts, fab_alpha_max=args.fab_alpha_max,
                 fab_eta=args.fab_eta, fab_beta=args.fab_beta, square_queries=args.square_queries,
                 square_p_init=args.square_p_init)

    import ckpt_to_torch
    db = sqlite3.connect(f"file:{args.ckpt}?mode=ro", uri=True)
    meta = dict(db.execute("SELECT key, value FROM meta"))
    db.close()
    if meta.get("head", "softmax") != "softmax":
        sys.exit(f"{args.ckpt}: head {meta.get('head')}: only classifiers (softmax head) can be attacked")
    dtype = torch.float64 if args.double else torch.float32
    net = ckpt_to_torch.load(args.ckpt).to(dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    spec = args.data or (meta.get("dataset") if meta.get("dataset") in ("fashion-mnist", "mnist", "kmnist")
                         else "fashion-mnist")
    x, y, src = load_data(spec, args.data_dir, args.n)
    shape = (int(meta["in_c"]), int(meta["in_h"]), int(meta["in_w"]))
    if tuple(x.shape[1:]) != shape:
        sys.exit(f"data {src}: examples are {tuple(x.shape[1:])}, the checkpoint expects {shape}")
    x = x.to(dtype)
    log = (lambda s: None) if args.quiet else print
    out = {"config": {"ckpt": os.path.abspath(args.ckpt), "arch": meta.get("arch"), "rule": meta.get("rule"),
                      "data": src, "n": int(x.shape[0]), "attacks": attacks, "cascade": cascade,
                      "seed": args.seed, "batch": args.batch, "dtype": str(dtype).replace("torch.", ""),
                      "torch": torch.__version__, "params": vars(cfg)},
           "runs": []}
    log(f"ref_autoattack: {args.ckpt} ({meta.get('arch')}, rule {meta.get('rule')}), {x.shape[0]} examples "
          f"of {src}, {'+'.join(attacks)}{' (cascade)' if cascade else ''}, {args.norm}, "
          f"{out['config']['dtype']}, seed {args.seed}")
    for eps in eps_list:
        print(f"-- eps {eps:.6g} ({args.norm}), {x.shape[0]} examples")
        rows, examples = evaluate(net, x, y, eps, args.norm, attacks, cascade, cfg, args.seed, args.batch)
        out["runs"].append({"eps": eps, "norm": args.norm, "summary": rows, "examples": examples})
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, args.json)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
