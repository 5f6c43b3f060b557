/* main.c -- `concord <command> [options]`: the command table and nothing else. */
#include <string.h>

#include "harness/cli/commands.h"
#include "harness/core.h"

typedef struct { const char *name; int (*fn)(int, char **); const char *help; } Command;

static const Command COMMANDS[] = {
    {"models", cmd_models, "list the architectures with parameter counts and FLOPs"},
    {"rules", cmd_rules, "list the learning rules"},
    {"train", cmd_train, "train a model from scratch with any rule"},
    {"finetune", cmd_finetune, "fine-tune a checkpoint with any rule"},
    {"import", cmd_import, "turn a PyTorch state_dict (.pt) into a checkpoint, feedback matrices included"},
    {"audit", cmd_audit, "audit one checkpoint: AutoAttack through every gradient source, the sanity checks, the worst case"},
    {"attack", cmd_attack, "attack a checkpoint (FGSM, PGD, Square; true/feedback/transfer gradients)"},
    {"data", cmd_data, "dataset info and PNG export"},
    {"suite", cmd_suite, "plan, run and follow a comparison suite"},
    {"job", cmd_job, "run one job of a suite plan (what suite workers execute)"},
    {"query", cmd_query, "reports from a results database"},
    {"plot", cmd_plot, "figures from a results database (gnuplot)"},
    {"db", cmd_db, "results database maintenance"},
    {"bench", cmd_bench, "throughput measurements (make bench drives it)"},
};

static int usage(FILE *f) {
    fprintf(f, "usage: concord <command> [options]   (concord <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < ARRAY_LEN(COMMANDS); i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    return f == stderr ? 2 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(stderr);
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc == 2) return usage(stdout);
        if (argc > 3) {
            fprintf(stderr, "concord help: unexpected argument '%s'; usage: concord help [COMMAND]\n", argv[3]);
            return 2;
        }
        for (size_t i = 0; i < ARRAY_LEN(COMMANDS); i++)
            if (strcmp(COMMANDS[i].name, argv[2]) == 0) {
                char *h[] = {"--help", NULL};
                return COMMANDS[i].fn(1, h);
            }
        fprintf(stderr, "concord help: unknown command '%s'; run concord help for the list\n", argv[2]);
        return 2;
    }
    for (size_t i = 0; i < ARRAY_LEN(COMMANDS); i++)
        if (strcmp(COMMANDS[i].name, argv[1]) == 0) return COMMANDS[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "concord: unknown command '%s'; run concord help\n", argv[1]);
    return 2;
}
