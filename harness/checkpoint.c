/* checkpoint.c -- see checkpoint.h and docs/checkpoint.md */
#include "harness/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


void meta_set(CkptMeta *mt, const char *key, const char *fmt, ...) {
    int i = 0;
    while (i < mt->n && strcmp(mt->key[i], key) != 0) i++;
    if (i == mt->n) { CHECK(mt->n < CKPT_MAX_META); mt->n++; }
    snprintf(mt->key[i], sizeof mt->key[i], "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mt->val[i], sizeof mt->val[i], fmt, ap);
    va_end(ap);
}
const char *meta_get(const CkptMeta *mt, const char *key) {
    for (int i = 0; i < mt->n; i++)
        if (strcmp(mt->key[i], key) == 0) return mt->val[i];
    return NULL;
}

static int little_endian(void) { uint16_t x = 1; return *(uint8_t *)&x == 1; }

static void shape_text(const Tensor *t, char *out, size_t n) {
    out[0] = 0;
    for (int d = 0; d < t->ndim; d++) {
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s%d", d ? "," : "", t->shape[d]);
    }
}

static int exec(sqlite3 *db, const char *sql, const char *path) {
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        err_set("%s: %s", path, e ? e : sqlite3_errmsg(db));
        sqlite3_free(e);
        return -1;
    }
    return 0;
}

