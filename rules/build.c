/* build.c -- a model with its learning rule, fresh or from a checkpoint. See build.h. */
#include "rules/build.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

Model *model_create(const ModelSpec *spec, const Rule *rule, const RuleOpts *ro, uint64_t init_seed) {
    Model *m = model_build(spec);
    if (!m) return NULL;
    RuleOpts def;
    rule_opts_default(&def);
    rule_attach(m, rule, ro ? ro : &def);
    model_finalize(m, init_seed);
    rule_init_state(m, ro ? ro : &def);
    return m;
}

Model *ckpt_load(const char *path, const Rule *rule, const RuleOpts *ro, int new_classes, int want_optim,
                 CkptMeta *meta_out) {
    return ckpt_load_head(path, rule, ro, new_classes, NULL, want_optim, meta_out);
}

/* Which stored tensors a load leaves as model_create made them. */
typedef struct Skip {
    int want_optim, new_head, same_rule;
    const char *head_name; /* the classifier: the last linear layer */
} Skip;

static int skip_tensor(const Tensor *t, void *ctx) {
    const Skip *k = ctx;
    size_t hl = strlen(k->head_name);
    if (t->kind == TK_OPTIM && (!k->want_optim || k->new_head)) return 1;
    if (t->kind == TK_RULE && !k->same_rule) return 1;
    if (k->new_head && strncmp(t->name, k->head_name, hl) == 0 && t->name[hl] == '.') return 1;
    if (k->new_head && t->kind == TK_RULE) return 1; /* DFA state depends on the class count */
    return 0;
}

Model *ckpt_load_head(const char *path, const Rule *rule, const RuleOpts *ro, int new_classes, const char *head,
                      int want_optim, CkptMeta *meta_out) {
    CkptMeta mt;
    ModelSpec s;
    if (ckpt_read_meta(path, &mt) < 0 || ckpt_meta_spec(&mt, path, &s) < 0) return NULL;
    /* every parameter of the stored model is in the file (4 bytes each): meta describing a bigger model is
       damaged, and building it would first allocate and initialise all of it */
    Model *g = model_build(&s);
    struct stat st;
    if (g && stat(path, &st) == 0 && model_graph_params(g) > (long long)st.st_size / 4) {
        err_set("%s: the meta describes %s with %ld parameters (%.0f MB) but the file has %lld bytes; the file is damaged", path,
                s.arch, model_graph_params(g), model_graph_params(g) * 4.0 / 1e6, (long long)st.st_size);
        model_free(g);
        return NULL;
    }
    model_free(g);
    err_clear(); /* a graph that cannot be built is reported below, with the file named */
    int new_head = (new_classes > 0 && new_classes != s.classes) || (head && !str_eq(head, s.head));
    if (new_classes > 0) s.classes = new_classes;
    if (head) snprintf(s.head, sizeof s.head, "%s", head);
    const char *stored_rule = meta_get(&mt, "rule");
    RuleOpts sro;
    if (rule_opts_from_text(&sro, meta_get(&mt, "rule_opts")) < 0) { err_clear(); rule_opts_default(&sro); }
    int same_rule = !rule || (stored_rule && str_eq(rule->name, stored_rule));
    if (!rule) {
        rule = rule_find(stored_rule ? stored_rule : "bp");
        if (!rule) { err_set("%s: unknown rule '%s' in checkpoint", path, stored_rule); return NULL; }
        ro = &sro;
    }
    Model *m = model_create(&s, rule, ro, 0);
    if (!m) { /* name the file: the builder's message does not know it */
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        err_clear();
        err_set("%s: cannot rebuild the model: %s", path, why);
        return NULL;
    }
    Skip k = {want_optim, new_head, same_rule, m->L[m->out].kind == L_LINEAR ? m->L[m->out].name : m->L[m->out - 1].name};
    if (ckpt_read_tensors(path, m, skip_tensor, &k) < 0) goto fail;
    long uv;
    if (same_rule) {
        if (ckpt_meta_long(&mt, "fb_count", path, 0, 0x7fffffffffffffffL, &uv) < 0) goto fail;
        m->fb_count = (uint64_t)uv;
    }
    model_rebuild_feedback(m); /* B as it was at save time (brSF: the same draw) */
    if (want_optim && !new_head && ckpt_meta_long(&mt, "step", path, 0, 0x7fffffffffffffffL, &uv) == 0) m->step = uv;
    err_clear();
    if (meta_out) *meta_out = mt;
    return m;
fail:
    model_free(m);
    return NULL;
}
