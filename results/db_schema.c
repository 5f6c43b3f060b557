/* db_schema.c -- the results database's schema and migrations as SQL text (see db.h, docs/results.md).
 *
 * Schema history (PRAGMA user_version):
 *   v1  runs, epochs, alignment, evals (attack parameters + counts), artifacts, view eval_acc.
 *   v2  runs gain model_opts, blas_core, blas_threads; evals gain job_key (UNIQUE), eot, queries, p_init,
 *       queries_max, transfer_run, transfer_hash, flags, host, git_rev; artifacts become unique per
 *       (kind, path) (duplicates dropped, newest kept); views eval_view and run_view replace eval_acc.
 *   v3  the hashing task: runs and evals gain task ('classify' | 'hash'; runs whose model_opts say
 *       head=hash become 'hash'; a hash run's test_acc is its mAP); evals gain bits, topk, n_db, map_clean,
 *       map_adv, prec_clean, prec_adv, tmap_clean, tmap_adv, mean_hamming; eval_view labels hashing
 *       attacks and leaves clean_acc / robust_acc NULL for them; run_view gains task and test_map.
 * A new file is created as v1 and migrated, so every migration runs on every fresh database.
 *   v4  evals gain outcomes (the per-example BLOB, outcomes.h); runs gain cpu; Square's source is stored as
 *       black-box; eval_view labels a transfer source by its surrogate's rule and kind.
 *   v5  evals gain stage: 0 for an evaluation of its own, k >= 1 for the row AutoAttack records after its
 *       k-th component (the ensemble so far, not the component alone); eval_view carries it. Older
 *       component rows are recognised by their suite job key (".../autoattack.apgd-t/...") or, recorded
 *       by `concord attack` without one, by their place just before their ensemble's row.
 * Each migration step runs inside the BEGIN IMMEDIATE transaction that bumps user_version (db.c), so a
 * crash mid-migration leaves the old version intact and two processes never migrate twice.
 */
#include "results/db_internal.h"

#include "harness/core.h"

static const char *const k_attack_names[] = {"fgsm", "pgd", "square", "apgd", "fab", "autoattack"};
static const char *const k_norm_names[] = {"linf", "l2"};
static const char *const k_grad_names[] = {"true", "feedback", "transfer"};
_Static_assert(ARRAY_LEN(k_attack_names) == ATK_KIND_COUNT, "one name per attack kind");
_Static_assert(ARRAY_LEN(k_grad_names) == GRAD_SOURCE_COUNT, "one name per gradient source");

const char *db_attack_name(int kind) { return kind >= 0 && kind < ATK_KIND_COUNT ? k_attack_names[kind] : "?"; }
const char *db_norm_name(int norm) { return norm >= 0 && norm < (int)ARRAY_LEN(k_norm_names) ? k_norm_names[norm] : "?"; }
const char *db_grad_source_name(int src) { return src >= 0 && src < GRAD_SOURCE_COUNT ? k_grad_names[src] : "?"; }

/* ---- schema ---- */

static const char k_schema_v1[] =
    "CREATE TABLE runs("
    " id INTEGER PRIMARY KEY,"
    " job_key TEXT UNIQUE,"
    " kind TEXT NOT NULL CHECK(kind IN ('train','finetune')),"
    " parent_run INTEGER REFERENCES runs(id),"
    " rule TEXT NOT NULL, rule_opts TEXT NOT NULL DEFAULT '',"
    " model TEXT NOT NULL, dataset TEXT NOT NULL,"
    " data_seed INTEGER, init_seed INTEGER, rule_seed INTEGER,"
    " config_json TEXT, config_hash TEXT,"
    " status TEXT NOT NULL CHECK(status IN ('running','finished','failed','interrupted')),"
    " heartbeat TEXT, host TEXT, git_rev TEXT, started TEXT, finished TEXT,"
    " ckpt_path TEXT, ckpt_hash TEXT, test_acc REAL, val_acc REAL, error TEXT);"
    "CREATE TABLE epochs("
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,"
    " lr REAL, train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, seconds REAL, samples_per_s REAL,"
    " PRIMARY KEY(run_id, epoch));"
    "CREATE TABLE alignment("
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL, layer TEXT NOT NULL,"
    " angle_bw REAL, norm_ratio REAL, grad_angle REAL,"
    " PRIMARY KEY(run_id, epoch, layer));"
    "CREATE TABLE evals("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER REFERENCES runs(id),"
    " target_ckpt TEXT, target_hash TEXT, dataset TEXT, split TEXT NOT NULL DEFAULT 'test',"
    " attack TEXT NOT NULL, norm TEXT NOT NULL, eps_text TEXT NOT NULL, eps REAL NOT NULL,"
    " alpha_text TEXT NOT NULL DEFAULT '', alpha REAL, steps INTEGER, restarts INTEGER, random_start INTEGER,"
    " targeted INTEGER NOT NULL DEFAULT 0, target INTEGER, grad_source TEXT NOT NULL, transfer_ckpt TEXT,"
    " seed INTEGER, batch INTEGER,"
    " n INTEGER NOT NULL, n_clean_ok INTEGER NOT NULL, n_robust_ok INTEGER NOT NULL, n_flipped INTEGER,"
    " n_zero_grad INTEGER, mean_linf REAL, mean_l2 REAL, mean_loss REAL, seconds REAL, created TEXT);"
    "CREATE TABLE artifacts("
    " id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id), eval_id INTEGER REFERENCES evals(id),"
    " kind TEXT NOT NULL CHECK(kind IN ('checkpoint','grid','figure','report')),"
    " path TEXT NOT NULL, hash TEXT, created TEXT);"
    "CREATE INDEX evals_run ON evals(run_id);"
    "CREATE VIEW eval_acc AS SELECT id, CASE WHEN n>0 THEN 1.0*n_robust_ok/n END AS robust_acc FROM evals;";

