/* suite.c -- suite files (INI, read with inih) and their expansion into a plan of jobs. See suite.h and
 * docs/suites.md. */
#include "harness/suite.h"

#include <ctype.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rule.h"
#include "harness/core.h"
#include "harness/model.h"

/* ---------------------------------------------------------------- option tables */

enum { V_INT, V_NUM, V_BOOL, V_ENUM, V_TEXT };
typedef struct KeySpec { const char *key; int type; const char *choices; /* V_ENUM: "a|b|c" */ } KeySpec;

/* [pretrain] / [finetune] keys passed on as `--key value` to concord train / finetune. */
static const KeySpec TRAIN_KEYS[] = {
    {"epochs", V_INT, NULL}, {"batch", V_INT, NULL}, {"lr", V_NUM, NULL}, {"momentum", V_NUM, NULL},
    {"wd", V_NUM, NULL}, {"nesterov", V_BOOL, NULL}, {"optimizer", V_ENUM, "sgd|adam"},
    {"schedule", V_ENUM, "const|step|cosine"}, {"step-size", V_INT, NULL}, {"gamma", V_NUM, NULL},
    {"usf-scale", V_ENUM, "xavier|he-fanout|none|wstd|meanabs"}, {"magnitude", V_ENUM, "uniform|halfnormal"},
    {"brsf-resample", V_ENUM, "batch|forward"}, {"last-layer-bp", V_BOOL, NULL}, {"width", V_NUM, NULL},
    {"hidden", V_TEXT, NULL}, {"dropout", V_NUM, NULL}, {"val", V_INT, NULL}, {"limit", V_INT, NULL},
    {"test-limit", V_INT, NULL}, {"augment", V_BOOL, NULL}, {"probe", V_INT, NULL},
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
    {"limit", V_INT, NULL},
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
    default: return "one word without spaces";
    }
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

static char *reader(char *str, int num, void *stream) {
    Parser *ps = stream;
    char *r = fgets(str, num, ps->f);
    if (!r) return r;
    ps->line++;
    const char *c = r;
    while (*c == ' ' || *c == '\t') c++;
    if (*c == '[') ps->section_line = ps->line; /* inih does not report section headers */
    return r;
}

static int perr(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
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
        if (what == 'k' && !str_eq(v, "fgsm") && !str_eq(v, "pgd") && !str_eq(v, "pgd-l2") && !str_eq(v, "square"))
            return perr(ps, "[%s] %s: unknown attack '%s'; use fgsm, pgd, pgd-l2 or square", sec, key, v);
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
                           a->hash ? "hash-untargeted, hash-targeted" : "fgsm, pgd or square");
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

/* ---------------------------------------------------------------- planning */

const char *suite_job_kind_name(int kind) {
    static const char *names[] = {"train", "finetune", "attack"};
    _Static_assert(ARRAY_LEN(names) == JOB_KIND_COUNT, "one name per job kind");
    return kind >= 0 && kind < JOB_KIND_COUNT ? names[kind] : "?";
}

/* Canonical configuration: "k=v" lines, sorted, hashed. */
typedef struct Canon { int n; char line[SUITE_MAX_OPTS + 16][200]; } Canon;

static void canon_add(Canon *c, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void canon_add(Canon *c, const char *k, const char *fmt, ...) {
    CHECK(c->n < (int)ARRAY_LEN(c->line));
    int w = snprintf(c->line[c->n], sizeof c->line[0], "%s=", k);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->line[c->n] + w, sizeof c->line[0] - (size_t)w, fmt, ap);
    va_end(ap);
    c->n++;
}

