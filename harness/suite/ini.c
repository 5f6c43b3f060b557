/* ini.c -- reading a suite file (INI, parsed with inih) into a Suite, every key validated and every value
 * canonicalised, each problem one line "FILE:LINE: what; fix". See suite.h and docs/suites.md.
 * Not for: expanding the grid into jobs (plan.c) or the plan file (planfile.c). */
#include "harness/suite/suite.h"

#include <ctype.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "harness/core.h"
#include "harness/model.h"
#include "rules/rule.h"
/* ---------------------------------------------------------------- option tables */

enum { V_INT, V_NUM, V_BOOL, V_ENUM, V_TEXT, V_CLASSES };
typedef struct KeySpec { const char *key; int type; const char *choices; /* V_ENUM: "a|b|c" */ } KeySpec;

/* [pretrain] / [finetune] keys passed on as `--key value` to concord train / finetune. */
static const KeySpec TRAIN_KEYS[] = {
    {"epochs", V_INT, NULL}, {"batch", V_INT, NULL}, {"lr", V_NUM, NULL}, {"momentum", V_NUM, NULL},
    {"wd", V_NUM, NULL}, {"nesterov", V_BOOL, NULL}, {"optimizer", V_ENUM, "sgd|adam"},
    {"schedule", V_ENUM, "const|step|cosine"}, {"step-size", V_INT, NULL}, {"gamma", V_NUM, NULL},
    {"usf-scale", V_ENUM, "xavier|he-fanout|none|wstd|meanabs"}, {"magnitude", V_ENUM, "uniform|halfnormal"},
    {"brsf-resample", V_ENUM, "batch|forward"}, {"last-layer-bp", V_BOOL, NULL}, {"width", V_NUM, NULL},
    {"hidden", V_TEXT, NULL}, {"dropout", V_NUM, NULL}, {"val", V_INT, NULL}, {"limit", V_INT, NULL},
    {"test-limit", V_INT, NULL}, {"augment", V_BOOL, NULL}, {"probe", V_INT, NULL}, {"classes", V_CLASSES, NULL},
};
static const KeySpec FINETUNE_ONLY_KEYS[] = {{"new-head", V_BOOL, NULL}, {"freeze", V_INT, NULL}};
/* [hash] keys besides TRAIN_KEYS and freeze (concord finetune --task hash). */
static const KeySpec HASH_KEYS[] = {{"hash-eta", V_NUM, NULL}, {"queries-per-class", V_INT, NULL}, {"topk", V_INT, NULL}};
/* [hash-attack NAME] keys passed on to concord attack --task hash. */
static const KeySpec HASH_ATTACK_KEYS[] = {
    {"steps", V_INT, NULL}, {"alpha", V_TEXT, NULL}, {"restarts", V_INT, NULL}, {"eot", V_INT, NULL},
    {"batch", V_INT, NULL}, {"limit", V_INT, NULL}, {"queries-per-class", V_INT, NULL}, {"topk", V_INT, NULL},
};
/* [attack NAME] keys passed on as `--key value` to concord attack. */
static const KeySpec ATTACK_KEYS[] = {
    {"steps", V_INT, NULL}, {"alpha", V_TEXT, NULL}, {"restarts", V_INT, NULL}, {"norm", V_ENUM, "linf|l2"},
    {"eot", V_INT, NULL}, {"queries", V_INT, NULL}, {"p-init", V_NUM, NULL}, {"batch", V_INT, NULL},
    {"limit", V_INT, NULL}, {"targets", V_INT, NULL}, {"version", V_ENUM, "standard|rand"},
};

static const KeySpec *keyspec_find(const KeySpec *t, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (str_eq(t[i].key, key)) return &t[i];
    return NULL;
}

static int enum_has(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, v, n) == 0) return 1;
        if (!bar) break;
        c = bar + 1;
    }
    return 0;
}

