/* commands.h -- every `concord <cmd>` entry point: int cmd_x(int argc, char **argv), argv after the
 * command name. Returns the process exit status. The table lives in main.c. */
#ifndef CONCORD_COMMANDS_H
#define CONCORD_COMMANDS_H
int cmd_models(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_attack(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_db(int argc, char **argv);
int cmd_suite(int argc, char **argv);
int cmd_job(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_import(int argc, char **argv);
/* Checks a command line without running it or reading any file (ranges, names, options the command would
 * ignore): 0, or -1 with err_set. The suite planner and `concord job` check every job with cmd_job_check,
 * whose argv[0] is the command (train, finetune or attack). */
int cmd_train_check(int finetune, int argc, char **argv);
int cmd_attack_check(int argc, char **argv);
int cmd_job_check(int argc, char **argv);
#endif
