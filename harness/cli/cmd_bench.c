/* cmd_bench.c -- `concord bench`: machine-readable speed figures for scripts/bench.sh.
 *
 *   concord bench --what sgemm [--threads T]
 *       the machine's sgemm peak: the best of square cblas_sgemm products (n = 512..2048) through gemm()
 *   concord bench --what train|pgd|all --model M [--dataset D] [--threads T] [--limit N] [--repeats R]
 *       train: one epoch of the real trainer (train_run: SGD lr 0.01 momentum 0.9, batch 128, bp,
 *       shuffled, no validation, no alignment probe) on the first --limit training examples (0 = all);
 *       pgd: attack_evaluate with PGD-Linf eps 0.1, alpha --alpha, 10 steps, random start, true
 *       gradient, batch 128, on the model just trained (as the reference does);
 *       apgd: APGD-CE (Linf, --eps, --apgd-steps 100, 1 restart, batch 128) on the same model, against its
 *       own predictions (so every example is attacked); an example is done once broken, so the line also
 *       says how many gradient steps per image the run took (grad_steps_per_image) and the images/s that
 *       makes at the full 100 steps (full_images_per_s).
 *       W may be a comma list (train,pgd,apgd); all = train,pgd.
 *   concord bench --what ceiling --model M [--threads T]
 *       the sgemm-only ceiling: the products of one training / PGD step timed alone (gemm_ceiling).
 *
 * Work counted as the reference counts it (shared/reference/torch_ref.py): per sample, training costs
 * forward + weight gradients of every layer + input gradients of all but the first linear/conv layer;
 * a PGD step costs forward + input gradients of every layer. Each figure is the median of --repeats.
 * Output: one line per figure, `bench key=value ...`, plus the peak resident memory of the process.
 * Not for: correctness (the tests), or the comparison table (scripts/bench.sh builds it).
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "attacks/attack.h"
#include "datasets/dataset.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/gemm.h"
#include "harness/threads.h"
#include "rules/build.h"
#include "harness/train.h"

static double maxrss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* CPU-seconds used by the whole machine so far (/proc/stat, busy states); -1 if unreadable */
static double sys_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f) return -1;
    int k = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (k != 8) return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* A timed phase: wall seconds, own CPU seconds, and the CPUs other processes used meanwhile (bg):
 * on a shared machine a phase with bg > ~0.1 is contaminated (the reference records the same). */
typedef struct { double w, c, s; } Phase;
static Phase phase_begin(void) { return (Phase){now_seconds(), cpu_seconds(), sys_busy_s()}; }
static double phase_bg(const Phase *p) {
    double wall = now_seconds() - p->w, own = cpu_seconds() - p->c, sys = sys_busy_s() - p->s;
    if (p->s < 0 || wall <= 0) return -1;
    double bg = (sys - own) / wall;
    return bg > 0 ? bg : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    xqsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* multiply-adds per sample of each linear/conv layer's forward, in order */
static void flops_per_sample(const Model *m, double *train, double *fwd, double *attack_step) {
    double f = 0, first = -1;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        if (L->kind != L_LINEAR && L->kind != L_CONV) continue;
        double macs = (double)layer_w_n(L) * L->h * L->w;
        if (first < 0) first = macs;
        f += macs;
    }
    *fwd = 2 * f;
    *train = 2 * (3 * f - first);
    *attack_step = 4 * f;
}

static double bench_sgemm(void) {
    double best = 0;
    for (int n = 512; n <= 2048; n *= 2) {
        float *a = xmalloc(sizeof(float) * n * n), *b = xmalloc(sizeof(float) * n * n), *c = xmalloc(sizeof(float) * n * n);
        for (long j = 0; j < (long)n * n; j++) { a[j] = (float)(j % 7) * 0.1f; b[j] = (float)(j % 5) * 0.1f; }
        gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
        int reps = n <= 512 ? 20 : n <= 1024 ? 5 : 2;
        for (int r = 0; r < 3; r++) {
            double t0 = now_seconds();
            for (int k = 0; k < reps; k++) gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double g = 2.0 * n * n * n * reps / (now_seconds() - t0) / 1e9;
            if (g > best) best = g;
        }
        free(a); free(b); free(c);
    }
    return best;
}

