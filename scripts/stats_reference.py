#!/usr/bin/python3
"""stats_reference.py -- reference values for tests/test_stats.c, computed independently of results/stats.c.

Exact rational arithmetic (fractions, math.comb) wherever it is affordable; mpmath at 60 digits for the
Wilson bounds and for the n = 10^6 binomial tails (log-gamma of the top term, then the term ratios summed
at 60 digits). Run:  /usr/bin/python3 scripts/stats_reference.py   and paste the output into the test.
"""
from fractions import Fraction
from math import comb

import mpmath as mp

mp.mp.dps = 60
Z95 = mp.mpf("1.959963984540054")


def wilson(k, n, z=Z95):
    k, n = mp.mpf(k), mp.mpf(n)
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * mp.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


def binom_two_sided_exact(k, n):
    """min(1, 2 P(X <= min(k, n-k))), X ~ Binomial(n, 1/2), as an exact fraction."""
    m = min(k, n - k)
    tail = Fraction(sum(comb(n, j) for j in range(m + 1)), 2 ** n)
    return min(Fraction(1), 2 * tail)


def binom_two_sided_mp(k, n):
    """Same, with mpmath: top term by log-gamma, then ratios j/(n-j+1) downwards until negligible."""
    m = min(k, n - k)
    if 2 * m == n:
        return mp.mpf(1)
    top = mp.exp(mp.loggamma(n + 1) - mp.loggamma(m + 1) - mp.loggamma(n - m + 1) - n * mp.log(2))
    s, t = mp.mpf(1), mp.mpf(1)
    for j in range(m, 0, -1):
        t *= mp.mpf(j) / (n - j + 1)
        s += t
        if t < s * mp.mpf(10) ** -40:
            break
    return min(mp.mpf(1), 2 * top * s)


def show(label, x):
    if isinstance(x, Fraction):
        x = mp.mpf(x.numerator) / x.denominator
    print("%-34s %s" % (label, mp.nstr(x, 17)))


print("# Wilson 95%% (z = %s)" % Z95)
for k, n in [(0, 10), (10, 10), (7, 20)]:
    lo, hi = wilson(k, n)
    show("wilson(%d,%d) lo" % (k, n), lo)
    show("wilson(%d,%d) hi" % (k, n), hi)

print("# exact McNemar p = binomial test of b out of b+c (fractions)")
for b, c in [(0, 0), (1, 0), (5, 0), (3, 7), (10, 2), (15, 30), (0, 12), (25, 25), (40, 20), (6, 5)]:
    p = binom_two_sided_exact(b, b + c)
    show("mcnemar(%d,%d)" % (b, c), p)

print("# binomial test, large n (fractions: exact integers)")
for k, n in [(5200, 10000), (4800, 10000), (5100, 10000), (100, 2000), (150, 3000), (0, 997)]:
    p = binom_two_sided_exact(k, n)
    show("binom(%d,%d)" % (k, n), p)

print("# binomial test, n = 10^6 (mpmath, 60 digits)")
for k in [499500, 499000, 497000, 490000, 483500, 482800, 481600, 481500]:
    show("binom(%d,1000000)" % k, binom_two_sided_mp(k, 10 ** 6))
print("# binomial test, n = 10^7 (mpmath, 60 digits)")
for k in [4995000, 4990000]:
    show("binom(%d,10000000)" % k, binom_two_sided_mp(k, 10 ** 7))
print("# cross-check of the mpmath route against exact integers")
for k, n in [(5200, 10000), (150, 3000)]:
    e = binom_two_sided_exact(k, n)
    a = binom_two_sided_mp(k, n)
    print("binom(%d,%d) relative difference %s" % (k, n, mp.nstr(abs(a / (mp.mpf(e.numerator) / e.denominator) - 1), 3)))
