/* fuzz_ckpt.c -- libFuzzer target for the checkpoint reader: meta (ckpt_read_meta, ckpt_meta_spec) and
 * tensors (ckpt_read_tensors) through ckpt_load and ckpt_load_head (rules/build.h), as `concord attack`,
 * `finetune` and `--resume` call them. A checkpoint either loads into a model that runs (one forward
 * pass) or is refused in one line naming the file; never a crash, an abort or a leak.
 * Two forms of input, both written to a temporary file that is then loaded:
 *   - a SQLite file as it is (the input starts with "SQLite format 3");
 *   - otherwise a description the target writes into a fresh checkpoint file, so the fuzzer spends its
 *     time on the meta values and tensors rather than on SQLite's page format: one row per line,
 *     `KEY=VALUE` for a meta row and `@NAME SHAPE HEX` for a tensor row (the data as hex bytes,
 *     little-endian float32). tests/fuzz/corpus/ckpt has both forms of small real checkpoints.
 */
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/core.h"
#include "rules/build.h"

static int hexval(int c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

/* The description form: a checkpoint file holding its rows (what does not parse as a row is skipped). */
static void write_described(const char *path, const uint8_t *data, size_t size) {
    unlink(path);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "PRAGMA synchronous=OFF; PRAGMA journal_mode=OFF; CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); "
                           "CREATE TABLE tensor(name TEXT PRIMARY KEY, shape TEXT, data BLOB); BEGIN",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_stmt *meta, *ten;
    CHECK(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta VALUES (?, ?)", -1, &meta, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO tensor VALUES (?, ?, ?)", -1, &ten, NULL) == SQLITE_OK);
    char *text = xmalloc(size + 1), *blob = xmalloc(size / 2 + 1);
    memcpy(text, data, size);
    text[size] = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (line[0] == '@') {
            char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
            if (!sp2) continue;
            *sp1 = *sp2 = 0;
            size_t n = 0;
            for (const char *h = sp2 + 1; hexval(h[0]) >= 0 && hexval(h[1]) >= 0; h += 2) blob[n++] = (char)(hexval(h[0]) << 4 | hexval(h[1]));
            sqlite3_bind_text(ten, 1, line + 1, -1, SQLITE_STATIC);
            sqlite3_bind_text(ten, 2, sp1 + 1, -1, SQLITE_STATIC);
            sqlite3_bind_blob(ten, 3, blob, (int)n, SQLITE_STATIC);
            sqlite3_step(ten);
            sqlite3_reset(ten);
        } else {
            char *eq = strchr(line, '=');
            if (!eq) continue;
            *eq = 0;
            sqlite3_bind_text(meta, 1, line, -1, SQLITE_STATIC);
            sqlite3_bind_text(meta, 2, eq + 1, -1, SQLITE_STATIC);
            sqlite3_step(meta);
            sqlite3_reset(meta);
        }
    }
    sqlite3_finalize(meta);
    sqlite3_finalize(ten);
    CHECK(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    free(text);
    free(blob);
}

/* A loaded model is whole: every tensor finite, and it runs (on inputs up to 64x64 pixels: the commands
 * only run a model on a dataset of its input shape, whose size the dataset readers bound). */
static void use(Model *m) {
    for (int i = 0; i < m->ntensors; i++)
        for (long k = 0; k < m->tensors[i].n; k++) CHECK(m->tensors[i].kind == TK_OPTIM || isfinite(m->tensors[i].data[k]));
    int D = model_in_dim(m);
    if (D > 3 * 64 * 64) return;
    float *x = xcalloc((size_t)D * 2, sizeof *x);
    for (int k = 0; k < 2 * D; k++) x[k] = (float)(k % 7) / 7.0f;
    Work *w = work_create(m, 2);
    model_forward(m, w, x, 2, FWD_INFER);
    work_free(w);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz-ckpt-%ld.ckpt", (long)getpid());
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
    }
    if (size >= 15 && memcmp(data, "SQLite format 3", 15) == 0) {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(data, 1, size, f) == size && fclose(f) == 0);
    } else {
        write_described(path, data, size);
    }
    CkptMeta meta;
    for (int form = 0; form < 2; form++) {
        err_clear();
        /* as attack and resume load it (its own rule, with the optimiser state); as finetune does (another
           rule, a new 3-class head) */
        Model *m = form == 0 ? ckpt_load(path, NULL, NULL, 0, 1, &meta)
                             : ckpt_load_head(path, rule_find("fa"), NULL, 3, NULL, 0, &meta);
        if (!m) {
            CHECK(err_msg()[0] && !strchr(err_msg(), '\n') && strstr(err_msg(), path));
            continue;
        }
        use(m);
        model_free(m);
    }
    unlink(path);
    return 0;
}
