#!/usr/bin/python3
"""autoattack_check.py -- Concord's AutoAttack against the independent PyTorch reference
(scripts/ref_autoattack.py) on the same checkpoints and the same test examples.

    /usr/bin/python3 scripts/autoattack_check.py --ref REF.json --db CONCORD.db --ckpt M.ckpt

REF.json: `ref_autoattack.py --json` (cascade, standard version). CONCORD.db: a results database holding
`concord attack --ckpt M.ckpt --attack autoattack,apgd-ce --limit N --eps ...` (schema >= 4: per-example
outcomes). Prints, per eps, both robust accuracies, their difference, the acceptance criteria
(Concord's AutoAttack at most 1 point above the reference; APGD-CE within 1.5 points) and how many
examples get the same verdict; exits 1 when a criterion fails.
"""
import argparse
import hashlib
import json
import sqlite3
import sys

import numpy as np

REC = np.dtype([("index", "<u4"), ("y", "<i4"), ("pred", "<i4"), ("pred_adv", "<i4"), ("flags", "u1"), ("stage", "u1"),
                ("pad", "<u2")])


def fnv1a64_hex(path):
    h = 0xcbf29ce484222325
    with open(path, "rb") as f:
        for b in f.read():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return format(h, "016x")


def robust_bits(blob):
    assert blob[:4] == b"CCO1", "not an outcomes BLOB"
    rec = np.frombuffer(blob[16:], dtype=REC)
    return rec["index"].astype(int), ((rec["flags"] >> 1) & 1).astype(bool)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--ckpt", required=True)
    a = ap.parse_args()
    ref = json.load(open(a.ref))
    con = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True)
    h = fnv1a64_hex(a.ckpt)
    ok = True
    print("%-10s %-10s %10s %10s %8s %s" % ("eps", "attack", "reference", "concord", "diff", "same verdict"))
    for run in ref["runs"]:
        eps = run["eps"]
        ex = run["examples"]
        n = len(ex)
        for name, ref_key, limit in (("autoattack", "autoattack", 1.0), ("apgd-ce", "apgd-ce", 1.5)):
            rows = con.execute("SELECT outcomes, n_robust_ok, n FROM evals WHERE target_hash = ? AND attack = ? AND abs(eps - ?) < 1e-6"
                               " AND n = ? AND grad_source = 'true' AND outcomes IS NOT NULL ORDER BY id DESC LIMIT 1",
                               (h, name, eps, n)).fetchall()
            if not rows:
                print("%-10g %-10s %10s  no Concord evaluation with n = %d" % (eps, name, "", n))
                ok = False
                continue
            idx, rob = robust_bits(rows[0][0])
            ref_rob = np.array([e["robust"][ref_key] for e in ex], dtype=bool)
            assert list(idx) == [e["index"] for e in ex], "different example sets"
            ra, ca = 100.0 * ref_rob.mean(), 100.0 * rob.mean()
            d = ca - ra
            crit = d <= limit if name == "autoattack" else abs(d) <= limit
            ok &= bool(crit)
            print("%-10g %-10s %9.2f%% %9.2f%% %+7.2f  %.1f%%   %s (%s %.1f)" % (
                eps, name, ra, ca, d, 100.0 * (ref_rob == rob).mean(), "ok" if crit else "FAILED",
                "at most +" if name == "autoattack" else "within", limit))
    print("criteria %s" % ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