/* A canonical number: "%.10g" of the value, so "0.010" and "1e-2" hash alike. */
static int canon_number(const char *v, char *out, size_t cap) {
    double d;
    if (parse_double(v, &d) < 0) return -1;
    snprintf(out, cap, "%.10g", d);
    return 0;
}

/* eps: a non-negative number or a fraction "a/b" (kept as a fraction, both parts canonical). */
static int canon_eps(const char *v, char *out, size_t cap) {
    const char *slash = strchr(v, '/');
    double a, b;
    if (!slash) {
        if (canon_number(v, out, cap) < 0) return -1;
        return atof(out) >= 0 ? 0 : -1;
    }
    char num[64], ca[32], cb[32];
    size_t len = (size_t)(slash - v);
    if (len == 0 || len >= sizeof num) return -1;
    memcpy(num, v, len);
    num[len] = 0;
    if (parse_double(num, &a) < 0 || parse_double(slash + 1, &b) < 0 || a < 0 || !(b > 0)) return -1;
    canon_number(num, ca, sizeof ca);
    canon_number(slash + 1, cb, sizeof cb);
    snprintf(out, cap, "%s/%s", ca, cb);
    return 0;
}

/* Canonical text of a typed value, or -1 (the caller names the problem). BOOL false -> "". */
static int canon_value(const KeySpec *k, const char *v, char *out, size_t cap) {
    long iv;
    switch (k->type) {
    case V_INT:
        if (parse_int(v, 0, 1000000000L, &iv) < 0) return -1;
        snprintf(out, cap, "%ld", iv);
        return 0;
    case V_NUM:
        if (canon_number(v, out, cap) < 0 || atof(out) < 0) return -1;
        return 0;
    case V_BOOL:
        if (str_eq(v, "true") || str_eq(v, "yes") || str_eq(v, "1") || str_eq(v, "on")) snprintf(out, cap, "1");
        else if (str_eq(v, "false") || str_eq(v, "no") || str_eq(v, "0") || str_eq(v, "off")) out[0] = 0;
        else return -1;
        return 0;
    case V_ENUM:
        if (!enum_has(k->choices, v)) return -1;
        snprintf(out, cap, "%s", v);
        return 0;
    case V_CLASSES: { /* the same parser train/finetune use; canonical text, so 0,1,2 and 0-2 key alike */
        int sel[4096], nsel;
        if (dataset_classes_parse(v, 0, sel, &nsel, out, cap) < 0) { err_clear(); return -1; }
        return 0;
    }
    default:
        if (!*v || strlen(v) >= cap) return -1;
        for (const char *c = v; *c; c++)
            if (isspace((unsigned char)*c)) return -1;
        snprintf(out, cap, "%s", v);
        return 0;
    }
}

static const char *type_hint(const KeySpec *k) {
    static char buf[96];
    switch (k->type) {
    case V_INT: return "a non-negative integer";
    case V_NUM: return "a non-negative number";
    case V_BOOL: return "true or false";
    case V_ENUM: snprintf(buf, sizeof buf, "one of %s", k->choices); return buf;
    case V_CLASSES: return "classes like 0-4 or 5,6,7 (each once, at least 2)";
    default: return "one word without spaces";
    }
}

/* The classification attacks a suite may run: concord attack's table (attacks/attack.c ATTACKS), which the
 * suite runner does not include; test suite_attack_names_match_the_table keeps the two equal. */
static const char *const SUITE_ATTACKS[] = {"fgsm", "pgd", "pgd-l2", "square", "square-l2", "apgd-ce", "apgd-ce-l2", "apgd-dlr",
                                            "apgd-dlr-l2", "apgd-t", "apgd-t-l2", "fab-t", "fab-t-l2", "autoattack", "autoattack-l2"};
#define SUITE_ATTACK_LIST "fgsm, pgd, pgd-l2, square, square-l2, apgd-ce, apgd-dlr, apgd-t, fab-t, autoattack (each -l2 too)"

