/* core.c -- errors, allocation, RNG, small parsers. See core.h. */
#define _POSIX_C_SOURCE 200809L
#include "harness/core.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_err[1024];

int err_set(const char *fmt, ...) {
    if (g_err[0]) return -1; /* keep the first, most specific message */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return -1;
}
const char *err_msg(void) { return g_err; }
void err_clear(void) { g_err[0] = 0; }
int err_die(void) {
    fprintf(stderr, "concord: %s\n", g_err[0] ? g_err : "failed (no message: this is a bug)");
    return 1;
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "concord: out of memory allocating %zu bytes\n", n); exit(1); }
    return p;
}
void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) { fprintf(stderr, "concord: out of memory allocating %zu bytes\n", n * sz); exit(1); }
    return p;
}

void xqsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
    if (n > 1) qsort(base, n, size, cmp);
}

/* Large zeroed blocks (workspaces) come straight from mmap, on transparent huge pages where the kernel
 * offers them (madvise): a Work's first touch of ~1 GB in 4 KiB pages costs ~250k page faults, measured
 * at 15% of a resnet20 training epoch's CPU time on this VM (docs/performance.md). */
void *big_alloc(size_t n) {
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "concord: out of memory allocating %zu bytes\n", n);
        exit(1);
    }
#ifdef MADV_HUGEPAGE
    madvise(p, n ? n : 1, MADV_HUGEPAGE);
#endif
    return p;
}
/* The same for a block from xmalloc that is read at random for its whole life (a dataset's pixels):
 * its 2 MiB-aligned interior goes on huge pages where the kernel offers them. */
void advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    const uintptr_t H = (uintptr_t)2 << 20, a = ((uintptr_t)p + H - 1) & ~(H - 1), e = ((uintptr_t)p + n) & ~(H - 1);
    if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p, (void)n;
#endif
}
void big_free(void *p, size_t n) {
    if (p) munmap(p, n ? n : 1);
}
char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* ---- RNG ---- */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
void rng_seed(Rng *r, uint64_t seed, uint64_t purpose, uint64_t index) {
    uint64_t x = seed;
    uint64_t k = splitmix64(&x) ^ (purpose * 0xd1b54a32d192ed03ULL);
    x = k;
    k = splitmix64(&x) ^ (index * 0x8cb92ba72f3d8dd7ULL);
    x = k;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t rng_u64(Rng *r) {
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}
float rng_uniform(Rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
double rng_uniform_d(Rng *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
float rng_normal(Rng *r) {
    double u1 = rng_uniform_d(r), u2 = rng_uniform_d(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
uint32_t rng_below(Rng *r, uint32_t n) {
    CHECK(n > 0);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, v;
    do v = rng_u64(r); while (v >= lim);
    return (uint32_t)(v % n);
}
void rng_shuffle(Rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint32_t)i + 1), t = a[i];
        a[i] = a[j]; a[j] = t;
    }
}

volatile int g_interrupted;
static void on_signal(int sig) { g_interrupted = sig; }
void install_interrupt_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- misc ---- */
double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
uint64_t fnv1a64(const void *p, size_t n, uint64_t h) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ULL; }
    return h;
}
int file_sha_hex(const char *path, char out[17]) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: cannot open: %s", path, strerror(errno));
    uint64_t h = FNV1A_INIT;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = fnv1a64(buf, n, h);
    int bad = ferror(f);
    fclose(f);
    if (bad) return err_set("%s: read error", path);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return 0;
}
/* Numbers on the command line, in suite files, plan files and checkpoint meta are plain decimal: an
 * optional sign, digits, for a double an optional fraction and exponent. strtol/strtod alone would also
 * take leading blanks, hex (0x10 = 16), "inf" and "nan"; those are refused here, once for every caller. */
static int decimal_text(const char *s, int frac) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (frac && *p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return 0;
    if (frac && (*p == 'e' || *p == 'E')) {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == 0;
}
int parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !decimal_text(s, 0)) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
int parse_double(const char *s, double *out) {
    if (!s || !decimal_text(s, 1)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}
int str_eq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

void tmp_path(const char *path, char *out, size_t n) { snprintf(out, n, "%s.tmp.%ld", path, (long)getpid()); }
int file_commit(const char *tmp, const char *path) {
    int fd = open(tmp, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set("%s: cannot move the finished file into place: %s", path, strerror(e));
    }
    return 0;
}

int file_exists(const char *path) { return access(path, F_OK) == 0; }

int file_not_dir(const char *path, const char *what) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return err_set("%s: is a directory, not a %s", path, what);
    return 0;
}

int dir_create(const char *path) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return err_set("%.200s...: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return err_set("%s: cannot create directory: %s; check the path and permissions", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return err_set("%s: cannot create directory: %s; check the path and permissions", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return err_set("%s: exists and is not a directory; choose another path", buf);
    return 0;
}

int dir_create_parent(const char *path) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    return dir_create(dir);
}

void fault_point(const char *name) {
    static int parsed, k, seen;
    static char want[32];
    if (!parsed) {
        parsed = 1;
        const char *e = getenv("CONCORD_FAULT"), *colon = e ? strchr(e, ':') : NULL;
        if (colon && colon - e < (long)sizeof want) {
            snprintf(want, sizeof want, "%.*s", (int)(colon - e), e);
            k = atoi(colon + 1);
        }
    }
    if (k > 0 && strcmp(name, want) == 0 && ++seen == k) {
        fflush(NULL); /* the log lines so far, as a process that was merely slow to die would leave */
        kill(getpid(), SIGKILL);
    }
}

const char *cpu_describe(void) {
    static char out[160];
    if (out[0]) return out;
    char model[96] = "unknown", line[4096];
    int avx2 = 0, avx512 = 0, fma = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':') && str_eq(model, "unknown")) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = 0;
        } else if (strncmp(line, "flags", 5) == 0) {
            avx2 |= strstr(line, " avx2") != NULL;
            avx512 |= strstr(line, " avx512f") != NULL;
            fma |= strstr(line, " fma") != NULL;
        }
    }
    if (f) fclose(f);
    snprintf(out, sizeof out, "%s (%s%s%s)", model, avx512 ? "avx512f " : "", avx2 ? "avx2" : "no avx2", fma ? " fma" : "");
    return out;
}