static const char k_migrate_v1_v2[] =
    "ALTER TABLE runs ADD COLUMN model_opts TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE runs ADD COLUMN blas_core TEXT;"
    "ALTER TABLE runs ADD COLUMN blas_threads INTEGER;"
    "ALTER TABLE evals ADD COLUMN job_key TEXT;"
    "ALTER TABLE evals ADD COLUMN eot INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE evals ADD COLUMN queries INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE evals ADD COLUMN p_init REAL;"
    "ALTER TABLE evals ADD COLUMN queries_max INTEGER;"
    "ALTER TABLE evals ADD COLUMN transfer_run INTEGER REFERENCES runs(id);"
    "ALTER TABLE evals ADD COLUMN transfer_hash TEXT;"
    "ALTER TABLE evals ADD COLUMN flags TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE evals ADD COLUMN host TEXT;"
    "ALTER TABLE evals ADD COLUMN git_rev TEXT;"
    "CREATE UNIQUE INDEX evals_job_key ON evals(job_key);"
    /* v1 had no uniqueness on artifacts: keep the newest row per (kind, path) */
    "DELETE FROM artifacts WHERE id NOT IN (SELECT MAX(id) FROM artifacts GROUP BY kind, path);"
    "CREATE UNIQUE INDEX artifacts_kind_path ON artifacts(kind, path);"
    /* v1 knew the surrogate only by path: link it to the run that wrote that checkpoint */
    "UPDATE evals SET transfer_run = (SELECT r.id FROM runs r WHERE r.ckpt_path = evals.transfer_ckpt"
    " ORDER BY r.id DESC LIMIT 1) WHERE grad_source = 'transfer' AND transfer_ckpt IS NOT NULL;"
    "DROP VIEW eval_acc;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule, '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    "CREATE VIEW run_view AS SELECT"
    " r.id, r.job_key, r.kind, r.parent_run, r.rule, r.model, r.dataset, r.data_seed, r.init_seed, r.rule_seed,"
    " r.status, (SELECT COUNT(*) FROM epochs p WHERE p.run_id = r.id) AS epochs, r.test_acc, r.val_acc,"
    " r.started, r.finished, r.heartbeat, r.host, r.error"
    " FROM runs r;";

static const char k_migrate_v2_v3[] =
    "ALTER TABLE runs ADD COLUMN task TEXT NOT NULL DEFAULT 'classify';"
    "UPDATE runs SET task = 'hash' WHERE model_opts LIKE '%head=hash%';"
    "ALTER TABLE evals ADD COLUMN task TEXT NOT NULL DEFAULT 'classify';"
    "ALTER TABLE evals ADD COLUMN bits INTEGER;"
    "ALTER TABLE evals ADD COLUMN topk INTEGER;"
    "ALTER TABLE evals ADD COLUMN n_db INTEGER;"
    "ALTER TABLE evals ADD COLUMN map_clean REAL;"
    "ALTER TABLE evals ADD COLUMN map_adv REAL;"
    "ALTER TABLE evals ADD COLUMN prec_clean REAL;"
    "ALTER TABLE evals ADD COLUMN prec_adv REAL;"
    "ALTER TABLE evals ADD COLUMN tmap_clean REAL;"
    "ALTER TABLE evals ADD COLUMN tmap_adv REAL;"
    "ALTER TABLE evals ADD COLUMN mean_hamming REAL;"
    "DROP VIEW eval_view;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.task, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.task = 'hash' THEN 'hash-' || CASE WHEN e.targeted THEN 'targeted' ELSE 'untargeted' END"
    "  || '-' || CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  ELSE CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule, '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate,"
    " e.bits, e.topk, e.n_db, e.map_clean, e.map_adv, e.prec_clean, e.prec_adv, e.tmap_clean, e.tmap_adv, e.mean_hamming"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    "DROP VIEW run_view;"
    "CREATE VIEW run_view AS SELECT"
    " r.id, r.job_key, r.kind, r.parent_run, r.rule, r.model, r.dataset, r.data_seed, r.init_seed, r.rule_seed,"
    " r.status, (SELECT COUNT(*) FROM epochs p WHERE p.run_id = r.id) AS epochs, r.test_acc, r.val_acc,"
    " r.started, r.finished, r.heartbeat, r.host, r.error, r.task,"
    " CASE WHEN r.task = 'hash' THEN r.test_acc END AS test_map"
    " FROM runs r;";