int suite_attack_known(const char *name) {
    for (size_t a = 0; a < ARRAY_LEN(SUITE_ATTACKS); a++)
        if (str_eq(name, SUITE_ATTACKS[a])) return 1;
    return 0;
}

/* ---------------------------------------------------------------- parsing */

typedef struct Parser {
    Suite *s;
    FILE *f;
    int line;             /* line the reader returned last = the line being handled */
    int section_line;     /* line of the last [section] header */
    int seen_suite, seen_ft;
    int line_suite, line_ft;
    char err[600];
} Parser;

static int perr(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* inih's line reader. It also refuses what inih would misread: a line longer than inih's buffer (inih would
 * cut it and read the rest as the next line) and a section header without its ']' (inih reports it only
 * after the keys below it have gone to the previous section). Returning NULL ends the parse. */
static char *reader(char *str, int num, void *stream) {
    Parser *ps = stream;
    if (ps->err[0]) return NULL;
    char *r = fgets(str, num, ps->f);
    if (!r) return r;
    ps->line++;
    size_t len = strlen(r);
    if (len + 1 == (size_t)num && r[len - 1] != '\n' && !feof(ps->f)) {
        perr(ps, "the line is longer than %d characters; shorten it (a long list can be split into fewer items)", num - 2);
        return NULL;
    }
    const char *c = r;
    while (*c == ' ' || *c == '\t') c++;
    if (c == r && len >= 3 && (unsigned char)r[0] == 0xEF && (unsigned char)r[1] == 0xBB && (unsigned char)r[2] == 0xBF && ps->line == 1)
        c += 3; /* a UTF-8 byte order mark, which inih skips */
    if (*c == '[') {
        ps->section_line = ps->line; /* inih does not report section headers */
        const char *close = strchr(c, ']');
        const char *rest = close ? close + 1 : NULL;
        while (rest && (*rest == ' ' || *rest == '\t')) rest++;
        if (!close) {
            int n = (int)strcspn(c, "\r\n");
            perr(ps, "'%.*s' is not a section header: the ']' is missing", n > 60 ? 60 : n, c);
            return NULL;
        }
        if (close == c + 1) { perr(ps, "'[]': a section needs a name, e.g. [finetune]"); return NULL; }
        for (const char *k = c + 1; k < close; k++) /* a name goes into job descriptions and the tab-separated plan */
            if ((unsigned char)*k < 0x20 || *k == 0x7f) {
                perr(ps, "the section name [%.*s] contains a tab or control character; use letters, digits, - and _", (int)(close - c - 1), c + 1);
                return NULL;
            }
        if (*rest && *rest != ';' && *rest != '#' && *rest != '\r' && *rest != '\n') {
            perr(ps, "text after the section header [%.*s]; put it on its own line or after ;", (int)(close - c - 1), c + 1);
            return NULL;
        }
    }
    return r;
}
static int perr(Parser *ps, const char *fmt, ...) {
    if (ps->err[0]) return 0;
    int k = snprintf(ps->err, sizeof ps->err, "%s:%d: ", ps->s->path, ps->line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + k, sizeof ps->err - (size_t)k, fmt, ap);
    va_end(ap);
    return 0; /* inih: stop */
}

/* "a, b ,c" -> items; empty items and duplicates are errors. */
static int parse_list(Parser *ps, const char *sec, const char *key, const char *value, SuiteList *l) {
    if (l->line) return perr(ps, "[%s] %s is given twice (first on line %d); keep one, lists are comma-separated", sec, key, l->line);
    l->line = ps->line;
    l->n = 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (!len) return perr(ps, "[%s] %s: empty item in '%s'; write a comma-separated list such as a, b", sec, key, value);
        if (len >= sizeof l->v[0]) return perr(ps, "[%s] %s: item '%.*s' is too long", sec, key, (int)len, p);
        if (l->n >= SUITE_MAX_LIST) return perr(ps, "[%s] %s: more than %d items; split the suite", sec, key, SUITE_MAX_LIST);
        memcpy(l->v[l->n], p, len);
        l->v[l->n][len] = 0;
        for (int i = 0; i < l->n; i++)
            if (str_eq(l->v[i], l->v[l->n])) return perr(ps, "[%s] %s: '%s' is listed twice; remove one", sec, key, l->v[i]);
        l->n++;
        if (!e) break;
        p = e + 1;
    }
    return 1;
}

