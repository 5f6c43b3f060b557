/* fuzz_suite.c -- libFuzzer target for the suite reader (harness/suite/ini.c through inih), the planner
 * (plan.c), the plan-time option checks (every job's command line through the commands' own checks,
 * harness/cli cmd_job_check) and the plan file (planfile.c): a suite that loads must plan, its plan
 * must check or fail with one line, and a written plan must read back to the same jobs. A suite that
 * does not load must say why in one line naming the file.
 * The input is the suite file (suite_load reads a path: it is written to a temporary file first).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/cli/commands.h"
#include "harness/core.h"
#include "harness/suite/suite.h"

static void write_input(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, size, f) == size);
    CHECK(fclose(f) == 0);
}

/* A grid the fuzzer can blow up to millions of jobs (32 items in each of five lists): plan only small ones. */
static long plan_size(const Suite *s) {
    long per = (long)s->ft_rules.n * (1 + s->natk) + (long)s->hash_rules.n * s->hash_bits.n * (1 + s->natk);
    return (long)s->datasets.n * s->models.n * s->seeds.n * (s->has_pretrain ? s->pre_rules.n : 1) * (per + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64], plan[64];
    static Suite s;
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz-suite-%ld.ini", (long)getpid());
        snprintf(plan, sizeof plan, "/tmp/fuzz-suite-%ld.tsv", (long)getpid());
    }
    write_input(path, data, size);
    err_clear();
    if (suite_load(path, &s) != 0) {
        CHECK(err_msg()[0] && !strchr(err_msg(), '\n') && strncmp(err_msg(), path, strlen(path)) == 0);
        return 0;
    }
    if (plan_size(&s) > 2000) return 0;
    SuitePlan p, q;
    CHECK(suite_plan(&s, "/tmp/fuzz-suite-out", "/tmp/fuzz-suite-out/concord.db", &p) == 0);
    for (int i = 0; i < p.n; i++) {
        const SuiteJob *j = &p.jobs[i];
        CHECK(j->argc > 0 && j->argv[j->argc] == NULL);
        for (int d = 0; d < j->ndeps; d++) CHECK(j->deps[d] >= 0 && j->deps[d] < i);
    }
    err_clear();
    if (suite_plan_check(&s, &p, cmd_job_check) != 0)
        CHECK(err_msg()[0] && !strchr(err_msg(), '\n') && strncmp(err_msg(), path, strlen(path)) == 0);
    err_clear();
    CHECK(suite_plan_write(&p, plan) == 0);
    if (suite_plan_read(plan, &q) != 0) {
        /* a value the plan file cannot carry (a tab is refused by the reader; a newline cannot reach here) */
        fprintf(stderr, "plan written but not read back: %s\n", err_msg());
        CHECK(0);
    }
    CHECK(q.n == p.n);
    for (int i = 0; i < p.n; i++) {
        CHECK(str_eq(p.jobs[i].key, q.jobs[i].key) && p.jobs[i].argc == q.jobs[i].argc);
        for (int a = 0; a < p.jobs[i].argc; a++) CHECK(str_eq(p.jobs[i].argv[a], q.jobs[i].argv[a]));
    }
    suite_plan_free(&q);
    suite_plan_free(&p);
    return 0;
}
