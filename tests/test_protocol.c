/* test_protocol.c -- the paper's protocol: pre-train on some classes of a dataset, fine-tune on others
 * with a new head (dataset_select_classes, --classes), the subset carried by checkpoints into fine-tunes
 * and attacks. */
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "harness/core.h"
#include "tests/test.h"

TEST(protocol_class_subset_keeps_order_and_relabels) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:300:1x4x4:6", NULL, SPLIT_TRAIN, &d) == 0);
    Dataset s;
    T_ASSERT(dataset_open_classes("synthetic:300:1x4x4:6", NULL, "4,1-2", SPLIT_TRAIN, &s) == 0);
    T_ASSERT(str_eq(s.name, "synthetic:300:1x4x4:6[4,1-2]"));
    T_EQ_INT(s.classes, 3);
    /* the oracle: a plain filter of the full split, in order, with the new labels 4->0, 1->1, 2->2 */
    int k = 0, bad = 0, D = dataset_dim(&d);
    for (int i = 0; i < d.n; i++) {
        int nl = d.y[i] == 4 ? 0 : d.y[i] == 1 ? 1 : d.y[i] == 2 ? 2 : -1;
        if (nl < 0) continue;
        bad += k >= s.n || s.y[k] != nl || memcmp(s.x + (size_t)k * D, d.x + (size_t)i * D, sizeof(float) * D) != 0;
        k++;
    }
    T_EQ_INT(k, s.n);
    T_EQ_INT(bad, 0);
    dataset_close(&s);
    dataset_close(&d);
    /* bad lists: one line each, naming the problem */
    static const char *const bad_lists[][2] = {
        {"3,3", "listed twice"}, {"0-12", "does not exist"}, {"4-2", "runs backwards"}, {"a", "is not a class"},
        {"2", "at least 2 classes"}, {"", "empty list"}};
    for (size_t i = 0; i < ARRAY_LEN(bad_lists); i++) {
        err_clear();
        int rc = dataset_open_classes("synthetic:300:1x4x4:6", NULL, bad_lists[i][0], SPLIT_TRAIN, &s);
        T_ASSERT_MSG(rc < 0 || !*bad_lists[i][0], "--classes '%s' accepted", bad_lists[i][0]);
        if (rc == 0) dataset_close(&s); /* "" is no subset: the whole dataset, opened */
        if (*bad_lists[i][0]) T_CONTAINS(err_msg(), bad_lists[i][1]);
    }
    err_clear();
}

/* pre-train on classes 0-4, fine-tune on 5-9 with a new head (the dataset and subset come from the
 * parent unless given), attack: everything on the subset the checkpoint names */
TEST(protocol_pretrain_finetune_attack_on_subsets) {
    char pre[600], ft[600], db[600];
    snprintf(pre, sizeof pre, "%s/proto-pre.ckpt", test_tmpdir());
    snprintf(ft, sizeof ft, "%s/proto-ft.ckpt", test_tmpdir());
    snprintf(db, sizeof db, "%s/proto.db", test_tmpdir());
    char cmd[2000], out[8192];
    snprintf(cmd, sizeof cmd, "%s train --model lenet5 --dataset synthetic:800:1x16x16:10 --classes 0-4 --val 80 --epochs 1"
             " --out %s --db %s --quiet", test_exe(), pre, db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s finetune --from %s --classes 5-9 --new-head --rule usf --val 80 --epochs 1 --out %s --db %s --quiet",
             test_exe(), pre, ft, db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack fgsm --eps 0.1 --limit 30 --db %s --quiet", test_exe(), ft, db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM runs WHERE dataset = 'synthetic:800:1x16x16:10[0-4]' AND kind = 'train'"), 1);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM runs WHERE dataset = 'synthetic:800:1x16x16:10[5-9]' AND kind = 'finetune'"), 1);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals WHERE dataset = 'synthetic:800:1x16x16:10[5-9]' AND n = 30"), 1);
    T_EQ_INT(t_sql_long(ft, "SELECT COUNT(*) FROM meta WHERE key = 'class_subset' AND value = '5-9'"), 1);
    T_EQ_INT(t_sql_long(ft, "SELECT COUNT(*) FROM meta WHERE key = 'classes' AND value = '5'"), 1);
    /* a subset with another class count needs a new head, and says so */
    T_CLI_FAILS("pass --new-head", "finetune --from %s --classes 5-7 --rule bp --val 20 --epochs 1 --no-db", pre);
}
