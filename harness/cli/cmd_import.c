/* cmd_import.c -- `concord import`: a PyTorch state_dict (.pt) becomes a Concord checkpoint.
 *
 * Thin on purpose: the options are declared here (so `concord import --help` documents them), the work is
 * done by scripts/import_torch.py (python3 + numpy; it reads the pickle, matches the keys, turns feedback
 * tensors into rule state and writes a checkpoint to a temporary file), and this file then loads that
 * file with ckpt_load -- every tensor, shape and value checked against the model Concord rebuilds --
 * checks the normalisation std is positive and the logits finite, and renames it to --out. On any
 * failure the temporary file is removed: nothing is ever written under --out's name.
 * Where the helper lives: $CONCORD_SCRIPTS, else scripts/ beside the executable or up to three folders
 * above it, else ./scripts. The interpreter: $CONCORD_PYTHON, else /usr/bin/python3.
 * Not for: the key layouts and rule mappings (scripts/import_torch.py, docs/import.md).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rules/build.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"

extern char **environ;

/* The same names as OPTIONS in scripts/import_torch.py (tests/test_import.c checks they agree). */
static const OptSpec IMPORT_OPTS[] = {
    {"from", "FILE.pt", "the PyTorch file: a state_dict, or a dict holding one under state_dict/model/...", NULL},
    {"model", "ARCH", "architecture: mlp | lenet5 | alexnet | vgg16 | resnet18 | resnet20", NULL},
    {"out", "CKPT", "the Concord checkpoint to write", NULL},
    {"rule", "R", "rule the model was trained with: bp|fa|dfa|usf|brsf|frsf (default: side file, else bp)", NULL},
    {"dataset", "D", "what it was trained on: input shape, classes, default normalisation", NULL},
    {"input", "CxHxW", "input shape per sample (default: from --dataset)", NULL},
    {"classes", "K", "class count (default: the classifier's rows)", NULL},
    {"mean", "M[,M...]", "input normalisation mean per channel, in [0,1] pixel units", NULL},
    {"std", "S[,S...]", "input normalisation std per channel", NULL},
    {"width", "X", "channel multiplier of the conv nets (default: from the first conv)", NULL},
    {"hidden", "W,W", "mlp hidden widths (default: from the file)", NULL},
    {"dropout", "P", "alexnet/vgg16 classifier dropout (inference ignores it)", NULL},
    {"task", "classify|hash", "hash: a tanh code layer of --bits outputs", NULL},
    {"bits", "K", "hash code length (default: the code layer's rows)", NULL},
    {"usf-scale", "K", "usf scale xavier|he-fanout|none|wstd|meanabs (default: inferred from weight_backward)", NULL},
    {"magnitude", "K", "brsf/frsf magnitudes: uniform|halfnormal", NULL},
    {"brsf-resample", "K", "brsf redraw: batch|forward", NULL},
    {"last-layer-bp", NULL, "exact BP in the classifier (default: inferred when it has no feedback tensor)", NULL},
    {"rule-seed", "S", "rule seed (brsf draws)", NULL},
    {"frsf-abs", NULL, "frsf: take |weight_backward| as the magnitude even where its signs disagree with W", NULL},
    {"ignore-feedback", NULL, "bp/usf/brsf: ignore the file's feedback tensors", NULL},
    {"side", "FILE.json", "options and meta as JSON (default: FILE.concord.json beside --from, if present)", NULL},
    {0},
};

static const char IMPORT_USAGE[] =
    "--from FILE.pt --model ARCH --out C.ckpt [--rule R] [--dataset D | --input CxHxW] [--mean M --std S] [options]\n"
    "  (docs/import.md: accepted key layouts, feedback tensors per rule, every refusal)";

static int exists_file(const char *p) { return access(p, R_OK) == 0; }

/* The helper script: $CONCORD_SCRIPTS/import_torch.py, else scripts/ beside the executable or in one of
 * its parents (build/asan/concord-asan), else ./scripts/import_torch.py. */
static int helper_path(char *out, size_t n) {
    const char *env = getenv("CONCORD_SCRIPTS");
    if (env && *env) {
        snprintf(out, n, "%s/import_torch.py", env);
        return exists_file(out) ? 0 : err_set("%s: not found ($CONCORD_SCRIPTS); point it at Concord's scripts/ folder", out);
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = 0;
            snprintf(out, n, "%s/scripts/import_torch.py", exe);
            if (exists_file(out)) return 0;
        }
    }
    snprintf(out, n, "scripts/import_torch.py");
    if (exists_file(out)) return 0;
    return err_set("scripts/import_torch.py not found beside the concord executable; run concord from its source tree or set CONCORD_SCRIPTS");
}

