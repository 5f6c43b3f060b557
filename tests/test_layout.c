/* test_layout.c -- the tree keeps the shape of the architecture: every include points into a folder the
 * including folder may use (scripts/check_layout.sh holds the table; README.md explains it). */
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
