/* cli.c -- see cli.h */
#include "harness/cli/cli.h"

#include <string.h>

#include "harness/core.h"

void args_usage(const char *cmd, const char *usage, const OptSpec *spec) {
    printf("usage: concord %s %s\n\noptions:\n", cmd, usage);
    for (const OptSpec *o = spec; o && o->name; o++) {
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-26s %s", lhs, o->help);
        if (o->def) printf(" (default %s)", o->def);
        printf("\n");
    }
}

static int find(const Args *a, const char *name) {
    for (int i = 0; i < a->nspec; i++)
        if (strcmp(a->spec[i].name, name) == 0) return i;
    return -1;
}

int args_parse(Args *a, const char *cmd, const char *usage, const OptSpec *spec, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->spec = spec;
    while (spec[a->nspec].name) a->nspec++;
    CHECK(a->nspec <= ARGS_MAX);
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) { args_usage(cmd, usage, spec); return 1; }
        if (strncmp(s, "--", 2) != 0 || !s[2]) {
            if (a->npos >= (int)ARRAY_LEN(a->pos)) return err_set("concord %s: too many arguments", cmd);
            a->pos[a->npos++] = s;
            continue;
        }
        char name[64];
        const char *eq = strchr(s + 2, '=');
        size_t len = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, s + 2, len);
        name[len] = 0;
        int k = find(a, name);
        if (k < 0) return err_set("concord %s: unknown option --%s; see concord %s --help", cmd, name, cmd);
        if (!spec[k].arg) {
            if (eq) return err_set("concord %s: --%s takes no value", cmd, name);
            a->val[k] = "1";
        } else if (eq) {
            a->val[k] = eq + 1;
        } else {
            if (i + 1 >= argc) return err_set("concord %s: --%s needs a value (%s)", cmd, name, spec[k].arg);
            a->val[k] = argv[++i];
        }
        a->set[k] = 1;
    }
    return 0;
}

const char *arg_str(const Args *a, const char *name) {
    int k = find(a, name);
    CHECK(k >= 0); /* asking for an undeclared option is a bug */
    return a->set[k] ? a->val[k] : a->spec[k].def;
}
int arg_set(const Args *a, const char *name) {
    int k = find(a, name);
    CHECK(k >= 0);
    return a->set[k];
}
int arg_flag(const Args *a, const char *name) { return arg_set(a, name); }
int arg_int(const Args *a, const char *name, long lo, long hi, long *out) {
    const char *v = arg_str(a, name);
    if (!v) return err_set("concord %s: --%s is required", a->cmd, name);
    if (parse_int(v, lo, hi, out) < 0) return err_set("concord %s: --%s %s: expected an integer in [%ld, %ld]", a->cmd, name, v, lo, hi);
    return 0;
}
int arg_double(const Args *a, const char *name, double lo, double hi, double *out) {
    const char *v = arg_str(a, name);
    if (!v) return err_set("concord %s: --%s is required", a->cmd, name);
    if (parse_double(v, out) < 0 || *out < lo || *out > hi)
        return err_set("concord %s: --%s %s: expected a number in [%g, %g]", a->cmd, name, v, lo, hi);
    return 0;
}
int arg_u64(const Args *a, const char *name, uint64_t *out) {
    long v;
    if (arg_int(a, name, 0, 2147483647L, &v) < 0) return -1;
    *out = (uint64_t)v;
    return 0;
}
