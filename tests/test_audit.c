/* test_audit.c -- `concord audit`: one command runs the true-gradient attacks, the feedback path of a
 * non-BP rule, the transfer attack, the checks, the worst case and a verdict; everything is recorded. */
#include <stdio.h>
#include <string.h>

#include "tests/test.h"

TEST(audit_quick_with_surrogate) {
    char bp[600], usf[600], db[600], cmd[3000], out[65536];
    snprintf(bp, sizeof bp, "%s/audit-bp.ckpt", test_tmpdir());
    snprintf(usf, sizeof usf, "%s/audit-usf.ckpt", test_tmpdir());
    snprintf(db, sizeof db, "%s/audit.db", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s train --model lenet5 --dataset synthetic:600:1x16x16:4 --val 60 --epochs 2 --out %s --no-db --quiet"
             " && %s finetune --from %s --rule usf --val 60 --epochs 1 --out %s --no-db --quiet", test_exe(), bp, test_exe(), bp, usf);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s audit --ckpt %s --surrogate %s --eps 0.05,0.1 --budget quick --limit 80 --db %s", test_exe(), usf, bp, db);
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "exit %d: %.2000s", rc, out);
    T_CONTAINS(out, "eps = 0 reproduces clean accuracy            ok");
    T_CONTAINS(out, "apgd-ce/feedback");
    T_CONTAINS(out, "apgd-ce/transfer:");
    T_CONTAINS(out, "square/black-box");
    T_CONTAINS(out, "worst-case robust");
    T_CONTAINS(out, "verdict: at eps 0.1");
    /* the feedback path paired with the true gradient, per eps > 0: two lines, each with its McNemar p */
    T_CONTAINS(out, "feedback path vs true gradient (paired)      eps 0.05    apgd-ce: feedback ");
    T_CONTAINS(out, "eps 0.1     apgd-ce: feedback ");
    T_ASSERT(strstr(out, "McNemar p = ") && strstr(strstr(out, "McNemar p = ") + 1, "McNemar p = "));
    /* recorded: per eps (0, 0.05, 0.1) APGD-CE true, Square, APGD-CE feedback, APGD-CE transfer */
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals WHERE outcomes IS NOT NULL"), 12);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(DISTINCT grad_source) FROM evals"), 4); /* true, black-box, feedback, transfer */
    /* the worst case over everything is at most each evaluation's robust count at that eps */
    long worst = -1;
    snprintf(cmd, sizeof cmd, "%s query worst --db %s --format csv", test_exe(), db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    const char *p = strstr(out, ",0.1,80,");
    if (p) sscanf(p + 8, "%*[^,],%*[^,],%ld", &worst);
    T_ASSERT(worst >= 0);
    T_ASSERT(worst <= t_sql_long(db, "SELECT min(n_robust_ok) FROM evals WHERE eps = 0.1"));
    /* bad input */
    T_CLI_FAILS("--budget huge", "audit --ckpt %s --budget huge", usf);
    T_CLI_FAILS("unknown option --no-such", "audit --ckpt %s --no-such 1", usf);
    T_CLI_FAILS("--ckpt CKPT is required", "audit --eps 0.1");
    T_CLI_FAILS("--norm l3", "audit --ckpt %s --norm l3", usf);
}