/* Seconds per call of one product shape (median-free: best of 3 timed blocks of >= 20 ms). */
static double time_gemm(int ta, int tb, int M, int N, int K, float beta, float *A, float *B, float *C) {
    int lda = ta ? M : K, ldb = tb ? K : N;
    gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        long reps = 0;
        double t0 = now_seconds(), t;
        do {
            for (int k = 0; k < 16; k++) gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
            reps += 16;
        } while ((t = now_seconds() - t0) < 0.02);
        if (t / reps < best) best = t / reps;
    }
    return best;
}

/* The sgemm-only ceiling: every product one training step (and one PGD step) issues at batch n, with
 * the shapes model.c uses (linear: one product per batch; conv: one per sample, or per chunk of
 * ceil(64/P) samples), timed alone. n / (sum of their times) is the speed Concord would reach if
 * everything outside sgemm cost nothing. */
static void gemm_ceiling(const Model *m, int n, double *train_sps, double *pgd_ips, double *train_gflops) {
    long mx = 1;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        long a = (long)L->c * L->ic * L->ih * L->iw * n + layer_w_n(L) * n, b = (long)L->ic * L->k * L->k * 64 * (L->h * L->w + 64);
        if (L->kind == L_LINEAR && a > mx) mx = a;
        if (L->kind == L_CONV && b > mx) mx = b;
    }
    float *A = xmalloc(sizeof(float) * mx), *B = xmalloc(sizeof(float) * mx), *C = xmalloc(sizeof(float) * mx);
    for (long j = 0; j < mx; j++) { A[j] = (float)(j % 13) * 0.01f; B[j] = (float)(j % 7) * 0.01f; C[j] = 0; }
    double tt = 0, tp = 0, fl = 0;
    int first = 1;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        if (L->kind == L_LINEAR) {
            int in = L->ic * L->ih * L->iw;
            double f = time_gemm(0, 1, n, L->c, in, 1.0f, A, B, C), d = first ? 0 : time_gemm(0, 0, n, in, L->c, 1.0f, A, B, C);
            double dp = time_gemm(0, 0, n, in, L->c, 1.0f, A, B, C);
            tt += f + time_gemm(1, 0, L->c, in, n, 0.0f, A, B, C) + d;
            tp += f + dp;
            fl += 2.0 * L->c * in * n * (first ? 2 : 3);
            first = 0;
        } else if (L->kind == L_CONV) {
            int P = L->h * L->w, KC = L->ic * L->k * L->k, S = (64 + P - 1) / P, calls = (n + S - 1) / S, NP = S * P;
            double f = time_gemm(0, 0, L->c, NP, KC, 1.0f, A, B, C), dp = time_gemm(1, 0, KC, NP, L->c, 0.0f, A, B, C);
            tt += calls * (f + time_gemm(0, 1, L->c, KC, NP, 1.0f, A, B, C) + (first ? 0 : dp));
            tp += calls * (f + dp);
            fl += 2.0 * L->c * KC * P * n * (first ? 2 : 3);
            first = 0;
        }
    }
    free(A); free(B); free(C);
    *train_sps = n / tt;
    *pgd_ips = n / tp / 10.0 * (10.0 / 11.0); /* 10 steps + the final forward, counted as one step */
    *train_gflops = fl / tt / 1e9;
}

typedef struct { double sps; } HookOut;
static int on_epoch(void *ctx, Model *m, const EpochStats *st) {
    ((HookOut *)ctx)->sps = st->samples_per_s;
    return 0;
}

static Model *fresh_model(const char *arch, const Dataset *d, uint64_t seed) {
    ModelSpec spec;
    model_spec_default(&spec, arch, d->c, d->h, d->w, d->classes);
    Model *m = model_create(&spec, NULL, NULL, seed);
    if (!m) return NULL;
    dataset_channel_stats(d, m->L[0].mean, m->L[0].std);
    for (int c = 0; c < d->c; c++)
        if (!(m->L[0].std[c] > 1e-6f)) m->L[0].std[c] = 1.0f;
    return m;
}