/* Runs the helper; returns its exit status (it printed its own one-line message), or -1 with err_set. */
static int run_helper(const char *python, const char *script, const Args *a, const char *tmp, const char *hash) {
    char *argv[2 * ARGS_MAX + 8], names[ARGS_MAX][40];
    int k = 0;
    argv[k++] = (char *)python;
    argv[k++] = (char *)script;
    for (int i = 0; i < a->nspec; i++) { /* every option given, as given, but --out (the helper writes tmp) */
        if (!a->set[i] || str_eq(a->spec[i].name, "out")) continue;
        snprintf(names[i], sizeof names[i], "--%s", a->spec[i].name);
        argv[k++] = names[i];
        if (a->spec[i].arg) argv[k++] = (char *)a->val[i];
    }
    argv[k++] = "--tmp";
    argv[k++] = (char *)tmp;
    argv[k++] = "--source-hash";
    argv[k++] = (char *)hash;
    argv[k] = NULL;
    fflush(stdout);
    pid_t pid;
    int rc = posix_spawn(&pid, python, NULL, NULL, argv, environ);
    if (rc != 0) return err_set("concord import: cannot run %s: %s; apt-get install python3 python3-numpy", python, strerror(rc));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return err_set("concord import: waiting for %s failed: %s", script, strerror(errno));
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return err_set("concord import: %s was killed by signal %d", script, WTERMSIG(st));
}

/* ckpt_load checks every tensor; here the rest: a positive normalisation std, finite logits. */
static int validate(const char *tmp, const char *out, char *summary, size_t n) {
    CkptMeta meta;
    Model *m = ckpt_load(tmp, NULL, NULL, 0, 0, &meta);
    if (!m) {
        char why[600];
        snprintf(why, sizeof why, "%s", err_msg());
        err_clear();
        return err_set("concord import: the checkpoint written for %s does not load (a bug in scripts/import_torch.py; "
                       "please report it): %s", out, why);
    }
    int rc = 0;
    const Layer *norm = &m->L[0];
    for (int c = 0; c < norm->c && rc == 0; c++)
        if (!(norm->std[c] > 0)) rc = err_set("concord import: normalisation std of channel %d is %g; pass --std with values > 0", c, norm->std[c]);
    if (rc == 0) {
        Work *w = work_create(m, 1);
        float *x = xmalloc(sizeof(float) * (size_t)model_in_dim(m));
        for (int i = 0; i < model_in_dim(m); i++) x[i] = 0.5f;
        const float *y = model_forward(m, w, x, 1, FWD_INFER);
        for (int k = 0; k < model_out_dim(m) && rc == 0; k++)
            if (!isfinite(y[k])) rc = err_set("concord import: the imported model's output on a grey image is not finite; check --mean/--std and the batch-norm statistics");
        free(x);
        work_free(w);
    }
    snprintf(summary, n, "%s, rule %s, %ld parameters", m->spec.arch, meta_get(&meta, "rule"), m->n_params);
    model_free(m);
    return rc;
}

int cmd_import(int argc, char **argv) {
    Args a;
    int pr = args_parse(&a, "import", IMPORT_USAGE, IMPORT_OPTS, argc, argv);
    if (pr != 0) return pr > 0 ? 0 : err_die();
    const char *from = arg_str(&a, "from"), *out = arg_str(&a, "out");
    if (!from || !out) {
        err_set("concord import: --from FILE.pt and --out C.ckpt are required (concord import --help)");
        return err_die();
    }
    if (a.npos) { err_set("concord import: unexpected argument '%s' (options are --name value)", a.pos[0]); return err_die(); }
    char hash[17], script[PATH_MAX + 32], tmp[PATH_MAX + 32];
    if (file_sha_hex(from, hash) < 0) return err_die();
    const char *python = getenv("CONCORD_PYTHON");
    if (!python || !*python) python = "/usr/bin/python3";
    if (access(python, X_OK) != 0) {
        err_set("concord import: %s not found; apt-get install python3 python3-numpy", python);
        return err_die();
    }
    if (helper_path(script, sizeof script) < 0) return err_die();
    tmp_path(out, tmp, sizeof tmp);
    int rc = run_helper(python, script, &a, tmp, hash);
    if (rc != 0) {
        unlink(tmp);
        return rc < 0 ? err_die() : (rc > 125 ? 1 : rc);
    }
    char summary[256];
    if (validate(tmp, out, summary, sizeof summary) < 0 || file_commit(tmp, out) < 0) {
        unlink(tmp);
        return err_die();
    }
    printf("wrote %s (%s)\n", out, summary);
    return 0;
}
