/* table.c -- the rule table, rule options, attaching rules to a model (the engine's feedback seam). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rule.h"

extern const Rule RULE_BP, RULE_FA, RULE_DFA, RULE_USF, RULE_BRSF, RULE_FRSF;

/* The table: adding a rule is one file and one line here. */
const Rule *const RULES[] = {&RULE_BP, &RULE_FA, &RULE_DFA, &RULE_USF, &RULE_BRSF, &RULE_FRSF};
const int N_RULES = (int)ARRAY_LEN(RULES);

const char *const USF_SCALE_NAMES[USF_SCALE_COUNT] = {"xavier", "he-fanout", "none", "wstd", "meanabs"};
const char *const MAG_NAMES[MAG_COUNT] = {"uniform", "halfnormal"};
const char *const RESAMPLE_NAMES[RESAMPLE_COUNT] = {"batch", "forward"};

const Rule *rule_find(const char *name) {
    for (int i = 0; i < N_RULES; i++)
        if (str_eq(RULES[i]->name, name)) return RULES[i];
    return NULL;
}

void rule_opts_default(RuleOpts *o) {
    memset(o, 0, sizeof *o);
    o->usf_scale = USF_XAVIER;
    o->magnitude = MAG_UNIFORM;
    o->resample = RESAMPLE_BATCH;
}

static int pick(const char *const *names, int n, const char *key, const char *val) {
    for (int i = 0; i < n; i++)
        if (str_eq(names[i], val)) return i;
    char all[256] = "";
    for (int i = 0; i < n; i++) {
        strcat(all, names[i]);
        if (i + 1 < n) strcat(all, "|");
    }
    return err_set("--%s %s: unknown value; use one of %s", key, val ? val : "(missing)", all);
}

int rule_opts_parse(RuleOpts *o, const char *key, const char *val) {
    int v;
    if (str_eq(key, "usf-scale")) {
        if ((v = pick(USF_SCALE_NAMES, USF_SCALE_COUNT, key, val)) < 0) return -1;
        o->usf_scale = v;
    } else if (str_eq(key, "magnitude")) {
        if ((v = pick(MAG_NAMES, MAG_COUNT, key, val)) < 0) return -1;
        o->magnitude = v;
    } else if (str_eq(key, "brsf-resample")) {
        if ((v = pick(RESAMPLE_NAMES, RESAMPLE_COUNT, key, val)) < 0) return -1;
        o->resample = v;
    } else if (str_eq(key, "last-layer-bp")) {
        o->last_layer_bp = !val || str_eq(val, "1") || str_eq(val, "true");
    } else if (str_eq(key, "rule-seed")) {
        long s;
        if (parse_int(val, 0, 2147483647L, &s) < 0) return err_set("--rule-seed %s: expected a non-negative integer", val);
        o->seed = (uint64_t)s;
    } else {
        return err_set("unknown rule option '%s'", key);
    }
    return 0;
}

void rule_opts_format(const RuleOpts *o, char *out, size_t n) {
    snprintf(out, n, "usf-scale=%s;magnitude=%s;brsf-resample=%s;last-layer-bp=%d;rule-seed=%llu",
             USF_SCALE_NAMES[o->usf_scale], MAG_NAMES[o->magnitude], RESAMPLE_NAMES[o->resample],
             o->last_layer_bp, (unsigned long long)o->seed);
}

int rule_opts_from_text(RuleOpts *o, const char *text) {
    rule_opts_default(o);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text ? text : "");
    for (char *save = NULL, *tok = strtok_r(buf, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return err_set("rule options '%s': expected key=value", text);
        *eq = 0;
        if (rule_opts_parse(o, tok, eq + 1) < 0) return -1;
    }
    return 0;
}

/* The engine's fb_rebuild: every layer whose rule rebuilds B, for draw m->fb_count. */
static void rebuild_feedback(Model *m) {
    RuleOpts ro;
    rule_opts_from_text(&ro, m->rule_opts);
    ro.seed = m->rule_seed;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (!L->rule || !L->rule->refresh) continue;
        Rng r;
        rng_seed(&r, m->rule_seed, RNG_RULE, (m->fb_count << 8) | (uint64_t)L->pidx);
        RuleCtx ctx = {&ro, model_out_dim(m), &r};
        L->rule->refresh(L, &ctx);
    }
}

void rule_attach(Model *m, const Rule *r, const RuleOpts *o) {
    if (!r) r = &RULE_BP;
    int last = -1, K = model_out_dim(m);
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_LINEAR || m->L[i].kind == L_CONV) last = i;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (L->kind != L_LINEAR && L->kind != L_CONV) continue;
        const Rule *lr = (i == last && o->last_layer_bp) ? &RULE_BP : r;
        L->rule = lr;
        L->rstate_n = lr->state_n ? lr->state_n(L, K) : 0;
        L->fb_n = !lr->own_B ? 0 : lr->direct ? (long)layer_in_dim(L) * K : layer_w_n(L);
        L->fb_direct = lr->direct;
        L->fb_refresh = lr->refresh != NULL;
    }
    m->rule = r;
    snprintf(m->rule_name, sizeof m->rule_name, "%s", r->name);
    m->fb_rebuild = rebuild_feedback;
    rule_opts_format(o, m->rule_opts, sizeof m->rule_opts);
    m->rule_seed = o->seed;
}

void rule_init_state(Model *m, const RuleOpts *o) {
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (!L->rule || !L->rule->init) continue;
        Rng r; /* the fixed state has its own stream, apart from the per-refresh draws */
        rng_seed(&r, o->seed, RNG_RULE, (1ULL << 62) | (uint64_t)L->pidx);
        RuleCtx c = {o, model_out_dim(m), &r};
        L->rule->init(L, &c);
    }
    model_rebuild_feedback(m);
}
