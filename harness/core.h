/* core.h -- what every Concord module may use: bug checks, environment errors, RNG, time.
 *
 * Two kinds of failure (STYLE.md):
 *   - a bug (broken invariant): CHECK(expr) prints the expression, file and line, then aborts. Always on.
 *   - the environment (missing file, corrupt data, SQLITE_BUSY, bad flag): the function calls
 *     err_set("path: what is wrong; what to do") and returns -1; the message travels up unchanged and
 *     main() prints it as one line with a non-zero exit. err_set keeps the FIRST message of a failure
 *     chain (the most specific one) until err_clear().
 * Not for: anything numeric or model-specific.
 */
#ifndef CONCORD_CORE_H
#define CONCORD_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "concord: internal error: CHECK(%s) failed at %s:%d\n", #cond, __FILE__, \
                    __LINE__);                                                               \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void abort(void);

/* ---- environment errors ---- */
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* always returns -1 */
const char *err_msg(void);                                               /* "" when none */
void err_clear(void);
int err_die(void); /* prints "concord: <msg>" to stderr, returns 1 (use: return err_die();) */

/* ---- memory: allocation failure is fatal (we allocate once per model/workspace) ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
/* qsort that takes an empty (possibly NULL) array: qsort(NULL, 0, ...) is undefined behaviour in C. */
void xqsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
char *xstrdup(const char *s);
/* n zeroed bytes on huge pages where possible (workspaces); big_free with the same n */
void *big_alloc(size_t n);
void advise_huge(void *p, size_t n);
void big_free(void *p, size_t n);

/* ---- RNG: explicit state, never rand(). Streams are keyed by (seed, purpose, index) so a draw does
 * not depend on batch size or on how many other draws happened before it. ---- */
typedef struct Rng { uint64_t s[4]; } Rng; /* xoshiro256** */
void rng_seed(Rng *r, uint64_t seed, uint64_t purpose, uint64_t index);
uint64_t rng_u64(Rng *r);
float rng_uniform(Rng *r);            /* [0,1) with 24 random bits */
double rng_uniform_d(Rng *r);         /* [0,1) with 53 random bits */
float rng_normal(Rng *r);             /* N(0,1), Box-Muller in double */
uint32_t rng_below(Rng *r, uint32_t n); /* uniform in [0,n), unbiased */
void rng_shuffle(Rng *r, int *a, int n);

/* purposes of random streams (index is up to the caller: epoch, layer, batch...) */
enum { RNG_INIT = 1, RNG_SHUFFLE, RNG_DROPOUT, RNG_RULE, RNG_SPLIT, RNG_AUGMENT, RNG_ATTACK, RNG_DATA,
       RNG_PROBE, RNG_HASH };

/* ---- interruption: SIGINT/SIGTERM set this flag; long loops poll it and stop cleanly ---- */
extern volatile int g_interrupted;
void install_interrupt_handlers(void);

/* ---- crash tests: fault injection ----
 * With $CONCORD_FAULT = "NAME:K", the K-th time the process passes fault_point(NAME) it kills itself
 * with SIGKILL: no cleanup, no flush, exactly what kill -9 or a power cut leaves (tests/test_resume.c).
 * Unset (always, outside tests): nothing. Points: "epoch" (train/finetune, after an epoch's checkpoint
 * and records), "epoch-row" (between an epoch's row and its checkpoint), "eval" (attack, after an
 * evaluation is computed, before anything is recorded).
 * $CONCORD_DB_MAX_PAGES = N (results/db.c) caps a results database at N pages: the next write fails with
 * SQLITE_FULL, "database or disk is full", exactly as on a full disk. */
void fault_point(const char *name);

/* ---- misc ---- */
/* The CPU this runs on, for the record: its model name and the vector extensions that decide kernels
 * ("AMD EPYC (avx2 avx512f)"); "unknown" when /proc/cpuinfo cannot be read. */
const char *cpu_describe(void);
double now_seconds(void);                      /* monotonic */
uint64_t fnv1a64(const void *p, size_t n, uint64_t h); /* content hash; start with h = FNV1A_INIT */
#define FNV1A_INIT 0xcbf29ce484222325ULL
int file_sha_hex(const char *path, char out[17]); /* fnv1a64 of a file's bytes as 16 hex chars */
/* Decimal only, the whole string: [+-]digits (parse_int), [+-]digits[.digits][e[+-]digits] (parse_double);
 * no blanks, hex, inf or nan. 0, or -1 (no message: the caller names the option). */
int parse_int(const char *s, long lo, long hi, long *out);
int parse_double(const char *s, double *out);
int str_eq(const char *a, const char *b);
int file_exists(const char *path);
/* -1 with err_set("PATH: is a directory, not a WHAT") when PATH is a directory, else 0 (a missing file is
 * for the caller's open to report): a directory opens with fopen and then reads as an empty file. */
int file_not_dir(const char *path, const char *what);
/* mkdir -p PATH (0777 less the umask); 0, or -1 with err_set naming the directory that failed, also when
 * PATH exists and is not a directory. dir_create_parent: the same for the directory holding a file. */
int dir_create(const char *path);
int dir_create_parent(const char *path);
/* write-temp-then-rename: callers write to tmp_path(path) and call file_commit */
void tmp_path(const char *path, char *out, size_t n);
int file_commit(const char *tmp, const char *path); /* fsync + rename; err_set on failure */

#endif
