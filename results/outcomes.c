/* outcomes.c -- the per-example BLOB of evals.outcomes. See outcomes.h for the format. */
#include "results/outcomes.h"

#include <stdlib.h>
#include <string.h>

#include "harness/core.h"

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put_f32(uint8_t *p, float f) { uint32_t v; memcpy(&v, &f, 4); put_u32(p, v); }
static float get_f32(const uint8_t *p) { uint32_t v = get_u32(p); float f; memcpy(&f, &v, 4); return f; }

size_t outcomes_bytes(int kind, long n) {
    return OUT_HEADER + (size_t)n * (kind == OUT_HASH ? OUT_REC_HASH : OUT_REC_CLASSIFY);
}

static void header(uint8_t *out, int kind, long n) {
    memcpy(out, "CCO1", 4);
    put_u32(out + 4, (uint32_t)kind);
    put_u32(out + 8, (uint32_t)n);
    put_u32(out + 12, kind == OUT_HASH ? OUT_REC_HASH : OUT_REC_CLASSIFY);
}

static void put_record(uint8_t *r, const AttackOutcome *o) {
    CHECK(o->index >= 0);
    put_u32(r, (uint32_t)o->index);
    put_u32(r + 4, (uint32_t)o->y);
    put_u32(r + 8, (uint32_t)o->pred_clean);
    put_u32(r + 12, (uint32_t)o->pred_adv);
    r[16] = (uint8_t)((o->clean_ok ? 1 : 0) | (o->robust_ok ? 2 : 0) | (o->zero_grad ? 4 : 0));
    r[17] = (uint8_t)(o->stage > 0 ? o->stage : 0);
    r[18] = r[19] = 0;
}

void outcomes_encode_classify(const AttackOutcome *o, long n, uint8_t *out) {
    header(out, OUT_CLASSIFY, n);
    for (long i = 0; i < n; i++) put_record(out + OUT_HEADER + (size_t)i * OUT_REC_CLASSIFY, &o[i]);
}

void outcomes_encode_classify_stage(const AttackOutcome *o, long n, int k, uint8_t *out) {
    header(out, OUT_CLASSIFY, n);
    for (long i = 0; i < n; i++) {
        AttackOutcome e = o[i];
        if (!(e.stage > 0 && e.stage <= k)) { /* not broken yet after component k */
            e.pred_adv = e.pred_clean;
            e.robust_ok = e.clean_ok;
            e.stage = 0;
        }
        put_record(out + OUT_HEADER + (size_t)i * OUT_REC_CLASSIFY, &e);
    }
}

void outcomes_encode_hash(const float *ap_clean, const float *ap_adv, long n, uint8_t *out) {
    header(out, OUT_HASH, n);
    for (long i = 0; i < n; i++) {
        uint8_t *r = out + OUT_HEADER + (size_t)i * OUT_REC_HASH;
        put_u32(r, (uint32_t)i);
        put_f32(r + 4, ap_clean[i]);
        put_f32(r + 8, ap_adv[i]);
    }
}

void outcomes_robust(const uint8_t *blob, long n, uint8_t *robust) {
    for (long i = 0; i < n; i++) robust[i] = (blob[OUT_HEADER + (size_t)i * OUT_REC_CLASSIFY + 16] >> 1) & 1;
}

void outcomes_free(Outcomes *o) {
    free(o->index); free(o->y); free(o->pred_clean); free(o->pred_adv);
    free(o->clean_ok); free(o->robust_ok); free(o->zero_grad); free(o->stage);
    free(o->ap_clean); free(o->ap_adv);
    memset(o, 0, sizeof *o);
}

int outcomes_decode(const void *blob, long bytes, long eval_id, Outcomes *o) {
    memset(o, 0, sizeof *o);
    const uint8_t *p = blob;
    if (!p || bytes < OUT_HEADER || memcmp(p, "CCO1", 4) != 0)
        return err_set("outcomes BLOB of eval %ld: not a concord-outcomes-1 BLOB (docs/results.md)", eval_id);
    uint32_t kind = get_u32(p + 4), n = get_u32(p + 8), rec = get_u32(p + 12);
    if ((kind != OUT_CLASSIFY && kind != OUT_HASH) || rec != (kind == OUT_HASH ? OUT_REC_HASH : OUT_REC_CLASSIFY) ||
        (size_t)bytes != outcomes_bytes((int)kind, n))
        return err_set("outcomes BLOB of eval %ld: kind %u, %u records of %u bytes in %ld bytes: damaged", eval_id, kind, n,
                       rec, bytes);
    o->kind = (int)kind;
    o->n = n;
    size_t m = n ? n : 1;
    o->index = xmalloc(sizeof(int32_t) * m);
    if (kind == OUT_HASH) {
        o->ap_clean = xmalloc(sizeof(float) * m);
        o->ap_adv = xmalloc(sizeof(float) * m);
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *r = p + OUT_HEADER + (size_t)i * OUT_REC_HASH;
            o->index[i] = (int32_t)get_u32(r);
            o->ap_clean[i] = get_f32(r + 4);
            o->ap_adv[i] = get_f32(r + 8);
        }
        return 0;
    }
    o->y = xmalloc(sizeof(int32_t) * m);
    o->pred_clean = xmalloc(sizeof(int32_t) * m);
    o->pred_adv = xmalloc(sizeof(int32_t) * m);
    o->clean_ok = xmalloc(m);
    o->robust_ok = xmalloc(m);
    o->zero_grad = xmalloc(m);
    o->stage = xmalloc(m);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = p + OUT_HEADER + (size_t)i * OUT_REC_CLASSIFY;
        o->index[i] = (int32_t)get_u32(r);
        o->y[i] = (int32_t)get_u32(r + 4);
        o->pred_clean[i] = (int32_t)get_u32(r + 8);
        o->pred_adv[i] = (int32_t)get_u32(r + 12);
        o->clean_ok[i] = r[16] & 1;
        o->robust_ok[i] = (r[16] >> 1) & 1;
        o->zero_grad[i] = (r[16] >> 2) & 1;
        o->stage[i] = r[17];
        if (o->robust_ok[i] && !o->clean_ok[i]) {
            outcomes_free(o);
            return err_set("outcomes BLOB of eval %ld: example %u robust but not clean-correct: damaged", eval_id, i);
        }
    }
    return 0;
}