/* --regions: the region profile of the figure just timed (all its repeats; pool_profile(1) before them),
 * one line per region site: calls, wall seconds, and each thread's seconds inside the region's function
 * (thread 0 the caller) */
static void regions_print(int on, const char *of) {
    if (!on) return;
    RegionProfile r[64];
    int n = pool_profile_get(r, 64);
    for (int i = 0; i < n && i < 64; i++) {
        printf("region of=%s site=%s calls=%ld wall_s=%.4f thread_s=", of, r[i].site, r[i].calls, r[i].wall_s);
        for (int t = 0; t < r[i].threads; t++) printf("%s%.4f", t ? "," : "", r[i].thread_s[t]);
        printf("\n");
    }
    pool_profile(0);
}

int cmd_bench(int argc, char **argv) {
    static const OptSpec opts[] = {
        {"what", "W", "sgemm | train | pgd | apgd | all (train then pgd on the trained model) | ceiling (sgemm-only bound); train,pgd,apgd lists", "all"},
        {"model", "M", "architecture", "lenet5"},
        {"dataset", "D", "dataset (as for concord train)", "fashion-mnist"},
        {"data-dir", "DIR", "dataset directory", NULL},
        {"threads", "N", "threads (0 = OpenBLAS default)", "1"},
        {"limit", "N", "training examples per epoch (0 = all)", "0"},
        {"test-limit", "N", "PGD examples (0 = all of the test split)", "0"},
        {"repeats", "R", "timed repeats (median reported)", "1"},
        {"alpha", "X", "PGD step size", "0.01"},
        {"eps", "X", "PGD and APGD radius", "0.1"},
        {"apgd-steps", "N", "APGD-CE iterations", "100"},
        {"apgd-limit", "N", "APGD examples (0 = as for PGD)", "0"},
        {"regions", NULL, "after each figure, where its parallel regions' time went: `region` lines (threads.h)", NULL},
        {0},
    };
    Args a;
    int pr = args_parse(&a, "bench", "--what sgemm|train|pgd|all [--model M] [--threads T] [options]", opts, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    long threads, limit, tlimit, repeats, asteps, alimit;
    if (arg_int(&a, "threads", 0, 256, &threads) < 0 || arg_int(&a, "limit", 0, 100000000, &limit) < 0 ||
        arg_int(&a, "apgd-steps", 1, 100000, &asteps) < 0 || arg_int(&a, "apgd-limit", 0, 100000000, &alimit) < 0 ||
        arg_int(&a, "test-limit", 0, 100000000, &tlimit) < 0 || arg_int(&a, "repeats", 1, 100, &repeats) < 0)
        return err_die();
    if (threads > 0) openblas_set_num_threads((int)threads);
    const char *what = arg_str(&a, "what"), *arch = arg_str(&a, "model");
    int T = blas_threads();
    if (str_eq(what, "sgemm")) {
        double peak = bench_sgemm();
        printf("bench what=sgemm threads=%d core=%s dnnl_isa=%s kernels=%s gflops=%.2f maxrss_mib=%.1f\n", T,
               blas_core(), conv_isa_name(), kernels_isa_name(), peak, maxrss_mib());
        return 0;
    }
    if (str_eq(what, "ceiling")) {
        Dataset d;
        if (dataset_open(arg_str(&a, "dataset"), arg_str(&a, "data-dir"), SPLIT_TEST, &d) < 0) return err_die();
        ModelSpec spec;
        model_spec_default(&spec, arch, d.c, d.h, d.w, d.classes);
        dataset_close(&d);
        Model *m = model_create(&spec, NULL, NULL, 1);
        if (!m) return err_die();
        double sps, ips, g;
        gemm_ceiling(m, 128, &sps, &ips, &g);
        printf("bench what=ceiling model=%s threads=%d batch=128 train_samples_per_s=%.1f pgd_images_per_s=%.1f train_gflops=%.2f\n",
               arch, T, sps, ips, g);
        model_free(m);
        return 0;
    }
    int do_train = 0, do_pgd = 0, do_apgd = 0;
    for (const char *p = what; *p;) {
        size_t l = strcspn(p, ",");
        if ((l == 5 && !strncmp(p, "train", 5)) || (l == 3 && !strncmp(p, "all", 3))) do_train = 1;
        if ((l == 3 && !strncmp(p, "pgd", 3)) || (l == 3 && !strncmp(p, "all", 3))) do_pgd = 1;
        if (l == 4 && !strncmp(p, "apgd", 4)) do_apgd = 1;
        if (!((l == 5 && !strncmp(p, "train", 5)) || (l == 3 && (!strncmp(p, "all", 3) || !strncmp(p, "pgd", 3))) ||
              (l == 4 && !strncmp(p, "apgd", 4)))) {
            err_set("--what %s: use sgemm, ceiling, train, pgd, apgd (or a comma list of the last three) or all", what);
            return err_die();
        }
        p += l + (p[l] == ',');
    }

    Dataset train, test;
    if (dataset_open(arg_str(&a, "dataset"), arg_str(&a, "data-dir"), SPLIT_TRAIN, &train) < 0) return err_die();
    if (limit > 0 && limit < train.n) train.n = (int)limit;
    if (dataset_open(arg_str(&a, "dataset"), arg_str(&a, "data-dir"), SPLIT_TEST, &test) < 0) { dataset_close(&train); return err_die(); }
    if (tlimit > 0 && tlimit < test.n) test.n = (int)tlimit;

    TrainOpts to;
    train_opts_default(&to);
    to.probe_n = 0;
    to.quiet = 1;
    to.epochs = 1;
    int rc = 1, R = (int)repeats;
    double *v = xcalloc(2 * (size_t)R, sizeof(double)), *cpu = v + R, bg_train = 0, bg_pgd = 0, ftrain, ffwd, fstep;
    Model *m = fresh_model(arch, &train, 12345);
    if (!m) goto done;
    flops_per_sample(m, &ftrain, &ffwd, &fstep);
    { /* warm-up: first-touch of the workspace, OpenBLAS buffers and threads */
        Dataset wu = train;
        int nw = train.n / 8 > to.batch ? train.n / 8 : to.batch;
        if (nw > 20 * to.batch) nw = 20 * to.batch;
        if (wu.n > nw) wu.n = nw;
        HookOut h;
        if (train_run(m, &wu, NULL, &to, 0, on_epoch, &h) < 0) goto done;
    }
    const int regions = arg_flag(&a, "regions");
    if (regions && do_train) pool_profile(1);
    for (int r = 0; r < R; r++) {
        /* the fresh model of seed r gets the warmed-up model's kept Work (work_take reuses it when the
           layers match), as the reference's caching allocator reuses its warm-up's memory */
        Work *kept = m->wcache;
        m->wcache = NULL;
        model_free(m);
        m = fresh_model(arch, &train, (uint64_t)r);
        if (!m) { work_free(kept); goto done; }
        m->wcache = kept;
        HookOut h = {0};
        to.seed = (uint64_t)r;
        double c0 = cpu_seconds();
        Phase ph = phase_begin();
        if (train_run(m, &train, NULL, &to, 0, on_epoch, &h) < 0) goto done;
        cpu[r] = cpu_seconds() - c0;
        double b = phase_bg(&ph);
        if (b > bg_train) bg_train = b;
        v[r] = h.sps;
    }
    if (do_train) {
        double sps = median(v, R), cs = median(cpu, R);
        /* cpu_s: CPU seconds the process used for one epoch (all threads); on a busy machine wall-clock
           figures drop while this one does not */
        printf("bench what=train model=%s threads=%d batch=%d n=%d samples_per_s=%.1f gflops=%.2f cpu_s=%.3f bg=%.2f maxrss_mib=%.1f\n",
               arch, T, to.batch, train.n, sps, sps * ftrain / 1e9, cs, bg_train, maxrss_mib());
        regions_print(regions, "train");
    }
    if (do_pgd) {
        AttackParams p;
        attack_params_default(&p);
        p.kind = ATK_PGD;
        p.norm = NORM_LINF;
        p.steps = 10;
        p.batch = to.batch;
        if (attack_set_eps(&p, arg_str(&a, "eps")) < 0 || attack_set_alpha(&p, arg_str(&a, "alpha")) < 0) goto done;
        if (regions) pool_profile(1);
        for (int r = 0; r < R; r++) {
            EvalCounts ec;
            double t0 = now_seconds(), c0 = cpu_seconds();
            Phase ph = phase_begin();
            if (attack_evaluate(m, NULL, &test, 0, &p, NULL, NULL, NULL, &ec) < 0) goto done;
            v[r] = test.n / (now_seconds() - t0);
            cpu[r] = cpu_seconds() - c0;
            double b = phase_bg(&ph);
            if (b > bg_pgd) bg_pgd = b;
            if (r == R - 1)
                printf("bench what=pgd_acc model=%s clean=%.4f robust=%.4f\n", arch, (double)ec.n_clean_ok / ec.n,
                       (double)ec.n_robust_ok / ec.n);
        }
        double ips = median(v, R), cs = median(cpu, R);
        printf("bench what=pgd model=%s threads=%d batch=%d n=%d steps=%d alpha=%g images_per_s=%.1f gflops=%.2f cpu_s=%.3f bg=%.2f maxrss_mib=%.1f\n",
               arch, T, p.batch, test.n, p.steps, p.alpha, ips, ips * (p.steps * fstep + ffwd) / 1e9, cs, bg_pgd, maxrss_mib());
        regions_print(regions, "pgd");
    }
    if (do_apgd) {
        AttackParams p;
        attack_params_default(&p);
        attack_params_apply(&p, attack_find("apgd-ce"));
        p.steps = (int)asteps;
        p.restarts = 1;
        p.batch = to.batch;
        if (attack_set_eps(&p, arg_str(&a, "eps")) < 0) goto done;
        if (alimit > 0 && alimit < test.n) test.n = (int)alimit;
        { /* labels := the model's own predictions, so that every example is attacked (clean accuracy 1):
             the bench models are barely trained, and APGD skips the examples they already get wrong */
            const long D = (long)test.c * test.h * test.w, K = m->L[m->out].c;
            Work *w = work_take(m, 128);
            for (long i = 0; i < test.n; i += 128) {
                int nb = test.n - i < 128 ? (int)(test.n - i) : 128;
                const float *z = model_forward(m, w, test.x + i * D, nb, FWD_INFER);
                for (int j = 0; j < nb; j++) {
                    int best = 0;
                    for (int c = 1; c < K; c++) if (z[(long)j * K + c] > z[(long)j * K + best]) best = c;
                    test.y[i + j] = best;
                }
            }
            work_give(m, w);
        }
        double bg = 0, *st = xcalloc((size_t)R, sizeof(double));
        EvalCounts ec = {0};
        if (regions) pool_profile(1);
        for (int r = 0; r < R; r++) {
            long long f0, b0, f1, b1;
            model_pass_counts(&f0, &b0);
            double t0 = now_seconds(), c0 = cpu_seconds();
            Phase ph = phase_begin();
            if (attack_evaluate(m, NULL, &test, 0, &p, NULL, NULL, NULL, &ec) < 0) { free(st); goto done; }
            v[r] = test.n / (now_seconds() - t0);
            cpu[r] = cpu_seconds() - c0;
            model_pass_counts(&f1, &b1);
            st[r] = (double)(b1 - b0) / test.n;
            double b = phase_bg(&ph);
            if (b > bg) bg = b;
        }
        double ips = median(v, R), cs = median(cpu, R), spi = median(st, R);
        free(st);
        printf("bench what=apgd model=%s threads=%d batch=%d n=%d steps=%d eps=%g images_per_s=%.2f cpu_s=%.3f "
               "grad_steps_per_image=%.1f full_images_per_s=%.2f clean=%.4f robust=%.4f bg=%.2f maxrss_mib=%.1f\n",
               arch, T, p.batch, test.n, p.steps, p.eps, ips, cs, spi, spi > 0 ? ips * spi / p.steps : 0,
               ec.n ? (double)ec.n_clean_ok / ec.n : 0, ec.n ? (double)ec.n_robust_ok / ec.n : 0, bg, maxrss_mib());
        regions_print(regions, "apgd");
    }
    rc = 0;
done:
    if (rc) err_die();
    free(v);
    model_free(m);
    dataset_close(&train);
    dataset_close(&test);
    return rc;
}
