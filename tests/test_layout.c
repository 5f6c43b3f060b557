/* test_layout.c -- the tree keeps the shape of the architecture: every include points into a folder the
 * including folder may use (scripts/check_layout.sh holds the table; README.md explains it); and every
 * source compiles with clang too, which `make fuzz` builds the library with (scripts/check_clang.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"

TEST(layout_includes_follow_the_floors) {
    char out[8192], cmd[1024];
    int rc = test_run("sh scripts/check_layout.sh .", out, sizeof out);
    T_ASSERT_MSG(rc == 0, "include rules broken:\n%s", out);
    /* canary: an engine file that includes the rule table is caught, with its file and line */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/lay/harness && printf '#include \"harness/core.h\"\\n#include \"rules/rule.h\"\\n' > %s/lay/harness/x.c",
             test_tmpdir(), test_tmpdir());
    T_ASSERT(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "sh scripts/check_layout.sh %s/lay", test_tmpdir());
    rc = test_run(cmd, out, sizeof out);
    T_ASSERT(rc != 0);
    T_CONTAINS(out, "harness/x.c:2: includes rules/rule.h");
}

/* GCC-only extensions (__builtin_shuffle) compile with make's gcc and break `make fuzz`'s clang build of the
 * library; clang comes from Debian like everything else (the fuzz set of scripts/deps.sh) */
TEST(sources_compile_with_clang) {
    char out[8192], cmd[1024];
    if (test_run("command -v clang", NULL, 0) != 0) test_run("sh scripts/deps.sh fuzz", NULL, 0);
    if (test_run("command -v clang", NULL, 0) != 0) {
        test_skip("sources_compile_with_clang: clang is not installed and `sh scripts/deps.sh fuzz` (apt-get) could not install it");
        return;
    }
    int rc = test_run("sh scripts/check_clang.sh", out, sizeof out);
    T_ASSERT_MSG(rc == 0, "sources clang cannot compile (make fuzz builds the library with it):\n%s", out);
    /* canary: the extension that broke it is caught, with its file */
    snprintf(cmd, sizeof cmd,
             "printf 'typedef float v4f __attribute__((vector_size(16)));\\ntypedef int v4i __attribute__((vector_size(16)));\\n"
             "v4f f(v4f a, v4f b) { return __builtin_shuffle(a, b, (v4i){0, 4, 1, 5}); }\\n' > %s/shuffle.c",
             test_tmpdir());
    T_ASSERT(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "sh scripts/check_clang.sh %s/shuffle.c", test_tmpdir());
    rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 1);
    T_CONTAINS(out, "shuffle.c:3");
    T_CONTAINS(out, "__builtin_shuffle");
}
