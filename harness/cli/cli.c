/* cli.c -- see cli.h */
#include "harness/cli/cli.h"

#include <string.h>

#include "harness/core.h"

void args_usage(const char *cmd, const char *usage, const OptSpec *spec) {
    printf("usage: concord %s %s\n\noptions:%s\n", cmd, usage, spec && spec->name ? "" : " none");
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

int args_parse_pos(Args *a, const char *cmd, const char *usage, const OptSpec *spec, int maxpos, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->spec = spec;
    while (spec[a->nspec].name) a->nspec++;
    CHECK(a->nspec <= ARGS_MAX);
    CHECK(maxpos >= 0 && maxpos <= (int)ARRAY_LEN(a->pos));
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) { args_usage(cmd, usage, spec); return 1; }
        if (strncmp(s, "--", 2) != 0 || !s[2]) {
            if (!maxpos)
                return err_set("concord %s: unexpected argument '%s'; this command takes only --options (see concord %s --help)", cmd, s, cmd);
            if (a->npos >= maxpos) return err_set("concord %s: unexpected argument '%s'; usage: concord %s %s", cmd, s, cmd, usage);
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
        /* the last of two values would silently win: a typo in a long command line, or a script's default
           overridden by accident */
        if (a->set[k]) return err_set("concord %s: --%s is given twice; keep one", cmd, name);
        if (!spec[k].arg) {
            if (eq) return err_set("concord %s: --%s takes no value", cmd, name);
            a->val[k] = "1";
        } else if (eq) {
            a->val[k] = eq + 1;
        } else {
            if (i + 1 >= argc) return err_set("concord %s: --%s needs a value (%s)", cmd, name, spec[k].arg);
            a->val[k] = argv[++i];
        }
        /* an empty value never means anything (leave the option out for its default) */
        if (spec[k].arg && !a->val[k][0]) return err_set("concord %s: --%s needs a value (%s), not an empty string", cmd, name, spec[k].arg);
        a->set[k] = 1;
    }
    return 0;
}

int args_parse(Args *a, const char *cmd, const char *usage, const OptSpec *spec, int argc, char **argv) {
    return args_parse_pos(a, cmd, usage, spec, 0, argc, argv);
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
        return err_set("concord %s: --%s %s: expected a decimal number in [%g, %g]", a->cmd, name, v, lo, hi);
    return 0;
}
int arg_u64(const Args *a, const char *name, uint64_t *out) {
    long v;
    if (arg_int(a, name, 0, 2147483647L, &v) < 0) return -1;
    *out = (uint64_t)v;
    return 0;
}

int arg_list_text(const char *cmd, const char *name, const char *text, char *buf, size_t cap, char **items, int max) {
    if (strlen(text) >= cap) return err_set("concord %s: --%s: the list is too long (at most %zu characters)", cmd, name, cap - 1);
    snprintf(buf, cap, "%s", text);
    int n = 0;
    for (char *p = buf;;) {
        char *e = strchr(p, ',');
        if (e) *e = 0;
        if (!*p) return err_set("concord %s: --%s %s: empty item; write a comma-separated list such as a,b", cmd, name, text);
        if (n == max) return err_set("concord %s: --%s: at most %d comma-separated values", cmd, name, max);
        for (int i = 0; i < n; i++)
            if (strcmp(items[i], p) == 0) return err_set("concord %s: --%s %s: '%s' is listed twice; remove one", cmd, name, text, p);
        items[n++] = p;
        if (!e) break;
        p = e + 1;
    }
    return n;
}
int arg_list(const Args *a, const char *name, char *buf, size_t cap, char **items, int max) {
    const char *v = arg_str(a, name);
    if (!v) return err_set("concord %s: --%s is required", a->cmd, name);
    return arg_list_text(a->cmd, name, v, buf, cap, items, max);
}
