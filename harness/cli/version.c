/* version.c -- what build this is: the git revision the binary was built from, recorded with every run
 * and evaluation (the Makefile rebuilds this file on every build and passes -DCONCORD_GIT_REV). */
#include "harness/cli/version.h"

#ifndef CONCORD_GIT_REV
#define CONCORD_GIT_REV "unknown"
#endif

const char *concord_git_rev(void) { return CONCORD_GIT_REV; }