/* rule: "" for the whole section, else the rule of a `key.RULE` override (already checked). */
static int parse_opt(Parser *ps, const char *sec, const KeySpec *k, const char *rule, const char *value, SuiteOpts *o) {
    for (int i = 0; i < o->n; i++)
        if (str_eq(o->o[i].key, k->key) && str_eq(o->o[i].rule, rule))
            return perr(ps, "[%s] %s%s%s is given twice (first on line %d); keep one", sec, k->key, *rule ? "." : "", rule,
                        o->o[i].line);
    if (o->n >= SUITE_MAX_OPTS) return perr(ps, "[%s]: too many keys", sec);
    SuiteOpt *op = &o->o[o->n];
    if (canon_value(k, value, op->val, sizeof op->val) < 0)
        return perr(ps, "[%s] %s%s%s = %s: expected %s", sec, k->key, *rule ? "." : "", rule, value, type_hint(k));
    snprintf(op->key, sizeof op->key, "%s", k->key);
    snprintf(op->rule, sizeof op->rule, "%s", rule);
    op->line = ps->line;
    op->flag = k->type == V_BOOL;
    o->n++;
    return 1;
}

static int check_items(Parser *ps, const char *sec, const char *key, SuiteList *l, int what) {
    for (int i = 0; i < l->n; i++) {
        const char *v = l->v[i];
        if (what == 'r' && !rule_find(v)) return perr(ps, "[%s] %s: unknown rule '%s'; see concord rules", sec, key, v);
        if (what == 'm') {
            int ok = 0;
            for (int a = 0; a < N_ARCHS; a++) ok |= str_eq(ARCHS[a].name, v);
            if (!ok) return perr(ps, "[%s] %s: unknown model '%s'; see concord models", sec, key, v);
        }
        if (what == 's') {
            long sd;
            if (parse_int(v, 0, 2147483647L, &sd) < 0) return perr(ps, "[%s] %s: seed '%s' is not a non-negative integer", sec, key, v);
            snprintf(l->v[i], sizeof l->v[i], "%ld", sd);
        }
        if (what == 'k') {
            int ok = 0;
            for (size_t a = 0; a < ARRAY_LEN(SUITE_ATTACKS); a++) ok |= str_eq(v, SUITE_ATTACKS[a]);
            if (!ok) return perr(ps, "[%s] %s: unknown attack '%s'; use %s", sec, key, v, SUITE_ATTACK_LIST);
        }
        if (what == 'K' && !str_eq(v, "hash-untargeted") && !str_eq(v, "hash-targeted"))
            return perr(ps, "[%s] %s: unknown hashing attack '%s'; use hash-untargeted or hash-targeted", sec, key, v);
        if (what == 'b') {
            long b;
            if (parse_int(v, 1, 64, &b) < 0) return perr(ps, "[%s] %s: '%s' is not a code length from 1 to 64", sec, key, v);
            snprintf(l->v[i], sizeof l->v[i], "%ld", b);
        }
        if (what == 'e') {
            char c[64];
            if (canon_eps(v, c, sizeof c) < 0) return perr(ps, "[%s] %s: '%s' is not a non-negative number or fraction like 8/255", sec, key, v);
            snprintf(l->v[i], sizeof l->v[i], "%s", c);
        }
        if (what == 'g' && !str_eq(v, "true") && !str_eq(v, "feedback") && strncmp(v, "transfer:", 9) != 0)
            return perr(ps, "[%s] %s: unknown gradient source '%s'; use true, feedback, transfer:RULE or transfer:pretrain", sec, key, v);
    }
    return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    Parser *ps = user;
    Suite *s = ps->s;
    if (ps->err[0]) return 0;
    if (!name) return 1; /* a section header alone (newer inih with INI_CALL_HANDLER_ON_NEW_SECTION) */
    if (strchr(value, '\t')) return perr(ps, "[%s] %s: the value contains a tab; use spaces", section, name);
    if (str_eq(section, "suite")) {
        if (!ps->seen_suite) { ps->seen_suite = 1; ps->line_suite = ps->section_line; }
        if (str_eq(name, "name")) {
            if (!*value || strlen(value) >= sizeof s->name || strpbrk(value, " /\t")) return perr(ps, "[suite] name = '%s': one word without spaces or slashes", value);
            snprintf(s->name, sizeof s->name, "%s", value);
            return 1;
        }
        if (str_eq(name, "data-dir")) { snprintf(s->data_dir, sizeof s->data_dir, "%s", value); return 1; }
        if (str_eq(name, "datasets") || str_eq(name, "dataset")) return parse_list(ps, section, name, value, &s->datasets);
        if (str_eq(name, "models") || str_eq(name, "model"))
            return parse_list(ps, section, name, value, &s->models) && check_items(ps, section, name, &s->models, 'm');
        if (str_eq(name, "seeds") || str_eq(name, "seed"))
            return parse_list(ps, section, name, value, &s->seeds) && check_items(ps, section, name, &s->seeds, 's');
        return perr(ps, "[suite] unknown key '%s'; known: name, datasets, models, seeds, data-dir", name);
    }
    if (str_eq(section, "pretrain") || str_eq(section, "finetune") || str_eq(section, "hash")) {
        int pre = section[0] == 'p', hash = section[0] == 'h';
        if (pre && !s->has_pretrain) { s->has_pretrain = 1; s->line_pretrain = ps->section_line; }
        if (hash && !s->has_hash) { s->has_hash = 1; s->line_hash = ps->section_line; }
        if (!pre && !hash && !ps->seen_ft) { ps->seen_ft = 1; ps->line_ft = ps->section_line; }
        SuiteList *rules = pre ? &s->pre_rules : hash ? &s->hash_rules : &s->ft_rules;
        if (str_eq(name, "rules") || str_eq(name, "rule"))
            return parse_list(ps, section, name, value, rules) && check_items(ps, section, name, rules, 'r');
        if (hash && str_eq(name, "bits"))
            return parse_list(ps, section, name, value, &s->hash_bits) && check_items(ps, section, name, &s->hash_bits, 'b');
        if (pre && str_eq(name, "dataset")) { snprintf(s->pre_dataset, sizeof s->pre_dataset, "%s", value); return 1; }
        if (pre && str_eq(name, "seed")) {
            long sd;
            if (!str_eq(value, "each") && parse_int(value, 0, 2147483647L, &sd) < 0)
                return perr(ps, "[pretrain] seed = %s: use each (one pretraining per suite seed) or a fixed seed", value);
            if (str_eq(value, "each")) snprintf(s->pre_seed, sizeof s->pre_seed, "each");
            else snprintf(s->pre_seed, sizeof s->pre_seed, "%ld", sd);
            return 1;
        }
        /* `option.RULE = value`: an override for that rule's jobs only */
        char key[64], rule[32] = "";
        snprintf(key, sizeof key, "%s", name);
        char *dot = strchr(key, '.');
        if (dot) {
            *dot = 0;
            if (!dot[1] || strlen(dot + 1) >= sizeof s->ft.o[0].rule)
                return perr(ps, "[%s] %s: write a per-rule override as OPTION.RULE, e.g. lr.dfa = 0.0005", section, name);
            snprintf(rule, sizeof rule, "%s", dot + 1);
            if (!rule_find(rule)) return perr(ps, "[%s] %s: unknown rule '%s' in a per-rule override; see concord rules", section, name, rule);
        }
        const KeySpec *k = keyspec_find(TRAIN_KEYS, ARRAY_LEN(TRAIN_KEYS), key);
        if (!k && !pre && str_eq(key, "freeze")) k = keyspec_find(FINETUNE_ONLY_KEYS, ARRAY_LEN(FINETUNE_ONLY_KEYS), key);
        if (!k && !pre && !hash) k = keyspec_find(FINETUNE_ONLY_KEYS, ARRAY_LEN(FINETUNE_ONLY_KEYS), key);
        if (!k && hash) k = keyspec_find(HASH_KEYS, ARRAY_LEN(HASH_KEYS), key);
        if (!k) {
            if (pre && keyspec_find(FINETUNE_ONLY_KEYS, ARRAY_LEN(FINETUNE_ONLY_KEYS), key))
                return perr(ps, "[pretrain] %s belongs to [finetune]", key);
            if (!hash && keyspec_find(HASH_KEYS, ARRAY_LEN(HASH_KEYS), key)) return perr(ps, "[%s] %s belongs to [hash]", section, key);
            return perr(ps, "[%s] unknown key '%s'; known: rules,%s epochs, batch, lr, momentum, wd, nesterov, optimizer, "
                        "schedule, step-size, gamma, usf-scale, magnitude, brsf-resample, last-layer-bp, width, hidden, "
                        "dropout, val, limit, test-limit, augment, probe%s, each also as OPTION.RULE (docs/suites.md)",
                        section, key, pre ? " dataset, seed," : hash ? " bits," : "",
                        pre ? "" : hash ? ", freeze, hash-eta, queries-per-class, topk" : ", new-head, freeze");
        }
        return parse_opt(ps, section, k, rule, value, pre ? &s->pre : hash ? &s->hash : &s->ft);
    }
    int is_hatk = strncmp(section, "hash-attack", 11) == 0 && (section[11] == ' ' || section[11] == 0);
    if (is_hatk || (strncmp(section, "attack", 6) == 0 && (section[6] == ' ' || section[6] == 0))) {
        const char *an = is_hatk ? section + 11 : section + 6;
        while (*an == ' ') an++;
        SuiteAttack *a = NULL;
        for (int i = 0; i < s->natk; i++)
            if (str_eq(s->atk[i].name, an) && s->atk[i].hash == is_hatk) a = &s->atk[i];
        if (!a) {
            if (s->natk >= SUITE_MAX_ATTACKS)
                return perr(ps, "more than %d [attack] and [hash-attack] sections; merge some", SUITE_MAX_ATTACKS);
            a = &s->atk[s->natk++];
            snprintf(a->name, sizeof a->name, "%s", an);
            a->line = ps->section_line;
            a->hash = is_hatk;
        }
        if (str_eq(name, "attacks") || str_eq(name, "attack"))
            return parse_list(ps, section, name, value, &a->kinds) && check_items(ps, section, name, &a->kinds, is_hatk ? 'K' : 'k');
        if (str_eq(name, "eps")) return parse_list(ps, section, name, value, &a->eps) && check_items(ps, section, name, &a->eps, 'e');
        if (str_eq(name, "grads") || str_eq(name, "grad"))
            return parse_list(ps, section, name, value, &a->grads) && check_items(ps, section, name, &a->grads, 'g');
        const KeySpec *k = is_hatk ? keyspec_find(HASH_ATTACK_KEYS, ARRAY_LEN(HASH_ATTACK_KEYS), name)
                                   : keyspec_find(ATTACK_KEYS, ARRAY_LEN(ATTACK_KEYS), name);
        if (!k && is_hatk)
            return perr(ps, "[%s] unknown key '%s'; known: attacks, eps, grads, steps, alpha, restarts, eot, batch, limit, "
                        "queries-per-class, topk (docs/suites.md)", section, name);
        if (!k)
            return perr(ps, "[%s] unknown key '%s'; known: attacks, eps, grads, steps, alpha, restarts, norm, eot, "
                        "queries, p-init, batch, limit (docs/suites.md)", section, name);
        return parse_opt(ps, section, k, "", value, &a->opts);
    }
    return perr(ps, "unknown section [%s]; use [suite], [pretrain], [finetune], [attack NAME], [hash] or [hash-attack NAME]", section);
}