int ckpt_save(const char *path, const Model *m, const CkptMeta *extra) {
    CHECK(little_endian());
    char tmp[1100];
    tmp_path(path, tmp, sizeof tmp);
    unlink(tmp);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(tmp, &db) != SQLITE_OK) {
        err_set("%s: cannot create checkpoint: %s; check the directory exists and is writable", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto fail;
    }
    if (exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN;"
                 "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
                 "CREATE TABLE tensor(name TEXT PRIMARY KEY, shape TEXT, data BLOB);", path) < 0)
        goto fail;
    CkptMeta mt = {0};
    const ModelSpec *s = &m->spec;
    meta_set(&mt, "format", CKPT_FORMAT);
    meta_set(&mt, "arch", "%s", s->arch);
    meta_set(&mt, "in_c", "%d", s->in_c);
    meta_set(&mt, "in_h", "%d", s->in_h);
    meta_set(&mt, "in_w", "%d", s->in_w);
    meta_set(&mt, "classes", "%d", s->classes);
    meta_set(&mt, "width", "%.9g", s->width);
    meta_set(&mt, "hidden", "%s", s->hidden);
    meta_set(&mt, "dropout", "%.9g", s->dropout);
    meta_set(&mt, "head", "%s", s->head);
    meta_set(&mt, "rule", "%s", m->rule_name[0] ? m->rule_name : "bp");
    meta_set(&mt, "rule_opts", "%s", m->rule_opts);
    meta_set(&mt, "fb_count", "%llu", (unsigned long long)m->fb_count);
    meta_set(&mt, "step", "%ld", m->step);
    meta_set(&mt, "n_params", "%ld", m->n_params);
    /* the normalisation constants also as text (the tensors norm.mean / norm.std are authoritative) */
    char nm[256] = "", ns[256] = "";
    for (int c = 0; c < m->L[0].c && m->L[0].kind == L_NORM; c++) {
        size_t a = strlen(nm), b = strlen(ns);
        snprintf(nm + a, sizeof nm - a, "%s%.9g", c ? "," : "", m->L[0].mean[c]);
        snprintf(ns + b, sizeof ns - b, "%s%.9g", c ? "," : "", m->L[0].std[c]);
    }
    meta_set(&mt, "norm_mean", "%s", nm);
    meta_set(&mt, "norm_std", "%s", ns);
    /* the caller's keys (run facts; on --resume, everything the resumed file held), never over the live
       values above: a resumed run's step and fb_count are the model's, not the file's */
    for (int i = 0; extra && i < extra->n; i++)
        if (!meta_get(&mt, extra->key[i])) meta_set(&mt, extra->key[i], "%s", extra->val[i]);
    if (sqlite3_prepare_v2(db, "INSERT INTO meta VALUES(?,?)", -1, &st, NULL) != SQLITE_OK) goto sqlfail;
    for (int i = 0; i < mt.n; i++) {
        sqlite3_bind_text(st, 1, mt.key[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, mt.val[i], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) goto sqlfail;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO tensor VALUES(?,?,?)", -1, &st, NULL) != SQLITE_OK) goto sqlfail;
    for (int i = 0; i < m->ntensors; i++) {
        const Tensor *t = &m->tensors[i];
        char shp[64];
        shape_text(t, shp, sizeof shp);
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, shp, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob64(st, 3, t->data, (sqlite3_uint64)t->n * sizeof(float), SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) goto sqlfail;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (exec(db, "COMMIT", path) < 0) goto fail;
    if (sqlite3_close(db) != SQLITE_OK) { db = NULL; err_set("%s: cannot close the checkpoint", path); goto fail; }
    return file_commit(tmp, path);
sqlfail:
    err_set("%s: cannot write checkpoint: %s (disk full?)", path, sqlite3_errmsg(db));
fail:
    if (st) sqlite3_finalize(st);
    if (db) sqlite3_close(db);
    unlink(tmp);
    return -1;
}

static sqlite3 *open_ro(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) { err_set("%s: cannot open checkpoint: %s", path, strerror(errno)); return NULL; }
    if (S_ISDIR(sb.st_mode)) { err_set("%s: is a directory, not a checkpoint file", path); return NULL; }
    if (access(path, R_OK) != 0) { err_set("%s: checkpoint is not readable: %s", path, strerror(errno)); return NULL; }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        err_set("%s: cannot open checkpoint: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int read_meta_db(sqlite3 *db, const char *path, CkptMeta *out) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT key, value FROM meta", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        const char *e = sqlite3_errmsg(db);
        if (strstr(e, "no such table"))
            return err_set("%s: not a Concord checkpoint (no meta table); pass a file written by concord train", path);
        return err_set("%s: not a readable checkpoint (%s); the file is damaged or not a checkpoint", path, e);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (out->n < CKPT_MAX_META) {
            const char *k = (const char *)sqlite3_column_text(st, 0), *v = (const char *)sqlite3_column_text(st, 1);
            meta_set(out, k ? k : "", "%s", v ? v : "");
        }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return err_set("%s: damaged checkpoint (%s); retrain or restore it", path, sqlite3_errmsg(db));
    const char *f = meta_get(out, "format");
    if (!f) return err_set("%s: not a Concord checkpoint (no format key)", path);
    if (strcmp(f, CKPT_FORMAT) != 0)
        return err_set("%s: checkpoint format '%s' is not supported (this build reads %s)", path, f, CKPT_FORMAT);
    return 0;
}

int ckpt_read_meta(const char *path, CkptMeta *out) {
    sqlite3 *db = open_ro(path);
    if (!db) return -1;
    int rc = read_meta_db(db, path, out);
    sqlite3_close(db);
    return rc;
}

int ckpt_meta_long(const CkptMeta *mt, const char *key, const char *path, long lo, long hi, long *v) {
    const char *t = meta_get(mt, key);
    if (!t || parse_int(t, lo, hi, v) < 0)
        return err_set("%s: checkpoint meta '%s' is missing or invalid ('%s')", path, key, t ? t : "");
    return 0;
}

int ckpt_meta_spec(const CkptMeta *mt, const char *path, ModelSpec *s) {
    long c, h, w, k;
    if (ckpt_meta_long(mt, "in_c", path, 1, 4096, &c) < 0 || ckpt_meta_long(mt, "in_h", path, 1, 65536, &h) < 0 ||
        ckpt_meta_long(mt, "in_w", path, 1, 65536, &w) < 0 || ckpt_meta_long(mt, "classes", path, 1, 1 << 20, &k) < 0)
        return -1;
    const char *arch = meta_get(mt, "arch");
    model_spec_default(s, arch ? arch : "", (int)c, (int)h, (int)w, (int)k);
    double d;
    if (meta_get(mt, "width") && parse_double(meta_get(mt, "width"), &d) == 0) s->width = (float)d;
    if (meta_get(mt, "dropout") && parse_double(meta_get(mt, "dropout"), &d) == 0) s->dropout = (float)d;
    if (meta_get(mt, "hidden")) snprintf(s->hidden, sizeof s->hidden, "%s", meta_get(mt, "hidden"));
    if (meta_get(mt, "head")) snprintf(s->head, sizeof s->head, "%s", meta_get(mt, "head"));
    int known = 0;
    for (int a = 0; a < N_ARCHS; a++) known |= str_eq(ARCHS[a].name, s->arch);
    if (!known) return err_set("%s: unknown model '%s' in checkpoint (this build has: concord models)", path, s->arch);
    return 0;
}

/* Buffers a layer divides by: the input normalisation's std must be > 0 and a batch-norm running variance
 * >= 0 (finite is checked for every tensor). A std of 0 would turn every input into Inf and surface later
 * as a training divergence or a NaN far from its cause. t: a tensor just read into m. */
static int check_buffer_values(const char *path, const Model *m, const Tensor *t) {
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        int norm = L->kind == L_NORM && t->data == L->std, bn = L->kind == L_BN && t->data == L->run_var;
        if (!norm && !bn) continue;
        for (long j = 0; j < t->n; j++)
            if (norm ? !(t->data[j] > 0) : !(t->data[j] >= 0))
                return err_set("%s: tensor '%s' holds %g at channel %ld; %s (the file is damaged or was not written by Concord)",
                               path, t->name, (double)t->data[j], j,
                               norm ? "an input normalisation std must be positive" : "a batch-norm running variance cannot be negative");
    }
    return 0;
}

int ckpt_read_tensors(const char *path, Model *m, CkptSkipFn skip, void *ctx) {
    CHECK(little_endian());
    sqlite3_stmt *st = NULL;
    sqlite3 *db = open_ro(path);
    if (!db) return -1;
    if (sqlite3_prepare_v2(db, "SELECT shape, data FROM tensor WHERE name = ?", -1, &st, NULL) != SQLITE_OK) {
        err_set("%s: not a Concord checkpoint (%s)", path, sqlite3_errmsg(db));
        goto fail;
    }
    for (int i = 0; i < m->ntensors; i++) {
        Tensor *t = &m->tensors[i];
        if (skip && skip(t, ctx)) continue;
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            if (rc == SQLITE_DONE) err_set("%s: tensor '%s' is missing; the file does not match model %s", path, t->name, m->spec.arch);
            else err_set("%s: damaged checkpoint reading '%s' (%s)", path, t->name, sqlite3_errmsg(db));
            goto fail;
        }
        char want[64];
        shape_text(t, want, sizeof want);
        const char *got = (const char *)sqlite3_column_text(st, 0);
        if (!got || strcmp(got, want) != 0) {
            err_set("%s: tensor '%s' has shape [%s], model %s expects [%s]", path, t->name, got ? got : "", m->spec.arch, want);
            goto fail;
        }
        const void *blob = sqlite3_column_blob(st, 1);
        long bytes = sqlite3_column_bytes(st, 1);
        if (bytes != t->n * (long)sizeof(float) || (!blob && bytes)) {
            err_set("%s: tensor '%s' holds %ld bytes, expected %ld (truncated or damaged)", path, t->name, bytes, t->n * (long)sizeof(float));
            goto fail;
        }
        memcpy(t->data, blob, (size_t)bytes);
        for (long j = 0; j < t->n; j++)
            if (!isfinite(t->data[j])) { err_set("%s: tensor '%s' holds NaN or Inf values", path, t->name); goto fail; }
        if (check_buffer_values(path, m, t) < 0) goto fail;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return 0;
fail:
    if (st) sqlite3_finalize(st);
    sqlite3_close(db);
    return -1;
}
