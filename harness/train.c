/* train.c -- see train.h */
#include "harness/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/hash.h"
#include "harness/layers/layer.h"
#include "harness/loss.h"
#include "harness/threads.h"

void train_opts_default(TrainOpts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 1;
    o->batch = 128;
    o->lr = 0.01;
    o->momentum = 0.9;
    o->weight_decay = 0;
    o->optimizer = OPT_SGD;
    o->schedule = SCHED_CONST;
    o->step_size = 10;
    o->gamma = 0.1;
    o->beta1 = 0.9; o->beta2 = 0.999; o->adam_eps = 1e-8;
    o->probe_n = 64;
    o->task = TASK_CLASSIFY;
    o->hash_eta = 0.1;
    o->max_loss = 1e4; /* cross-entropy starts near log K; 1e4 means logits 1e4 apart: blown up */
}

double lr_at(const TrainOpts *o, int epoch) {
    switch (o->schedule) {
    case SCHED_STEP: return o->lr * pow(o->gamma, epoch / (o->step_size > 0 ? o->step_size : 1));
    case SCHED_COSINE: return 0.5 * o->lr * (1 + cos(M_PI * epoch / (o->epochs > 0 ? o->epochs : 1)));
    default: return o->lr;
    }
}

/* PyTorch semantics: SGD buf = mom*buf + g (buf = g on the first step), nesterov g + mom*buf;
 * weight decay added to the gradient (coupled), on every parameter.
 * The SGD step runs 4 floats at a time (GCC vector extensions, SSE2) in loops specialised on momentum /
 * first step / nesterov: the same operations per element in the same order as the scalar loop (no FMA,
 * no reassociation), so the results are bitwise those of the scalar code. (It was ~13% of mlp training,
 * scalar at -O2; callgrind: 21% of an mlp training run's instructions.) */
typedef float upd_v4f __attribute__((vector_size(16)));
typedef float upd_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#define UPD_LD(p) (*(const upd_v4u *)(p))
#define UPD_ST(p, v) (*(upd_v4u *)(p) = (v))
static void update_range(Model *m, const TrainOpts *o, double lr, long off, long n) {
    float *p = m->params + off, *g = m->grads + off, *mb = m->opt_m + off, *vb = m->opt_v + off;
    const float wd = (float)o->weight_decay, mom = (float)o->momentum, flr = (float)lr;
    if (o->optimizer == OPT_SGD) {
        const int first = m->step == 0, nest = o->nesterov != 0;
        const upd_v4f wdv = {wd, wd, wd, wd}, mv = {mom, mom, mom, mom}, lv = {flr, flr, flr, flr};
        long j = 0;
        if (mom == 0) {
            for (; j + 4 <= n; j += 4) UPD_ST(p + j, UPD_LD(p + j) - lv * (UPD_LD(g + j) + wdv * UPD_LD(p + j)));
        } else if (first && !nest) {
            for (; j + 4 <= n; j += 4) {
                upd_v4f gj = UPD_LD(g + j) + wdv * UPD_LD(p + j);
                UPD_ST(mb + j, gj);
                UPD_ST(p + j, UPD_LD(p + j) - lv * gj);
            }
        } else if (!nest) {
            for (; j + 4 <= n; j += 4) {
                upd_v4f gj = UPD_LD(g + j) + wdv * UPD_LD(p + j), b = mv * UPD_LD(mb + j) + gj;
                UPD_ST(mb + j, b);
                UPD_ST(p + j, UPD_LD(p + j) - lv * b);
            }
        } else {
            for (; j + 4 <= n; j += 4) {
                upd_v4f gj = UPD_LD(g + j) + wdv * UPD_LD(p + j), b = first ? gj : mv * UPD_LD(mb + j) + gj;
                UPD_ST(mb + j, b);
                UPD_ST(p + j, UPD_LD(p + j) - lv * (gj + mv * b));
            }
        }
        for (; j < n; j++) { /* the tail (and the reference semantics of the loops above) */
            float gj = g[j] + wd * p[j];
            if (mom != 0) {
                mb[j] = first ? gj : mom * mb[j] + gj;
                gj = o->nesterov ? gj + mom * mb[j] : mb[j];
            }
            p[j] -= flr * gj;
        }
    } else {
        double t = (double)m->step + 1;
        float b1 = (float)o->beta1, b2 = (float)o->beta2;
        float c1 = (float)(1 - pow(o->beta1, t)), c2 = (float)(1 - pow(o->beta2, t));
        for (long j = 0; j < n; j++) {
            float gj = g[j] + wd * p[j];
            mb[j] = b1 * mb[j] + (1 - b1) * gj;
            vb[j] = b2 * vb[j] + (1 - b2) * gj * gj;
            p[j] -= flr * (mb[j] / c1) / (sqrtf(vb[j] / c2) + (float)o->adam_eps);
        }
    }
}