/* v4: per-example outcomes of every evaluation (results/outcomes.h; older rows keep NULL); a transfer
 * source is labelled by its surrogate's rule AND kind (transfer:bp-pretrain, transfer:bp-finetune: two
 * surrogates are never merged), or its checkpoint hash when no run is known; Square's source is stored
 * as black-box */
static const char k_migrate_v3_v4[] =
    "ALTER TABLE evals ADD COLUMN outcomes BLOB;"
    "ALTER TABLE runs ADD COLUMN cpu TEXT;"
    "UPDATE evals SET grad_source = 'black-box' WHERE attack = 'square';"
    "DROP VIEW eval_view;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.task, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.task = 'hash' THEN 'hash-' || CASE WHEN e.targeted THEN 'targeted' ELSE 'untargeted' END"
    "  || '-' || CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  ELSE CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule || '-' || CASE s.kind WHEN 'train' THEN 'pretrain' ELSE s.kind END,"
    "   'ckpt-' || substr(e.transfer_hash, 1, 8), '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate,"
    " e.bits, e.topk, e.n_db, e.map_clean, e.map_adv, e.prec_clean, e.prec_adv, e.tmap_clean, e.tmap_adv, e.mean_hamming"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    ;

/* v5: AutoAttack's component rows told apart from evaluations of their own (evals.stage; see above) */
static const char k_migrate_v4_v5[] =
    "ALTER TABLE evals ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;"
    "UPDATE evals SET stage = CASE attack WHEN 'apgd-ce' THEN 1 WHEN 'apgd-t' THEN 2 WHEN 'apgd-dlr' THEN 2"
    " WHEN 'fab-t' THEN 3 WHEN 'square' THEN 4 ELSE 1 END"
    " WHERE job_key LIKE '%/autoattack.%' OR job_key LIKE '%/autoattack-l2.%' OR job_key LIKE '%/autoattack-rand.%'"
    " OR job_key LIKE '%/autoattack-rand-l2.%';"
    /* recorded by concord attack (no job key): a component row sits right before its ensemble's row, same
     * model, eps, norm and examples: standard apgd-ce, apgd-t, fab-t, square; rand apgd-ce, apgd-dlr */
    "UPDATE evals SET stage = CASE attack WHEN 'apgd-ce' THEN 1 WHEN 'apgd-t' THEN 2 WHEN 'apgd-dlr' THEN 2"
    " WHEN 'fab-t' THEN 3 ELSE 4 END"
    " WHERE job_key IS NULL AND EXISTS(SELECT 1 FROM evals a WHERE a.attack = 'autoattack' AND a.job_key IS NULL"
    "  AND a.eps = evals.eps AND a.norm = evals.norm AND a.n = evals.n"
    "  AND coalesce(a.target_hash, '') = coalesce(evals.target_hash, '') AND ("
    "   (evals.attack IN ('square', 'apgd-dlr') AND a.id = evals.id + 1)"
    "   OR (evals.attack = 'fab-t' AND a.id = evals.id + 2)"
    "   OR (evals.attack = 'apgd-t' AND a.id = evals.id + 3)"
    "   OR (evals.attack = 'apgd-ce' AND a.id = evals.id + 4"
    "       AND EXISTS(SELECT 1 FROM evals q WHERE q.id = evals.id + 1 AND q.attack = 'apgd-t'))"
    "   OR (evals.attack = 'apgd-ce' AND a.id = evals.id + 2"
    "       AND EXISTS(SELECT 1 FROM evals q WHERE q.id = evals.id + 1 AND q.attack = 'apgd-dlr'))));"
    "DROP VIEW eval_view;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.task, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.stage, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.task = 'hash' THEN 'hash-' || CASE WHEN e.targeted THEN 'targeted' ELSE 'untargeted' END"
    "  || '-' || CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  ELSE CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule || '-' || CASE s.kind WHEN 'train' THEN 'pretrain' ELSE s.kind END,"
    "   'ckpt-' || substr(e.transfer_hash, 1, 8), '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate,"
    " e.bits, e.topk, e.n_db, e.map_clean, e.map_adv, e.prec_clean, e.prec_adv, e.tmap_clean, e.tmap_adv, e.mean_hamming"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    ;

const DbMigration DB_MIGRATIONS[] = {
    {0, k_schema_v1}, {1, k_migrate_v1_v2}, {2, k_migrate_v2_v3}, {3, k_migrate_v3_v4}, {4, k_migrate_v4_v5}};
_Static_assert(ARRAY_LEN(DB_MIGRATIONS) == DB_SCHEMA_VERSION, "one migration per schema version");
