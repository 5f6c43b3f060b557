/* replay.c -- a main() for the libFuzzer targets (tests/fuzz/fuzz_*.c) built by make with the project's
 * own compiler and flags: each named file (each file of a named folder) is given once to
 * LLVMFuzzerTestOneInput. `make test` links every target this way (build/<config>/replay/fuzz_<t>) and
 * test fuzz_targets_link_and_replay_their_seeds runs them on their seed corpus and regression inputs, so a
 * target that no longer compiles or links, or that fails on a seed, is seen without clang or a fuzzing
 * run (`make fuzz` was broken from aaa0202 to 66f51a2 and nothing else noticed).
 *   build/release/replay/fuzz_T FILE|DIR...
 * Prints "replay: N inputs" and exits 0; a file or folder it cannot read, or no input at all, is one
 * line naming it and exit 1; a target that misbehaves aborts (its CHECKs, as under libFuzzer). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* one file through the target; 0, or -1 when it cannot be read */
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    const int bad = !buf || ferror(f);
    fclose(f);
    if (!bad) LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return bad ? -1 : 0;
}

int main(int argc, char **argv) {
    long inputs = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "replay: cannot read %s (no such file or folder)\n", argv[a]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[a]) != 0) {
                fprintf(stderr, "replay: cannot read %s\n", argv[a]);
                return 1;
            }
            inputs++;
            continue;
        }
        struct dirent **names;
        const int k = scandir(argv[a], &names, NULL, alphasort); /* a fixed order: the same run every time */
        if (k < 0) {
            fprintf(stderr, "replay: cannot read the folder %s\n", argv[a]);
            return 1;
        }
        int rc = 0;
        for (int i = 0; i < k; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[a], names[i]->d_name);
            if (!rc && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                if (replay_file(p) != 0) {
                    fprintf(stderr, "replay: cannot read %s\n", p);
                    rc = 1;
                } else {
                    inputs++;
                }
            }
            free(names[i]);
        }
        free(names);
        if (rc) return 1;
    }
    if (inputs == 0) {
        fprintf(stderr, "replay: no input files (usage: replay FILE|DIR...)\n");
        return 1;
    }
    printf("replay: %ld inputs\n", inputs);
    return 0;
}