typedef struct { Model *m; const TrainOpts *o; double lr; } Step;
/* every trainable layer's range (W then b, contiguous; BN's gamma then beta) split in cache lines across
 * the threads, as the pass's gradient sum splits it (pass.c task_reduce): the update is per element, so
 * the split changes no bit */
static void task_step(void *arg, int t, int T) {
    const Step *k = arg;
    for (int i = 0; i < k->m->nl; i++) {
        const Layer *L = &k->m->L[i];
        if (!L->trainable || L->frozen) continue;
        const int bn = L->kind == L_BN;
        long off = (bn ? L->gamma : L->W) - k->m->params, j0, j1;
        long n = bn ? 2L * L->c : layer_w_n(L) + (L->bias ? L->c : 0);
        split_lines(n, t, T, &j0, &j1);
        if (j1 > j0) update_range(k->m, k->o, k->lr, off + j0, j1 - j0);
    }
}
void optimizer_step(Model *m, Work *w, const TrainOpts *o, double lr) {
    Step k = {m, o, lr};
    pool_run(w ? w->pool : NULL, task_step, &k);
    m->step++;
}

void batch_fill(const Dataset *d, const int *idx, int n, float *x, int32_t *y, int augment, uint64_t seed, int epoch) {
    int D = dataset_dim(d), H = d->h, W = d->w;
    for (int i = 0; i < n; i++) {
        const float *src = d->x + (long)idx[i] * D;
        float *dst = x + (long)i * D;
        y[i] = d->y[idx[i]];
        if (!augment) { memcpy(dst, src, sizeof(float) * D); continue; }
        Rng r;
        rng_seed(&r, seed, RNG_AUGMENT, (uint64_t)epoch * 0x100000000ULL + (uint64_t)idx[i]);
        int dy = (int)rng_below(&r, 9) - 4, dx = (int)rng_below(&r, 9) - 4, flip = (int)rng_below(&r, 2);
        for (int c = 0; c < d->c; c++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++) {
                    int sy = yy + dy, sx = flip ? (W - 1 - xx) + dx : xx + dx;
                    dst[((long)c * H + yy) * W + xx] =
                        (sy < 0 || sy >= H || sx < 0 || sx >= W) ? 0.0f : src[((long)c * H + sy) * W + sx];
                }
    }
}

typedef struct { const Dataset *d; const int *idx; float *x; int32_t *y; int augment; uint64_t seed; int epoch; } Fill;
static void fill_slice(void *ctx, long b0, long b1) {
    const Fill *f = ctx;
    const long D = dataset_dim(f->d);
    batch_fill(f->d, f->idx + b0, (int)(b1 - b0), f->x + b0 * D, f->y + b0, f->augment, f->seed, f->epoch);
}
/* batch_fill into w->x, each of the Work's threads filling the samples its slice of the pass computes */
static void fill_work(Work *w, const Dataset *d, const int *idx, int n, int32_t *y, int augment, uint64_t seed, int epoch) {
    Fill f = {d, idx, w->x, y, augment, seed, epoch};
    work_split(w, n, fill_slice, &f);
}

