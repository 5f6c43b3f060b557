/* cmd_query.c -- `concord query REPORT`: the reports of results/query.h (or raw read-only SQL) from the
 * results database. Data goes to stdout, notes and errors to stderr.
 * Not for: figures (concord plot). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "results/query.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"

static const char k_usage[] =
    "REPORT [--db PATH] [--format text|csv|md|json]\n"
    "       concord query --sql \"SELECT ...\" [--db PATH] [--format ...]\n\n"
    "reports (accuracies in %, mean ± sd over seeds):\n"
    "  table      rows: rule (per dataset/model/kind); clean accuracy, robust accuracy per attack x gradient\n"
    "             source x eps (text/md: one block per attack x source; csv/json: one wide table)\n"
    "  curve      robust accuracy and attack success rate vs eps, long format\n"
    "  masking    true vs feedback vs transfer gradients vs Square side by side per rule and eps, with flags\n"
    "  alignment  per rule/layer/epoch mean angle(B,W), |B|/|W|, angle to the BP gradient\n"
    "  runs       one line per run with its status\n"
    "  hash-table hashing retrieval: rows rule; clean mAP and attacked-query mAP (against the clean database)\n"
    "             per attack x gradient source x eps, mean ± sd over seeds (classification reports exclude hashing)\n"
    "  worst      per attacked model and eps: the per-example worst case over every attack and gradient source\n"
    "             (an example is robust only if no evaluation of that model broke it), and what broke it first\n"
    "  verdict    per rule against BP on the same examples: clean and robust accuracy differences under each\n"
    "             gradient source and the worst case, 95% intervals, paired tests, one label (robust gain, no\n"
    "             gain, masking, worse) and its evidence; then the methods block (docs/verdict.md)\n"
    "--sql runs one read-only statement over the tables and views of docs/results.md.";

static const OptSpec k_opts[] = {
    {"db", "PATH", "results database (default $CONCORD_DB, else out/concord.db)", NULL},
    {"format", "FMT", "text | csv | md | json", "text"},
    {"sql", "SQL", "run one read-only SQL statement instead of a report", NULL},
    {0},
};

int cmd_query(int argc, char **argv) {
    Args a;
    int rc = args_parse_pos(&a, "query", k_usage, k_opts, 1, argc, argv);
    if (rc == 1) return 0;
    if (rc < 0) return err_die();
    int fmt;
    if (query_format_parse(arg_str(&a, "format"), &fmt) < 0) return err_die();
    const char *sql = arg_str(&a, "sql");
    if (!sql && a.npos != 1) {
        err_set("concord query: name one report (%s) or pass --sql; see concord query --help", query_report_names());
        return err_die();
    }
    if (sql && a.npos) {
        err_set("concord query: give either a report or --sql, not both");
        return err_die();
    }
    if (!sql) { /* check the name before touching the database */
        if (!query_report_known(a.pos[0])) {
            err_set("concord query: unknown report '%s'; use one of: %s", a.pos[0], query_report_names());
            return err_die();
        }
    }
    const char *path = arg_str(&a, "db");
    if (!path) path = db_default_path();
    Db *db = NULL;
    if (db_open_readonly(path, &db) < 0) return err_die();
    rc = sql ? query_sql(db, sql, fmt, stdout) : query_report(db, a.pos[0], fmt, stdout);
    db_close(db);
    if (fflush(stdout) != 0 && rc == 0) rc = err_set("concord query: cannot write the output");
    return rc < 0 ? err_die() : 0;
}
