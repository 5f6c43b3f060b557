/* test_progress.c -- progress bars (harness/cli/progress.h, the suite runner's bar) and --quiet:
 *   piped (stderr not a terminal): train, finetune, attack and audit write no carriage return and no escape
 *     sequence, and --quiet leaves exactly the lines its --help promises;
 *   on a terminal (util-linux `script -qc` gives the command a pseudo-terminal): a bar with batches or
 *     examples is drawn and erased; suite run with stdout redirected to a file while stderr is the terminal
 *     still writes every job's "[i/N] done" line to the file.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "tests/test.h"

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}
static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* a trained mlp checkpoint on small synthetic data, made once per run */
static const char *ckpt(void) {
    static char path[600];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s/prog.ckpt", test_tmpdir());
    char cmd[1200], out[4096];
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden 32 --dataset synthetic:600:1x8x8:4 --epochs 1 --val 100 --out %s --no-db",
             test_exe(), path);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    return path;
}

static int has_terminal_codes(const char *s) { return strchr(s, '\r') != NULL || strstr(s, "\033[") != NULL; }

/* canary: the terminal-code checker must see a bar's codes */
static void canary_codes(void) { T_ASSERT(!has_terminal_codes("\r\033[Ktrain epoch 1/1 [####] 3/4 batches")); }
TEST(progress_checker_canary) { T_ASSERT(test_expect_failure(canary_codes)); }

TEST(progress_nothing_when_piped) {
    const char *ck = ckpt();
    char cmd[1600], out[16384];
    /* stdout and stderr both into the pipe of test_run: no bar, no \r, no escape */
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden 32 --dataset synthetic:600:1x8x8:4 --epochs 2 --val 100 --no-db", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT_MSG(!has_terminal_codes(out), "train wrote terminal codes into a pipe: %.300s", out);
    T_ASSERT(strstr(out, "batches") == NULL);
    snprintf(cmd, sizeof cmd, "%s finetune --from %s --rule usf --epochs 1 --val 100 --no-db", test_exe(), ck);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT_MSG(!has_terminal_codes(out), "finetune wrote terminal codes into a pipe: %.300s", out);
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack pgd,square --eps 0.1 --queries 20 --limit 60 --batch 20 --no-db", test_exe(), ck);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT_MSG(!has_terminal_codes(out), "attack wrote terminal codes into a pipe: %.300s", out);
    T_ASSERT(strstr(out, "examples [") == NULL);
    char db[600];
    snprintf(db, sizeof db, "%s/prog-audit.db", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s audit --ckpt %s --budget quick --limit 40 --db %s", test_exe(), ck, db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT_MSG(!has_terminal_codes(out), "audit wrote terminal codes into a pipe: %.300s", out);
}

TEST(progress_quiet_does_what_help_says) {
    const char *ck = ckpt();
    char cmd[1600], out[16384];
    /* train --help: "only the final line" */
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden 32 --dataset synthetic:600:1x8x8:4 --epochs 2 --val 100 --quiet --db %s/q.db",
             test_exe(), test_tmpdir());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_EQ_INT(lines(out), 1);
    T_CONTAINS(out, "train done: test accuracy");
    snprintf(cmd, sizeof cmd, "%s finetune --from %s --rule frsf --epochs 1 --val 100 --quiet --no-db", test_exe(), ck);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_EQ_INT(lines(out), 1);
    T_CONTAINS(out, "finetune done: test accuracy");
    /* attack --help: every row once at the end, then the masking flags and where they were recorded */
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --eps 0,0.1 --limit 40 --quiet --db %s/q.db", test_exe(), ck, test_tmpdir());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT(strstr(out, "attack ") == NULL || strstr(out, "attack ") > strstr(out, "  2 ")); /* no header line */
    T_EQ_INT(count(out, "  1 pgd"), 1);
    T_EQ_INT(count(out, "  2 pgd"), 1);
    T_CONTAINS(out, "masking flags: none");
    T_CONTAINS(out, "recorded 2 evaluations");
    T_EQ_INT(lines(out), 4);
    /* plot --help: the files written are not listed (the count stays) */
    snprintf(cmd, sizeof cmd, "%s plot --db %s/q.db --out %s/qfig --quiet 2>/dev/null", test_exe(), test_tmpdir(), test_tmpdir());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_ASSERT(strstr(out, "plot: wrote") == NULL);
    T_CONTAINS(out, "figure");
    /* db --help: --quiet is merge's; anywhere else it would be ignored, so it is refused */
    T_CLI_FAILS("--quiet applies to db merge", "db info --db %s/q.db --quiet", test_tmpdir());
}

TEST(progress_on_a_terminal) {
    if (test_run("command -v script", NULL, 0) != 0) {
        test_skip("progress_on_a_terminal: `script` (util-linux) is not installed");
        return;
    }
    const char *ck = ckpt();
    char cmd[4000], out[32768], ts[600];
    snprintf(ts, sizeof ts, "%s/typescript", test_tmpdir());
    /* script gives the command a terminal on stdin, stdout and stderr; its output is the terminal's */
    snprintf(cmd, sizeof cmd, "script -qec \"%s train --model mlp --hidden 32 --dataset synthetic:3000:1x8x8:4 --epochs 2 --val 100 "
             "--batch 16 --no-db\" %s > /dev/null; cat %s", test_exe(), ts, ts);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "train epoch 1/2 [");
    T_CONTAINS(out, "batches");
    T_CONTAINS(out, "\r\033[K");
    T_CONTAINS(out, "train done");
    snprintf(cmd, sizeof cmd, "script -qec \"%s attack --ckpt %s --eps 0.1 --limit 200 --batch 20 --no-db\" %s > /dev/null; cat %s",
             test_exe(), ck, ts, ts);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "attack pgd eps 0.1 true [");
    T_CONTAINS(out, "examples");
    /* suite run: stdout into a file, stderr the terminal: the file has every job's done line */
    char ini[600], log[600];
    snprintf(ini, sizeof ini, "%s/prog.ini", test_tmpdir());
    snprintf(log, sizeof log, "%s/suite-stdout.txt", test_tmpdir());
    FILE *f = fopen(ini, "w");
    if (f) {
        fputs("[suite]\nname = p\ndatasets = synthetic:300:1x8x8:4\nmodels = mlp\nseeds = 0\n"
              "[pretrain]\nrules = bp\nepochs = 1\nhidden = 16\nval = 50\n"
              "[finetune]\nrules = bp, usf\nepochs = 1\nval = 50\n"
              "[attack a]\nattacks = fgsm\neps = 0.1\nlimit = 20\n", f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "script -qec \"%s suite run %s --out %s/prog-suite --jobs 1 > %s\" %s > /dev/null; cat %s",
             test_exe(), ini, test_tmpdir(), log, ts, log);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_EQ_INT(count(out, "] done "), 5); /* pretrain, 2 fine-tunes, 2 attacks */
    T_CONTAINS(out, "[5/5] done");
    T_ASSERT_MSG(!has_terminal_codes(out), "the bar leaked into the redirected stdout: %.300s", out);
}