static int cmp_str(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

static void canon_key(Canon *c, const char *prefix, char *key) {
    qsort(c->line, (size_t)c->n, sizeof c->line[0], cmp_str);
    uint64_t h = FNV1A_INIT;
    for (int i = 0; i < c->n; i++) {
        h = fnv1a64(c->line[i], strlen(c->line[i]), h);
        h = fnv1a64("\n", 1, h);
    }
    snprintf(key, SUITE_KEY_LEN, "%s-%012llx", prefix, (unsigned long long)(h & 0xffffffffffffULL));
}

static void job_arg(SuiteJob *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_arg(SuiteJob *j, const char *fmt, ...) {
    CHECK(j->argc < SUITE_MAX_ARGS - 1);
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    j->argv[j->argc++] = xstrdup(buf);
    j->argv[j->argc] = NULL;
}

/* --dataset D [--data-dir DIR] --rule R --seed S: what every training job says about its data and rule */
static void data_rule_seed_args(SuiteJob *j, const Suite *s, const char *ds, const char *rule, const char *seed) {
    job_arg(j, "--dataset");
    job_arg(j, "%s", ds);
    if (s->data_dir[0]) { job_arg(j, "--data-dir"); job_arg(j, "%s", s->data_dir); }
    job_arg(j, "--rule");
    job_arg(j, "%s", rule);
    job_arg(j, "--seed");
    job_arg(j, "%s", seed);
}

static void job_free(SuiteJob *j) {
    for (int i = 0; i < j->argc; i++) free(j->argv[i]);
    j->argc = 0;
}

/* 1 when o holds a `key.rule` override. */
static int has_override(const SuiteOpts *o, const char *key, const char *rule) {
    for (int i = 0; i < o->n; i++)
        if (o->o[i].rule[0] && str_eq(o->o[i].rule, rule) && str_eq(o->o[i].key, key)) return 1;
    return 0;
}

/* Options: hashed as written (canonical), passed on as --key value (booleans as flags, false omitted).
 * rule: the job's rule; its `key.rule` overrides replace the section's value, other rules' are ignored
 * (NULL: a section without overrides, [attack]). */
static void add_opts(SuiteJob *j, Canon *c, const SuiteOpts *o, const char *rule) {
    for (int i = 0; i < o->n; i++) {
        const SuiteOpt *op = &o->o[i];
        if (op->rule[0] ? !rule || !str_eq(op->rule, rule) : rule && has_override(o, op->key, rule)) continue;
        const KeySpec *k = keyspec_find(TRAIN_KEYS, ARRAY_LEN(TRAIN_KEYS), op->key);
        if (!k) k = keyspec_find(FINETUNE_ONLY_KEYS, ARRAY_LEN(FINETUNE_ONLY_KEYS), op->key);
        if (!k) k = keyspec_find(HASH_KEYS, ARRAY_LEN(HASH_KEYS), op->key);
        if (!k) k = keyspec_find(ATTACK_KEYS, ARRAY_LEN(ATTACK_KEYS), op->key);
        if (!k) k = keyspec_find(HASH_ATTACK_KEYS, ARRAY_LEN(HASH_ATTACK_KEYS), op->key);
        CHECK(k);
        if (k->type == V_BOOL) {
            if (!op->val[0]) continue;
            canon_add(c, op->key, "1");
            job_arg(j, "--%s", op->key);
        } else {
            canon_add(c, op->key, "%s", op->val);
            job_arg(j, "--%s", op->key);
            job_arg(j, "%s", op->val);
        }
    }
}

static void add_common(SuiteJob *j, const SuitePlan *p) {
    job_arg(j, "--db");
    job_arg(j, "%s", p->db_path);
    job_arg(j, "--job-key");
    job_arg(j, "%s", j->key);
}

static int plan_add(SuitePlan *p, SuiteJob *j) {
    int at = suite_plan_find(p, j->key);
    if (at >= 0) { job_free(j); return at; }
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        SuiteJob *nj = realloc(p->jobs, (size_t)p->cap * sizeof *nj);
        CHECK(nj);
        p->jobs = nj;
    }
    p->jobs[p->n] = *j;
    return p->n++;
}

int suite_plan_find(const SuitePlan *p, const char *key) {
    for (int i = 0; i < p->n; i++)
        if (str_eq(p->jobs[i].key, key)) return i;
    return -1;
}

/* Builds (without adding) the pretraining job for (dataset, model, pretrain rule, seed). */
static void make_pretrain(const Suite *s, const SuitePlan *p, const char *ds, const char *model, const char *rule,
                          const char *seed, SuiteJob *j) {
    memset(j, 0, sizeof *j);
    Canon c = {0};
    const char *pds = s->pre_dataset[0] ? s->pre_dataset : ds;
    const char *pseed = str_eq(s->pre_seed, "each") ? seed : s->pre_seed;
    j->kind = JOB_TRAIN;
    canon_add(&c, "kind", "train");
    canon_add(&c, "dataset", "%s", pds);
    canon_add(&c, "model", "%s", model);
    canon_add(&c, "rule", "%s", rule);
    canon_add(&c, "seed", "%s", pseed);
    job_arg(j, "train");
    job_arg(j, "--model");
    job_arg(j, "%s", model);
    data_rule_seed_args(j, s, pds, rule, pseed);
    add_opts(j, &c, &s->pre, rule);
    canon_key(&c, "t", j->key);
    snprintf(j->ckpt, sizeof j->ckpt, "%s/ckpt/%s.ckpt", p->out_dir, j->key);
    job_arg(j, "--out");
    job_arg(j, "%s", j->ckpt);
    job_arg(j, "--resume");
    add_common(j, p);
    snprintf(j->desc, sizeof j->desc, "pretrain %s %s on %s, seed %s", model, rule, pds, pseed);
    snprintf(j->dataset, sizeof j->dataset, "%s", pds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
}

/* The fine-tuning job (or, without [pretrain], the from-scratch training job) of one rule. */
static void make_finetune(const Suite *s, const SuitePlan *p, const char *ds, const char *model, const char *pre_rule,
                          const char *rule, const char *seed, SuiteJob *j) {
    char parent_key[SUITE_KEY_LEN] = "", parent_ckpt[512] = "";
    if (pre_rule) {
        SuiteJob pj;
        make_pretrain(s, p, ds, model, pre_rule, seed, &pj);
        snprintf(parent_key, sizeof parent_key, "%s", pj.key);
        snprintf(parent_ckpt, sizeof parent_ckpt, "%s", pj.ckpt);
        job_free(&pj);
    }
    memset(j, 0, sizeof *j);
    Canon c = {0};
    j->kind = pre_rule ? JOB_FINETUNE : JOB_TRAIN;
    canon_add(&c, "kind", "%s", pre_rule ? "finetune" : "train");
    canon_add(&c, "dataset", "%s", ds);
    canon_add(&c, "model", "%s", model);
    canon_add(&c, "rule", "%s", rule);
    canon_add(&c, "seed", "%s", seed);
    if (pre_rule) {
        canon_add(&c, "parent", "%s", parent_key);
        job_arg(j, "finetune");
        job_arg(j, "--from");
        job_arg(j, "%s", parent_ckpt);
    } else {
        job_arg(j, "train");
        job_arg(j, "--model");
        job_arg(j, "%s", model);
    }
    data_rule_seed_args(j, s, ds, rule, seed);
    add_opts(j, &c, &s->ft, rule);
    canon_key(&c, pre_rule ? "f" : "t", j->key);
    snprintf(j->ckpt, sizeof j->ckpt, "%s/ckpt/%s.ckpt", p->out_dir, j->key);
    job_arg(j, "--out");
    job_arg(j, "%s", j->ckpt);
    job_arg(j, "--resume");
    add_common(j, p);
    if (pre_rule) snprintf(j->desc, sizeof j->desc, "finetune %s %s on %s, seed %s (from %s)", model, rule, ds, seed, pre_rule);
    else snprintf(j->desc, sizeof j->desc, "train %s %s on %s, seed %s", model, rule, ds, seed);
    snprintf(j->dataset, sizeof j->dataset, "%s", ds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
    if (pre_rule) {
        int d = suite_plan_find(p, parent_key);
        CHECK(d >= 0);
        j->deps[j->ndeps++] = d;
    }
}

/* The hashing fine-tune of one rule and code length, from the pretraining checkpoint of pre_rule. */
static void make_hash(const Suite *s, const SuitePlan *p, const char *ds, const char *model, const char *pre_rule,
                      const char *rule, const char *bits, const char *seed, SuiteJob *j) {
    SuiteJob pj;
    make_pretrain(s, p, ds, model, pre_rule, seed, &pj);
    memset(j, 0, sizeof *j);
    Canon c = {0};
    j->kind = JOB_FINETUNE;
    canon_add(&c, "kind", "finetune");
    canon_add(&c, "task", "hash");
    canon_add(&c, "bits", "%s", bits);
    canon_add(&c, "dataset", "%s", ds);
    canon_add(&c, "model", "%s", model);
    canon_add(&c, "rule", "%s", rule);
    canon_add(&c, "seed", "%s", seed);
    canon_add(&c, "parent", "%s", pj.key);
    job_arg(j, "finetune");
    job_arg(j, "--from");
    job_arg(j, "%s", pj.ckpt);
    data_rule_seed_args(j, s, ds, rule, seed);
    job_arg(j, "--task");
    job_arg(j, "hash");
    job_arg(j, "--bits");
    job_arg(j, "%s", bits);
    add_opts(j, &c, &s->hash, rule);
    canon_key(&c, "h", j->key);
    snprintf(j->ckpt, sizeof j->ckpt, "%s/ckpt/%s.ckpt", p->out_dir, j->key);
    job_arg(j, "--out");
    job_arg(j, "%s", j->ckpt);
    job_arg(j, "--resume");
    add_common(j, p);
    snprintf(j->desc, sizeof j->desc, "hash finetune %s %s %s-bit on %s, seed %s (from %s)", model, rule, bits, ds, seed, pre_rule);
    snprintf(j->dataset, sizeof j->dataset, "%s", ds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
    int d = suite_plan_find(p, pj.key);
    CHECK(d >= 0);
    j->deps[j->ndeps++] = d;
    job_free(&pj);
}

static int cmp_eps(const void *a, const void *b) {
    const char *x = a, *y = b;
    double dx = strchr(x, '/') ? atof(x) / atof(strchr(x, '/') + 1) : atof(x);
    double dy = strchr(y, '/') ? atof(y) / atof(strchr(y, '/') + 1) : atof(y);
    return dx < dy ? -1 : dx > dy ? 1 : strcmp(x, y);
}

static int kind_uses_grad(const char *kind) { return !str_eq(kind, "square"); }

/* One `concord attack` invocation per (target model, [attack] section): it sweeps the section's attacks x
 * eps x gradient sources, so the masking flags compare them. Lists are sorted (eps numerically) so the
 * job does not depend on the order they were written in. */
static void make_attack(const Suite *s, const SuitePlan *p, const SuiteAttack *a, const char *ds, const char *model,
                        const char *pre_rule, const char *rule, const char *bits, const char *seed, SuiteJob *j) {
    SuiteJob tj, sj;
    if (a->hash) make_hash(s, p, ds, model, pre_rule, rule, bits, seed, &tj);
    else make_finetune(s, p, ds, model, pre_rule, rule, seed, &tj);
    int tdep = suite_plan_find(p, tj.key);
    CHECK(tdep >= 0);
    SuiteList kinds = a->kinds, eps = a->eps, grads = a->grads;
    qsort(kinds.v, (size_t)kinds.n, sizeof kinds.v[0], cmp_str);
    qsort(eps.v, (size_t)eps.n, sizeof eps.v[0], cmp_eps);
    qsort(grads.v, (size_t)grads.n, sizeof grads.v[0], cmp_str);
    int any_grad = 0;
    for (int k = 0; k < kinds.n; k++) any_grad |= kind_uses_grad(kinds.v[k]);
    memset(j, 0, sizeof *j);
    j->kind = JOB_ATTACK;
    j->deps[j->ndeps++] = tdep;
    char kl[SUITE_MAX_LIST * 66] = "", el[SUITE_MAX_LIST * 66] = "", gl[8192] = "", gc[SUITE_MAX_LIST * 24] = "",
         labels[SUITE_MAX_DEPS * SUITE_KEY_LEN] = "";
    for (int k = 0; k < kinds.n; k++) snprintf(kl + strlen(kl), sizeof kl - strlen(kl), "%s%s", k ? "," : "", kinds.v[k]);
    for (int e = 0; e < eps.n; e++) snprintf(el + strlen(el), sizeof el - strlen(el), "%s%s", e ? "," : "", eps.v[e]);
    for (int g = 0; any_grad && g < grads.n; g++) {
        const char *v = grads.v[g];
        const char *arg = v, *canon = v;
        if (strncmp(v, "transfer:", 9) == 0) {
            if (a->hash) make_hash(s, p, ds, model, pre_rule, v + 9, bits, seed, &sj);
            else if (str_eq(v + 9, "pretrain")) make_pretrain(s, p, ds, model, pre_rule, seed, &sj);
            else make_finetune(s, p, ds, model, pre_rule, v + 9, seed, &sj);
            int sdep = suite_plan_find(p, sj.key);
            CHECK(sdep >= 0);
            int have = 0;
            for (int d = 0; d < j->ndeps; d++) have |= j->deps[d] == sdep;
            CHECK(have || j->ndeps < SUITE_MAX_DEPS);
            if (!have) j->deps[j->ndeps++] = sdep;
            char ta[600], tc[40];
            snprintf(ta, sizeof ta, "transfer:%s", sj.ckpt);
            snprintf(tc, sizeof tc, "transfer:%s", sj.key);
            snprintf(gl + strlen(gl), sizeof gl - strlen(gl), "%s%s", g ? "," : "", ta);
            snprintf(gc + strlen(gc), sizeof gc - strlen(gc), "%s%s", g ? "," : "", tc);
            /* the surrogate's job key labels its rows: KEY/<attack>/<eps>/transfer:<label>, whatever --out is */
            snprintf(labels + strlen(labels), sizeof labels - strlen(labels), "%s%s", labels[0] ? "," : "", sj.key);
            job_free(&sj);
            continue;
        }
        snprintf(gl + strlen(gl), sizeof gl - strlen(gl), "%s%s", g ? "," : "", arg);
        snprintf(gc + strlen(gc), sizeof gc - strlen(gc), "%s%s", g ? "," : "", canon);
    }
    Canon c = {0};
    canon_add(&c, "kind", "attack");
    canon_add(&c, "target", "%s", tj.key);
    canon_add(&c, "attacks", "%s", kl);
    canon_add(&c, "eps", "%s", el);
    if (any_grad) canon_add(&c, "grads", "%s", gc);
    canon_add(&c, "seed", "%s", seed);
    if (a->hash) canon_add(&c, "task", "hash");
    job_arg(j, "attack");
    job_arg(j, "--ckpt");
    job_arg(j, "%s", tj.ckpt);
    if (a->hash) { job_arg(j, "--task"); job_arg(j, "hash"); }
    job_arg(j, "--attack");
    job_arg(j, "%s", kl);
    job_arg(j, "--eps");
    job_arg(j, "%s", el);
    if (any_grad) {
        job_arg(j, "--grad");
        job_arg(j, "%s", gl);
    }
    if (labels[0]) {
        job_arg(j, "--transfer-label");
        job_arg(j, "%s", labels);
    }
    job_arg(j, "--seed");
    job_arg(j, "%s", seed);
    if (s->data_dir[0]) { job_arg(j, "--data-dir"); job_arg(j, "%s", s->data_dir); }
    add_opts(j, &c, &a->opts, NULL);
    canon_key(&c, "a", j->key);
    add_common(j, p);
    char gshort[200] = "";
    for (int g = 0; any_grad && g < a->grads.n; g++)
        snprintf(gshort + strlen(gshort), sizeof gshort - strlen(gshort), "%s%s", g ? "," : "", grads.v[g]);
    if (a->hash)
        snprintf(j->desc, sizeof j->desc, "hash-attack [%s] %s x eps %s x %s on %s %s %s-bit seed %s", a->name, kl, el, gshort,
                 model, rule, bits, seed);
    else
        snprintf(j->desc, sizeof j->desc, "attack [%s] %s x eps %s%s%s on %s %s seed %s", a->name, kl, el, any_grad ? " x " : "",
                 gshort, model, rule, seed);
    snprintf(j->dataset, sizeof j->dataset, "%s", ds);
    snprintf(j->data_dir, sizeof j->data_dir, "%s", s->data_dir);
    job_free(&tj);
}

/* Finds `--name VALUE` in a job's argv; NULL when absent. */
static const char *job_opt(const SuiteJob *j, const char *name) {
    for (int i = 0; i + 1 < j->argc; i++)
        if (strncmp(j->argv[i], "--", 2) == 0 && str_eq(j->argv[i] + 2, name)) return j->argv[i + 1];
    return NULL;
}

/* Splits a comma list into malloc'd items; returns the count. */
static int split_commas(const char *text, char ***out) {
    int n = 1;
    for (const char *c = text; *c; c++) n += *c == ',';
    char **v = xcalloc((size_t)n, sizeof *v);
    const char *p = text;
    for (int i = 0; i < n; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        v[i] = xmalloc(len + 1);
        memcpy(v[i], p, len);
        v[i][len] = 0;
        p = e ? e + 1 : p + len;
    }
    *out = v;
    return n;
}

int suite_job_row_keys(const SuiteJob *j, char ***keys) {
    *keys = NULL;
    if (j->kind != JOB_ATTACK) {
        *keys = xcalloc(1, sizeof **keys);
        (*keys)[0] = xstrdup(j->key);
        return 1;
    }
    const char *ka = job_opt(j, "attack"), *ea = job_opt(j, "eps"), *ga = job_opt(j, "grad"), *la = job_opt(j, "transfer-label");
    CHECK(ka && ea);
    char **kinds, **eps, **grads = NULL, **labels = NULL;
    int nk = split_commas(ka, &kinds), ne = split_commas(ea, &eps), ng = ga ? split_commas(ga, &grads) : 0;
    int nl = la ? split_commas(la, &labels) : 0;
    /* transfer sources are keyed by their labels (concord attack --transfer-label), in order */
    for (int g = 0, l = 0; g < ng && l < nl; g++) {
        if (strncmp(grads[g], "transfer:", 9) != 0) continue;
        size_t len = strlen(labels[l]) + 10;
        free(grads[g]);
        grads[g] = xmalloc(len);
        snprintf(grads[g], len, "transfer:%s", labels[l++]);
    }
    for (int i = 0; i < nl; i++) free(labels[i]);
    free(labels);
    int n = 0, cap = 0;
    for (int k = 0; k < nk; k++) cap += ne * (kind_uses_grad(kinds[k]) ? (ng ? ng : 1) : 1);
    char **out = xcalloc((size_t)cap, sizeof *out);
    for (int k = 0; k < nk; k++)
        for (int e = 0; e < ne; e++) {
            int gn = kind_uses_grad(kinds[k]) ? (ng ? ng : 1) : 1;
            for (int g = 0; g < gn; g++) {
                const char *src = !kind_uses_grad(kinds[k]) ? "none" : ng ? grads[g] : "true";
                size_t len = strlen(j->key) + strlen(kinds[k]) + strlen(eps[e]) + strlen(src) + 4;
                out[n] = xmalloc(len);
                snprintf(out[n], len, "%s/%s/%s/%s", j->key, kinds[k], eps[e], src);
                n++;
            }
        }
    if (n == 1) { /* a single evaluation is recorded under the bare key */
        free(out[0]);
        out[0] = xstrdup(j->key);
    }
    for (int i = 0; i < nk; i++) free(kinds[i]);
    for (int i = 0; i < ne; i++) free(eps[i]);
    for (int i = 0; i < ng; i++) free(grads[i]);
    free(kinds);
    free(eps);
    free(grads);
    *keys = out;
    return n;
}

int suite_job_stage(const SuiteJob *j) { return j->kind == JOB_TRAIN ? 0 : j->kind == JOB_FINETUNE ? 1 : 2; }

int suite_plan(const Suite *s, const char *out_dir, const char *db_path, SuitePlan *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->suite_path, sizeof p->suite_path, "%s", s->path);
    snprintf(p->out_dir, sizeof p->out_dir, "%s", out_dir);
    snprintf(p->db_path, sizeof p->db_path, "%s", db_path);
    int npre = s->has_pretrain ? s->pre_rules.n : 1;
    SuiteJob j;
    /* stage by stage, so a dependency always has a lower index */
    for (int stage = 0; stage < 3; stage++)
        for (int d = 0; d < s->datasets.n; d++)
            for (int m = 0; m < s->models.n; m++)
                for (int sd = 0; sd < s->seeds.n; sd++)
                    for (int pr = 0; pr < npre; pr++) {
                        const char *ds = s->datasets.v[d], *model = s->models.v[m], *seed = s->seeds.v[sd];
                        const char *pre = s->has_pretrain ? s->pre_rules.v[pr] : NULL;
                        if (stage == 0) {
                            if (!pre) continue;
                            make_pretrain(s, p, ds, model, pre, seed, &j);
                            plan_add(p, &j);
                            continue;
                        }
                        for (int r = 0; r < s->ft_rules.n; r++) {
                            const char *rule = s->ft_rules.v[r];
                            if (stage == 1) {
                                make_finetune(s, p, ds, model, pre, rule, seed, &j);
                                plan_add(p, &j);
                                continue;
                            }
                            for (int ai = 0; ai < s->natk; ai++) {
                                if (s->atk[ai].hash) continue;
                                make_attack(s, p, &s->atk[ai], ds, model, pre, rule, NULL, seed, &j);
                                plan_add(p, &j);
                            }
                        }
                        /* the hashing task: fine-tunes per rule x code length, then their attacks */
                        for (int r = 0; pre && s->has_hash && r < s->hash_rules.n; r++)
                            for (int b = 0; b < s->hash_bits.n; b++) {
                                const char *rule = s->hash_rules.v[r], *bits = s->hash_bits.v[b];
                                if (stage == 1) {
                                    make_hash(s, p, ds, model, pre, rule, bits, seed, &j);
                                    plan_add(p, &j);
                                    continue;
                                }
                                for (int ai = 0; ai < s->natk; ai++) {
                                    if (!s->atk[ai].hash) continue;
                                    make_attack(s, p, &s->atk[ai], ds, model, pre, rule, bits, seed, &j);
                                    plan_add(p, &j);
                                }
                            }
                    }
    return 0;
}

void suite_plan_free(SuitePlan *p) {
    for (int i = 0; i < p->n; i++) job_free(&p->jobs[i]);
    free(p->jobs);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------- plan file */

#define PLAN_MAGIC "#concord-plan\t1"

int suite_plan_write(const SuitePlan *p, const char *path) {
    char tmp[600];
    tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set("%s: cannot write the plan file; check that the directory is writable", tmp);
    fprintf(f, "%s\n#suite\t%s\n#out\t%s\n#db\t%s\n", PLAN_MAGIC, p->suite_path, p->out_dir, p->db_path);
    fprintf(f, "#index\tkey\tkind\tdeps\tckpt\tdataset\tdesc\targv...\n");
    for (int i = 0; i < p->n; i++) {
        const SuiteJob *j = &p->jobs[i];
        fprintf(f, "%d\t%s\t%s\t", i, j->key, suite_job_kind_name(j->kind));
        if (!j->ndeps) fputc('-', f);
        for (int d = 0; d < j->ndeps; d++) fprintf(f, "%s%d", d ? "," : "", j->deps[d]);
        fprintf(f, "\t%s\t%s\t%s", j->ckpt[0] ? j->ckpt : "-", j->dataset, j->desc);
        for (int a = 0; a < j->argc; a++) fprintf(f, "\t%s", j->argv[a]);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) { remove(tmp); return err_set("%s: cannot write the plan file (disk full?)", tmp); }
    return file_commit(tmp, path);
}

/* Splits line at tabs in place (strips the newline); returns the field count. */
static int split_tabs(char *line, char **f, int max) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = 0;
        p = t + 1;
    }
    return n;
}

int suite_plan_read(const char *path, SuitePlan *p) {
    memset(p, 0, sizeof *p);
    FILE *f = fopen(path, "r");
    if (!f) return err_set("%s: cannot open the plan file; run concord suite plan FILE --out DIR first", path);
    static char line[1 << 16];
    char *fld[SUITE_MAX_ARGS + 8];
    int ln = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (ln == 1) {
            line[strcspn(line, "\r\n")] = 0;
            if (!str_eq(line, PLAN_MAGIC)) { rc = err_set("%s:1: not a Concord plan file (expected '#concord-plan 1')", path); break; }
            continue;
        }
        int n = split_tabs(line, fld, (int)ARRAY_LEN(fld));
        if (fld[0][0] == '#') {
            if (n >= 2 && str_eq(fld[0], "#suite")) snprintf(p->suite_path, sizeof p->suite_path, "%s", fld[1]);
            if (n >= 2 && str_eq(fld[0], "#out")) snprintf(p->out_dir, sizeof p->out_dir, "%s", fld[1]);
            if (n >= 2 && str_eq(fld[0], "#db")) snprintf(p->db_path, sizeof p->db_path, "%s", fld[1]);
            continue;
        }
        long idx;
        SuiteJob j;
        memset(&j, 0, sizeof j);
        if (n < 8 || parse_int(fld[0], 0, 100000000L, &idx) < 0 || idx != p->n || strlen(fld[1]) >= sizeof j.key) {
            rc = err_set("%s:%d: malformed plan line; regenerate it with concord suite plan", path, ln);
            break;
        }
        snprintf(j.key, sizeof j.key, "%s", fld[1]);
        j.kind = -1;
        for (int k = 0; k < JOB_KIND_COUNT; k++)
            if (str_eq(fld[2], suite_job_kind_name(k))) j.kind = k;
        if (j.kind < 0) { rc = err_set("%s:%d: unknown job kind '%s'", path, ln, fld[2]); break; }
        if (!str_eq(fld[3], "-")) {
            for (char *d = fld[3]; *d && j.ndeps < SUITE_MAX_DEPS;) {
                long v = strtol(d, &d, 10);
                if (v < 0 || v >= idx) { rc = err_set("%s:%d: dependency %ld is not an earlier job", path, ln, v); break; }
                j.deps[j.ndeps++] = (int)v;
                if (*d == ',') d++;
                else break;
            }
            if (rc) break;
        }
        if (!str_eq(fld[4], "-")) snprintf(j.ckpt, sizeof j.ckpt, "%s", fld[4]);
        snprintf(j.dataset, sizeof j.dataset, "%s", fld[5]);
        snprintf(j.desc, sizeof j.desc, "%s", fld[6]);
        for (int a = 7; a < n && j.argc < SUITE_MAX_ARGS - 1; a++) j.argv[j.argc++] = xstrdup(fld[a]);
        j.argv[j.argc] = NULL;
        plan_add(p, &j);
    }
    fclose(f);
    if (!rc && ln == 0) rc = err_set("%s: empty plan file", path);
    if (rc) suite_plan_free(p);
    return rc;
}