double evaluate(Model *m, const Dataset *d, int batch, double *loss) {
    Work *w = work_take(m, batch);
    int K = model_out_dim(m);
    int32_t *y = xmalloc(sizeof(int32_t) * batch);
    uint8_t *ok = xmalloc((size_t)batch);
    long correct = 0;
    double tl = 0;
    int *idx = xmalloc(sizeof(int) * batch);
    for (int s = 0; s < d->n; s += batch) {
        int n = d->n - s < batch ? d->n - s : batch;
        for (int i = 0; i < n; i++) idx[i] = s + i;
        fill_work(w, d, idx, n, y, 0, 0, 0);
        float *lg = model_forward(m, w, w->x, n, FWD_PREDICT);
        tl += loss_softmax_ce(lg, y, n, K, 1.0f, NULL, NULL, ok) * n;
        for (int i = 0; i < n; i++) correct += ok[i];
    }
    free(idx); free(ok); free(y);
    work_give(m, w);
    if (loss) *loss = d->n ? tl / d->n : 0;
    return d->n ? (double)correct / d->n : 0;
}

void model_codes(Model *m, const Dataset *d, int batch, uint64_t *codes) {
    Work *w = work_take(m, batch);
    int K = model_out_dim(m);
    int32_t *y = xmalloc(sizeof(int32_t) * batch);
    int *idx = xmalloc(sizeof(int) * batch);
    for (int s = 0; s < d->n; s += batch) {
        int n = d->n - s < batch ? d->n - s : batch;
        for (int i = 0; i < n; i++) idx[i] = s + i;
        fill_work(w, d, idx, n, y, 0, 0, 0);
        hash_pack(model_forward(m, w, w->x, n, FWD_PREDICT), n, K, codes + s);
    }
    free(idx); free(y);
    work_give(m, w);
}

double evaluate_map(Model *m, const Dataset *q, const Dataset *db, int topk, int prec_n, double *prec) {
    uint64_t *qc = xmalloc(sizeof(uint64_t) * (q->n + 1)), *dc = xmalloc(sizeof(uint64_t) * (db->n + 1));
    model_codes(m, q, 256, qc);
    model_codes(m, db, 256, dc);
    double r = hash_map(qc, q->y, q->n, dc, db->y, db->n, model_out_dim(m), topk, prec_n, prec, NULL);
    free(qc); free(dc);
    return r;
}

long alignment_scratch_n(const Model *m, int n) {
    long s = 0;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_LINEAR || m->L[i].kind == L_CONV) s += (long)n * layer_out_n(&m->L[i]);
    return s;
}

