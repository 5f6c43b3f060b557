/* test.h -- the test runner's tiny API. A test is `TEST(name) { ... }` in any tests/test_*.c file; it
 * registers itself at start-up, so adding a test file needs no edit anywhere else.
 * Assertions record a failure (with file:line and the values) and let the test go on; a test fails if
 * any of its assertions failed. `./build/test/concord_test NAME...` runs only the named tests (prefix
 * match); the last line is always "N passed, N failed" and the exit status is non-zero on any failure.
 */
#ifndef CONCORD_TEST_H
#define CONCORD_TEST_H

#include <math.h>
#include <stdio.h>

typedef void (*TestFn)(void);
void test_register(const char *name, TestFn fn);
void test_fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int test_failed_now(void); /* failures recorded in the current test so far */
const char *test_tmpdir(void); /* a fresh directory per run, removed at exit when all passed */
const char *test_exe(void);    /* path of the concord binary under test (./concord by default) */
/* Runs a shell command, captures stdout+stderr (truncated to cap) and returns the exit status. */
int test_run(const char *cmd, char *out, size_t cap);

#define TEST(name)                                                                     \
    static void test_##name(void);                                                     \
    __attribute__((constructor)) static void test_reg_##name(void) { test_register(#name, test_##name); } \
    static void test_##name(void)

#define T_ASSERT(cond)                                                                 \
    do { if (!(cond)) test_fail_at(__FILE__, __LINE__, "assertion failed: %s", #cond); } while (0)
#define T_ASSERT_MSG(cond, ...)                                                        \
    do { if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define T_EQ_INT(a, b)                                                                 \
    do { long long _a = (long long)(a), _b = (long long)(b);                           \
         if (_a != _b) test_fail_at(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, _a, _b); } while (0)
#define T_NEAR(a, b, tol)                                                              \
    do { double _a = (double)(a), _b = (double)(b), _t = (double)(tol);                \
         if (!(fabs(_a - _b) <= _t)) test_fail_at(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %.3g)", #a, #b, _a, _b, _t); } while (0)
#define T_CONTAINS(hay, needle)                                                        \
    do { if (!strstr((hay), (needle))) test_fail_at(__FILE__, __LINE__, "expected \"%s\" in output: %.300s", (needle), (hay)); } while (0)

/* Compare arrays: returns the max |a-b| / (atol + rtol*|b|) ratio; prints the first mismatches.
 * A result > 1 means failure (and has been recorded). */
double t_compare(const char *what, const float *a, const double *b, long n, double atol, double rtol,
                 const char *file, int line);
#define T_ALLCLOSE(what, a, b, n, atol, rtol) t_compare(what, a, b, n, atol, rtol, __FILE__, __LINE__)

/* A whole file, NUL-terminated (free it); its length in *len when not NULL; NULL when it cannot be read. */
char *t_slurp(const char *path, size_t *len);
/* One integer from a query on an SQLite file opened read-only (busy timeout 5 s); -1, with the reason on
 * stderr, when it fails. */
long t_sql_long(const char *db, const char *sql);
/* A digest of every row a query returns (column values as text, in order), to compare two databases;
 * writes the row count to *rows when not NULL; 0 when the query fails (reason on stderr). */
unsigned long long t_sql_digest(const char *db, const char *sql, long *rows);
/* Bad input: runs the binary under test with the printf-formatted arguments and expects a failure, a
 * non-zero exit and `want` in its output (stdout+stderr), and no sanitizer report (make asan). Each call is
 * one bad-input case; the runner prints how many were checked. Returns the exit status. */
int t_cli_fails_at(const char *file, int line, const char *want, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define T_CLI_FAILS(want, ...) t_cli_fails_at(__FILE__, __LINE__, want, __VA_ARGS__)

/* Marks the current test skipped, with a one-line reason printed as "SKIP <why>": only for a missing tool
 * that the test set-up could not install. Counted apart: the last line becomes "N passed, N failed, N skipped". */
void test_skip(const char *why);

/* Canary support: run fn and report whether it recorded failures, without counting them. */
int test_expect_failure(TestFn fn);

#endif