static int fail_at(const Suite *s, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(const Suite *s, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return err_set("%s:%d: %s", s->path, line, msg);
    return err_set("%s: %s", s->path, msg);
}

static int has_rule(const SuiteList *l, const char *r) {
    for (int i = 0; i < l->n; i++)
        if (str_eq(l->v[i], r)) return 1;
    return 0;
}

int suite_load(const char *path, Suite *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->pre_seed, sizeof s->pre_seed, "each");
    Parser ps = {.s = s};
    if (file_not_dir(path, "suite file") < 0) return -1;
    ps.f = fopen(path, "r");
    if (!ps.f) return err_set("%s: cannot open the suite file; check the path (suites/demo.ini is an example)", path);
    int rc = ini_parse_stream(reader, &ps, handler, &ps);
    fclose(ps.f);
    if (ps.err[0]) return err_set("%s", ps.err);
    if (rc > 0) return err_set("%s:%d: not an INI line; write [section] or key = value", path, rc);
    if (rc < 0) return err_set("%s: cannot read the suite file", path);
    /* what must be there, and what must agree */
    if (!ps.seen_suite) return fail_at(s, 0, "no [suite] section; add one with name, datasets, models and seeds (docs/suites.md)");
    if (!s->name[0]) return fail_at(s, ps.line_suite, "[suite] has no name; add name = WORD (it names the output directory)");
    if (!s->datasets.n) return fail_at(s, ps.line_suite, "[suite] has no datasets; add datasets = fashion-mnist (or a list)");
    if (!s->models.n) return fail_at(s, ps.line_suite, "[suite] has no models; add models = lenet5 (or a list)");
    if (!s->seeds.n) return fail_at(s, ps.line_suite, "[suite] has no seeds; add seeds = 0, 1");
    if (!ps.seen_ft || !s->ft_rules.n)
        return fail_at(s, ps.line_ft, "no [finetune] rules; add a [finetune] section with rules = bp, usf (...)");
    if (s->has_pretrain && !s->pre_rules.n)
        return fail_at(s, s->line_pretrain, "[pretrain] has no rules; add rules = bp (or remove the section to train from scratch)");
    if (!s->has_pretrain)
        for (int i = 0; i < s->ft.n; i++)
            if (str_eq(s->ft.o[i].key, "new-head") || str_eq(s->ft.o[i].key, "freeze"))
                return fail_at(s, s->ft.o[i].line, "[finetune] %s needs a [pretrain] section (without one, the rules train from scratch)", s->ft.o[i].key);
    if (s->has_hash) {
        if (!s->has_pretrain)
            return fail_at(s, s->line_hash, "[hash] needs a [pretrain] section (hashing models are fine-tuned from the pretraining checkpoint)");
        if (!s->hash_rules.n) return fail_at(s, s->line_hash, "[hash] has no rules; add rules = bp, dfa (...)");
        if (!s->hash_bits.n) return fail_at(s, s->line_hash, "[hash] has no bits; add bits = 32 (or a list such as 16, 32)");
    }
    /* a model option (hidden, width, dropout) goes to the training jobs of the models that read it; one that
       no model of the grid reads would change nothing */
    for (int k = 0; k < 2; k++) {
        const SuiteOpts *o = k == 0 ? &s->pre : &s->ft;
        if (k == 1 && s->has_pretrain) continue; /* fine-tunes take their model from the pretraining */
        for (int i = 0; i < o->n; i++) {
            int used = 0, known = 0;
            for (int m = 0; m < s->models.n; m++) {
                const ArchInfo *ai = model_arch_find(s->models.v[m]);
                int u = ai ? model_arch_uses(ai, o->o[i].key) : -1;
                known |= u >= 0;
                used |= u == 1;
            }
            if (!known || used) continue;
            char users[128] = "";
            for (int a = 0; a < N_ARCHS; a++)
                if (model_arch_uses(&ARCHS[a], o->o[i].key) == 1)
                    snprintf(users + strlen(users), sizeof users - strlen(users), "%s%s", users[0] ? ", " : "", ARCHS[a].name);
            return fail_at(s, o->o[i].line, "[%s] %s: no model of [suite] models reads it (it applies to %s); remove it",
                           k == 0 ? "pretrain" : "finetune", o->o[i].key, users);
        }
    }
    /* a per-rule override must name a rule its section runs (a typo would silently change nothing) */
    const struct { const char *sec; const SuiteOpts *o; const SuiteList *rules; } osec[] = {
        {"pretrain", &s->pre, &s->pre_rules}, {"finetune", &s->ft, &s->ft_rules}, {"hash", &s->hash, &s->hash_rules}};
    for (size_t k = 0; k < ARRAY_LEN(osec); k++)
        for (int i = 0; i < osec[k].o->n; i++) {
            const SuiteOpt *op = &osec[k].o->o[i];
            if (op->rule[0] && !has_rule(osec[k].rules, op->rule))
                return fail_at(s, op->line, "[%s] %s.%s: rule '%s' is not in [%s] rules; add it there or remove the override",
                               osec[k].sec, op->key, op->rule, op->rule, osec[k].sec);
        }
    for (int i = 0; i < s->natk; i++) {
        SuiteAttack *a = &s->atk[i];
        const char *sec = a->hash ? "hash-attack" : "attack";
        if (a->hash && !s->has_hash)
            return fail_at(s, a->line, "[hash-attack %s] needs a [hash] section (the hashing models it attacks)", a->name);
        if (!a->kinds.n)
            return fail_at(s, a->line, "[%s %s] has no attacks; add attacks = %s", sec, a->name,
                           a->hash ? "hash-untargeted, hash-targeted" : "fgsm, pgd, autoattack or square");
        if (!a->eps.n) return fail_at(s, a->line, "[%s %s] has no eps; add eps = 0, 0.1 (or fractions such as 8/255)", sec, a->name);
        if (!a->grads.n) {
            a->grads.n = 1;
            snprintf(a->grads.v[0], sizeof a->grads.v[0], "true");
        }
        int ntransfer = 0;
        for (int g = 0; g < a->grads.n; g++) {
            const char *v = a->grads.v[g];
            if (strncmp(v, "transfer:", 9) != 0) continue;
            if (++ntransfer >= SUITE_MAX_DEPS)
                return fail_at(s, a->grads.line, "[%s %s] grads: at most %d transfer sources per section; split it", sec, a->name, SUITE_MAX_DEPS - 1);
            if (a->hash) {
                if (!has_rule(&s->hash_rules, v + 9))
                    return fail_at(s, a->grads.line, "[hash-attack %s] grads: %s: the surrogate rule '%s' is not in [hash] rules "
                                   "(a surrogate must be a hashing model with the same bits); add it there", a->name, v, v + 9);
            } else if (str_eq(v + 9, "pretrain")) {
                if (!s->has_pretrain) return fail_at(s, a->grads.line, "[attack %s] grads: transfer:pretrain needs a [pretrain] section", a->name);
            } else if (!has_rule(&s->ft_rules, v + 9)) {
                return fail_at(s, a->grads.line, "[attack %s] grads: %s: the surrogate rule '%s' is not in [finetune] rules; add it there or use transfer:pretrain",
                               a->name, v, v + 9);
            }
        }
    }
    return 0;
}