double vec_angle_deg(const float *a, const float *b, long n) {
    double ab = 0, aa = 0, bb = 0;
    for (long i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    if (aa == 0 || bb == 0) return NAN;
    double c = ab / sqrt(aa * bb);
    if (c > 1) c = 1;
    if (c < -1) c = -1;
    return acos(c) * 180.0 / M_PI;
}

double vec_norm_ratio(const float *a, const float *b, long n) {
    double aa = 0, bb = 0;
    for (long i = 0; i < n; i++) { aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return bb == 0 ? NAN : sqrt(aa / bb);
}

/* angle(B, W), |B|/|W|, and the angle between the delta a layer receives under its rule and the true
 * BP delta, on a fixed probe batch in inference mode (no running-statistics updates). */
static double task_loss(const Model *m, int task, double eta, const float *out, const int32_t *y, int n, float *d, uint8_t *ok) {
    int K = model_out_dim(m);
    if (task == TASK_HASH) return dpsh_loss(out, y, n, K, eta, d);
    return loss_softmax_ce(out, y, n, K, 1.0f / n, d, NULL, ok);
}

int alignment_metrics(Model *m, Work *w, const Dataset *d, int n, int task, double eta, LayerAlign *out, float *scratch) {
    if (n > d->n) n = d->n;
    if (n > w->cap) n = w->cap;
    int K = model_out_dim(m), na = 0;
    int32_t y[1024];
    int idx[1024];
    CHECK(n <= 1024);
    for (int i = 0; i < n; i++) idx[i] = i;
    fill_work(w, d, idx, n, y, 0, 0, 0);
    float *lg = model_forward(m, w, w->x, n, FWD_INFER);
    float *dl = scratch + alignment_scratch_n(m, n);
    (void)K;
    task_loss(m, task, eta, lg, y, n, dl, NULL);
    model_backward(m, w, dl, BW_PARAMS | BW_TRUE | BW_GRADS); /* the layers' gradients are read below */
    long off = 0;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_LINEAR || m->L[i].kind == L_CONV) {
            long sz = (long)n * layer_out_n(&m->L[i]);
            memcpy(scratch + off, w->grad[i], sizeof(float) * sz);
            off += sz;
        }
    model_backward(m, w, dl, BW_PARAMS | BW_GRADS);
    off = 0;
    for (int i = 0; i < m->nl && na < MAX_ALIGN; i++) {
        Layer *L = &m->L[i];
        if (L->kind != L_LINEAR && L->kind != L_CONV) continue;
        long sz = (long)n * layer_out_n(L);
        LayerAlign *a = &out[na++];
        snprintf(a->name, sizeof a->name, "%s", L->name);
        int direct = L->fb_direct;
        a->angle_bw = direct ? NAN : vec_angle_deg(L->B, L->W, layer_w_n(L));
        a->norm_ratio = direct ? NAN : vec_norm_ratio(L->B, L->W, layer_w_n(L));
        a->grad_angle = vec_angle_deg(w->grad[i], scratch + off, sz);
        off += sz;
    }
    return na;
}

int train_run(Model *m, const Dataset *train, const Dataset *val, const TrainOpts *o, int start_epoch,
              EpochHook hook, void *ctx) {
    if (train->n < 1) return err_set("training set is empty");
    int B = o->batch < train->n ? o->batch : train->n, K = model_out_dim(m), rc = 0;
    Work *w = work_take(m, B);
    w->drop_seed = o->seed;
    int *perm = xmalloc(sizeof(int) * train->n);
    int32_t *y = xmalloc(sizeof(int32_t) * B);
    uint8_t *ok = xmalloc((size_t)B);
    float *dl = xmalloc(sizeof(float) * B * K);
    int probe = o->probe_n > 0 ? (o->probe_n < B ? o->probe_n : B) : 0;
    float *scratch = probe ? xmalloc(sizeof(float) * (alignment_scratch_n(m, probe) + (long)probe * K)) : NULL;
    const Dataset *pd = val && val->n ? val : train;
    int refresh = model_feedback_changes(m);
    for (int ep = start_epoch; ep < o->epochs; ep++) {
        double t0 = now_seconds(), lr = lr_at(o, ep), tl = 0;
        long correct = 0, seen = 0;
        for (int i = 0; i < train->n; i++) perm[i] = i;
        Rng r;
        rng_seed(&r, o->seed, RNG_SHUFFLE, (uint64_t)ep);
        rng_shuffle(&r, perm, train->n);
        for (int s = 0, bi = 0; s < train->n; s += B, bi++) {
            int n = train->n - s < B ? train->n - s : B;
            if (g_interrupted) {
                rc = err_set("interrupted by signal %d in epoch %d; rerun with --resume to continue from the last checkpoint", g_interrupted, ep + 1);
                goto done;
            }
            fill_work(w, train, perm + s, n, y, o->augment, o->seed, ep);
            w->drop_count = (uint64_t)m->step;
            float *lg = model_forward(m, w, w->x, n, FWD_TRAIN);
            double l = task_loss(m, o->task, o->hash_eta, lg, y, n, dl, ok);
            if (!isfinite(l)) {
                int bad = model_find_nonfinite(m, w);
                rc = err_set("training diverged: loss is %s at epoch %d, batch %d (first non-finite values in %s '%s'); "
                             "lower --lr or check the data",
                             isnan(l) ? "NaN" : "Inf", ep + 1, bi + 1, bad >= 0 ? "layer" : "the",
                             bad >= 0 ? (m->L[bad].name[0] ? m->L[bad].name : "(unnamed)") : "loss");
                goto done;
            }
            if (o->max_loss > 0 && l > o->max_loss) {
                rc = err_set("training diverged: loss %.3g at epoch %d, batch %d exceeds --max-loss %g (the outputs have "
                             "blown up); lower --lr",
                             l, ep + 1, bi + 1, o->max_loss);
                goto done;
            }
            if (refresh) model_refresh_feedback(m);
            model_backward(m, w, dl, BW_PARAMS);
            optimizer_step(m, w, o, lr);
            tl += l * n;
            for (int i = 0; o->task == TASK_CLASSIFY && i < n; i++) correct += ok[i];
            seen += n;
            if (o->on_batch) o->on_batch(o->batch_ctx, ep, bi + 1, (train->n + B - 1) / B);
        }
        const char *bad = model_nonfinite_tensor(m); /* parameters and statistics (BN running variance...) */
        if (bad) {
            rc = err_set("training diverged: %s became NaN/Inf in epoch %d; lower --lr", bad, ep + 1);
            goto done;
        }
        EpochStats st = {0};
        st.epoch = ep + 1;
        st.epochs = o->epochs;
        st.lr = lr;
        st.train_loss = tl / seen;
        st.train_acc = o->task == TASK_HASH ? NAN : (double)correct / seen;
        st.seconds = now_seconds() - t0;
        st.samples_per_s = seen / st.seconds;
        st.val_acc = st.val_loss = NAN;
        if (val && val->n) {
            if (o->task == TASK_HASH) st.val_acc = evaluate_map(m, val, train, 0, 0, NULL); /* val queries vs the training codes */
            else st.val_acc = evaluate(m, val, B, &st.val_loss);
            if (o->task == TASK_CLASSIFY && !isfinite(st.val_loss)) {
                rc = err_set("training diverged: the validation loss is %s after epoch %d (the outputs overflow in "
                             "inference mode); lower --lr", isnan(st.val_loss) ? "NaN" : "Inf", ep + 1);
                goto done;
            }
        }
        if (probe) {
            if (refresh) model_refresh_feedback(m);
            st.nalign = alignment_metrics(m, w, pd, probe, o->task, o->hash_eta, st.align, scratch);
        }
        if (!o->quiet) {
            if (o->task == TASK_HASH)
                printf("epoch %3d/%d  lr %.4g  loss %.4f  val mAP %.4f  %.1fs (%.0f samples/s)\n", st.epoch, o->epochs, lr,
                       st.train_loss, st.val_acc, st.seconds, st.samples_per_s);
            else
                printf("epoch %3d/%d  lr %.4g  loss %.4f  train %.2f%%  val %.2f%%  %.1fs (%.0f samples/s)\n", st.epoch,
                       o->epochs, lr, st.train_loss, 100 * st.train_acc, 100 * st.val_acc, st.seconds, st.samples_per_s);
            for (int a = 0; a < st.nalign; a++)
                printf("    align %-22s angle(B,W) %6.2f deg  |B|/|W| %7.4f  angle(delta, bp) %6.2f deg\n",
                       st.align[a].name, st.align[a].angle_bw, st.align[a].norm_ratio, st.align[a].grad_angle);
            fflush(stdout);
        }
        if (hook && hook(ctx, m, &st) < 0) { rc = -1; goto done; }
    }
done:
    free(scratch); free(dl); free(ok); free(y); free(perm);
    work_give(m, w);
    return rc;
}
