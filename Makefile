# Concord -- plain Makefile. `make` builds ./concord; `make test` installs what is missing, builds and runs
# every test; `make asan` runs the tests under AddressSanitizer + UBSan; `make demo` runs suites/demo.ini.
# No -ffast-math anywhere: NaN/Inf detection must survive optimisation.
PKGS    := libxsmm openblas libpng sqlite3 zlib inih
CC      ?= cc
# OPT is what configurations change (make asan sets it); the language, warning and dependency flags
# always apply. Extra flags: make CFLAGS=...
OPT     ?= -O2 -g -ftree-vectorize -fvect-cost-model=dynamic
STDFLAGS := -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror=implicit-function-declaration -fno-fast-math -MMD -MP
ALLCFLAGS = $(OPT) $(STDFLAGS) $(CFLAGS)
# Includes are written from the top of the tree ("harness/model.h"), so a file's includes read the same
# wherever it lives.
CPPFLAGS += -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -D_DEFAULT_SOURCE
# oneDNN (libdnnl-dev) ships no pkg-config file in Debian: linked by name, with libgomp, its threading
# runtime (harness/layers/conv_dnnl.c sets the OpenMP thread count of the threads that call it).
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldnnl -lgomp -lm -lpthread

# Every .c under these folders (sub-folders included) is part of the library; harness/cli/main.c is the
# program's entry point.
MODULES := harness rules attacks datasets results
MAIN    := harness/cli/main.c
LIBSRC  := $(filter-out $(MAIN),$(sort $(shell find $(MODULES) -name '*.c')))
TESTSRC := $(wildcard tests/*.c)

B        := build/release
LIBOBJ   := $(LIBSRC:%.c=$(B)/%.o)
TESTOBJ  := $(TESTSRC:%.c=$(B)/%.o)
# the libFuzzer targets, linked with a replay main() (tests/fuzz/replay.c) by the project's compiler: the
# tests run them on their seeds, so a target that stops compiling or linking is seen without `make fuzz`
FUZZEXE  := $(patsubst tests/fuzz/%.c,$(B)/replay/%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps-build test asan demo bench fuzz fuzz-replay clean fixtures print-cppflags print-ldlibs FORCE
all: deps-build concord

deps-build:
	@sh scripts/deps.sh build

concord: $(LIBOBJ) $(MAIN:%.c=$(B)/%.o)
	$(CC) $(ALLCFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(B)/concord_test: $(LIBOBJ) $(TESTOBJ)
	$(CC) $(ALLCFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

fuzz-replay: $(FUZZEXE)
$(B)/replay/%: $(B)/tests/fuzz/%.o $(B)/tests/fuzz/replay.o $(LIBOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) -c -o $@ $<

# the include flags and libraries of a program built against the library (scripts/fuzz.sh and
# scripts/check_clang.sh use them rather than a list of their own)
print-cppflags:
	@echo $(CPPFLAGS)
print-ldlibs:
	@echo $(LDLIBS)

# the git revision recorded with every run and evaluation: this one object is rebuilt on every build
GIT_REV := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
$(B)/harness/cli/version.o: CPPFLAGS += -DCONCORD_GIT_REV='"$(GIT_REV)"'
$(B)/harness/cli/version.o: FORCE
FORCE:

# Tests run single-threaded BLAS so results are reproducible and two test runs do not fight for cores.
test: deps-build
	@$(MAKE) --no-print-directory concord $(B)/concord_test fuzz-replay
	OPENBLAS_NUM_THREADS=1 CONCORD_EXE=./concord $(B)/concord_test $(T)

ASANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan: deps-build
	@$(MAKE) --no-print-directory B=build/asan OPT="$(ASANFLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	    build/asan/concord_test build/asan/concord-asan fuzz-replay
	ASAN_OPTIONS=detect_leaks=1 OPENBLAS_NUM_THREADS=1 CONCORD_EXE=./build/asan/concord-asan build/asan/concord_test $(T)

build/asan/concord-asan: $(LIBOBJ) $(MAIN:%.c=$(B)/%.o)
	$(CC) $(ALLCFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

demo: deps-build concord
	sh scripts/demo.sh

bench: deps-build concord
	sh scripts/bench.sh

fuzz: deps-build
	sh scripts/fuzz.sh

fixtures:
	sh scripts/deps.sh torch
	/usr/bin/python3 scripts/make_fixtures.py tests/fixtures
	/usr/bin/python3 scripts/make_import_fixtures.py tests/fixtures/import

clean:
	rm -rf build concord

-include $(shell find build -name '*.d' 2>/dev/null)
