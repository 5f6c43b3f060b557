/* cli.h -- one small option parser for every subcommand. A command declares its options as a table:
 *   static const OptSpec OPTS[] = {{"epochs", "N", "training epochs", "1"}, {"nesterov", NULL, "...", NULL}, {0}};
 * (arg NULL = a flag). args_parse accepts `--name value`, `--name=value` and flags; `--help` prints the usage
 * and the table (returns 1). One-line errors (returns -1): an unknown option, an option given twice, an
 * empty value, and any positional argument (args_parse_pos: more than maxpos of them). */
#ifndef CONCORD_CLI_H
#define CONCORD_CLI_H
#include <stddef.h>
#include <stdint.h>

typedef struct OptSpec { const char *name, *arg, *help, *def; } OptSpec;
#define ARGS_MAX 96
typedef struct Args {
    const char *cmd;
    const OptSpec *spec;
    int nspec;
    const char *val[ARGS_MAX];
    int set[ARGS_MAX];
    int npos;
    const char *pos[32];
} Args;

int args_parse(Args *a, const char *cmd, const char *usage, const OptSpec *spec, int argc, char **argv);
int args_parse_pos(Args *a, const char *cmd, const char *usage, const OptSpec *spec, int maxpos, int argc, char **argv);
void args_usage(const char *cmd, const char *usage, const OptSpec *spec);
const char *arg_str(const Args *a, const char *name); /* value, else default, else NULL */
int arg_set(const Args *a, const char *name);         /* given on the command line */
int arg_flag(const Args *a, const char *name);
int arg_int(const Args *a, const char *name, long lo, long hi, long *out);   /* 0 or -1 with err_set */
int arg_double(const Args *a, const char *name, double lo, double hi, double *out);
int arg_u64(const Args *a, const char *name, uint64_t *out);
/* A comma list (value, else default) copied into buf and split into at most max items: an empty item
 * ("0.1," or "a,,b") or one listed twice is a one-line error. Returns the count, or -1 with err_set. */
int arg_list(const Args *a, const char *name, char *buf, size_t cap, char **items, int max);
int arg_list_text(const char *cmd, const char *name, const char *text, char *buf, size_t cap, char **items, int max);
#endif
