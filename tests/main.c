/* tests/main.c -- the runner: registered tests, one at a time, in name order. See test.h. */
#define _POSIX_C_SOURCE 200809L
#include "tests/test.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/core.h"

typedef struct { const char *name; TestFn fn; } Test;
static Test g_tests[1024];
static int g_ntests, g_cur_failures, g_quiet;
static char g_tmp[256];

void test_register(const char *name, TestFn fn) {
    CHECK(g_ntests < (int)ARRAY_LEN(g_tests));
    g_tests[g_ntests++] = (Test){name, fn};
}
void test_fail_at(const char *file, int line, const char *fmt, ...) {
    g_cur_failures++;
    if (g_quiet) return;
    if (g_cur_failures > 20) return; /* the first ones are the useful ones */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
int test_failed_now(void) { return g_cur_failures; }
const char *test_tmpdir(void) { return g_tmp; }
const char *test_exe(void) {
    const char *e = getenv("CONCORD_EXE");
    return e && *e ? e : "./concord";
}
int test_run(const char *cmd, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0, k;
    char buf[4096];
    while ((k = fread(buf, 1, sizeof buf, p)) > 0)
        if (out && n + 1 < cap) {
            size_t c = k < cap - 1 - n ? k : cap - 1 - n;
            memcpy(out + n, buf, c);
            n += c;
        }
    if (out) out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
char *t_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = xmalloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = fread(b, 1, (size_t)(n > 0 ? n : 0), f);
    fclose(f);
    b[got] = 0;
    if (len) *len = got;
    return b;
}

long t_sql_long(const char *db, const char *sql) {
    sqlite3 *h = NULL;
    long v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            v = (long)sqlite3_column_int64(st, 0);
        else fprintf(stderr, "    sql %s on %s: %s\n", sql, db, sqlite3_errmsg(h));
        sqlite3_finalize(st);
    } else {
        fprintf(stderr, "    cannot open %s read-only\n", db);
    }
    sqlite3_close(h);
    return v;
}

unsigned long long t_sql_digest(const char *db, const char *sql, long *rows) {
    sqlite3 *h = NULL;
    unsigned long long d = FNV1A_INIT;
    long n = 0;
    int ok = 0;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
            int rc;
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                for (int c = 0; c < sqlite3_column_count(st); c++) {
                    int type = sqlite3_column_type(st, c);
                    d = fnv1a64(&type, sizeof type, d);
                    if (type == SQLITE_FLOAT) { /* every bit of the double, not a printed form */
                        double v = sqlite3_column_double(st, c);
                        d = fnv1a64(&v, sizeof v, d);
                    } else if (type == SQLITE_INTEGER) {
                        sqlite3_int64 v = sqlite3_column_int64(st, c);
                        d = fnv1a64(&v, sizeof v, d);
                    } else if (type != SQLITE_NULL) {
                        const void *v = sqlite3_column_blob(st, c);
                        int len = sqlite3_column_bytes(st, c);
                        d = fnv1a64(&len, sizeof len, d);
                        if (v && len) d = fnv1a64(v, (size_t)len, d);
                    }
                }
                n++;
            }
            ok = rc == SQLITE_DONE;
        }
        if (!ok) fprintf(stderr, "    sql %s on %s: %s\n", sql, db, sqlite3_errmsg(h));
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    if (rows) *rows = n;
    return ok ? d : 0;
}

static int g_bad_inputs;
static int g_skipped_now; /* the current test called test_skip */

void test_skip(const char *why) {
    g_skipped_now = 1;
    printf("SKIP %s\n", why);
    fflush(stdout);
}
int t_cli_fails_at(const char *file, int line, const char *want, const char *fmt, ...) {
    char args[6000], cmd[8192], out[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", test_exe(), args);
    int rc = test_run(cmd, out, sizeof out);
    g_bad_inputs++;
    if (rc == 0) test_fail_at(file, line, "expected a failure (non-zero exit) from: concord %s\n    output: %.300s", args, out);
    else if (!strstr(out, want)) test_fail_at(file, line, "concord %s: expected \"%s\" in: %.400s", args, want, out);
    else if (strstr(out, "Sanitizer")) /* make asan: refusing must not leak or misbehave on the way out either */
        test_fail_at(file, line, "concord %s: a sanitizer report: %.600s", args, strstr(out, "Sanitizer"));
    return rc;
}

double t_compare(const char *what, const float *a, const double *b, long n, double atol, double rtol,
                 const char *file, int line) {
    double worst = 0, maxdiff = 0;
    int shown = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), r = d / (atol + rtol * fabs(b[i]));
        if (!(r <= 1.0) && !isnan(worst)) {
            if (shown < 5 && !g_quiet)
                fprintf(stderr, "    %s[%ld]: got %.9g want %.9g\n", what, i, (double)a[i], b[i]);
            shown++;
        }
        if (isnan(r)) worst = NAN;
        else if (r > worst) worst = r;
        if (d > maxdiff) maxdiff = d;
    }
    if (!(worst <= 1.0))
        test_fail_at(file, line, "%s: %d of %ld values out of tolerance (atol %.2g rtol %.2g), max |diff| %.3g",
                     what, shown, n, atol, rtol, maxdiff);
    return worst;
}
int test_expect_failure(TestFn fn) {
    int saved = g_cur_failures, q = g_quiet;
    g_quiet = 1;
    fn();
    g_quiet = q;
    int failed = g_cur_failures > saved;
    g_cur_failures = saved;
    return failed;
}

static int cmp_test(const void *a, const void *b) { return strcmp(((const Test *)a)->name, ((const Test *)b)->name); }

int main(int argc, char **argv) {
    qsort(g_tests, g_ntests, sizeof(Test), cmp_test);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < g_ntests; i++) puts(g_tests[i].name);
        return 0;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/concord-test-%ld", (long)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", g_tmp, g_tmp);
    if (system(cmd) != 0) { fprintf(stderr, "cannot create %s\n", g_tmp); return 1; }
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_ntests; i++) {
        int want = argc <= 1;
        for (int a = 1; a < argc; a++)
            if (strncmp(g_tests[i].name, argv[a], strlen(argv[a])) == 0) want = 1;
        if (!want) continue;
        g_cur_failures = 0;
        g_skipped_now = 0;
        err_clear();
        double t0 = now_seconds();
        g_tests[i].fn();
        double dt = now_seconds() - t0;
        if (g_cur_failures) { failed++; printf("FAIL %s (%.2fs)\n", g_tests[i].name, dt); }
        else if (g_skipped_now) { skipped++; printf("skip %s (%.2fs)\n", g_tests[i].name, dt); }
        else { passed++; printf("ok   %s (%.2fs)\n", g_tests[i].name, dt); }
        fflush(stdout);
    }
    if (!failed) { snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp); if (system(cmd)) {} }
    else printf("test files kept in %s\n", g_tmp);
    if (g_bad_inputs) printf("%d bad-input cases checked (each: non-zero exit and its message)\n", g_bad_inputs);
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
