# ticket_ext: PGXS build.  `make demo` and `make test` are the two entry
# points (README.md); both install missing Debian/npm packages first.

EXTENSION   = ticket_ext
MODULE_big  = ticket_ext
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c bgworker/*.c bgworker/stream/*.c)))
DATA        = sql/ticket_ext--1.0.sql sql/ticket_ext--1.0--1.1.sql sql/ticket_ext--1.1.sql
PGFILEDESC  = "ticket_ext - high-frequency ticket selling"

# PostgreSQL 15's own pg_config when present (Debian's /usr/bin/pg_config
# picks the newest server-dev installed).
PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PG_CPPFLAGS = -Iinclude -I$(libpq_srcdir) -std=gnu11 -Wall -Wextra \
              -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
# the worker's replication connection (libpq) and sinks (hiredis, libcurl)
SHLIB_LINK_INTERNAL = $(libpq)
SHLIB_LINK = -lhiredis -lcurl

# The pg_regress and isolation suites, the PGXS way: `make installcheck`
# after `make install` runs them on a temporary instance of its own
# (--temp-instance, as pg_cron does) with the extension preloaded and its
# workers serving the test database (--temp-config), so it works for a
# user against any installed PostgreSQL 15.  test/run_all.sh calls it
# too; the other suites are in test/ (`make test`).
REGRESS      = $(sort $(basename $(notdir $(filter-out sql/ticket_ext--%,$(wildcard sql/*.sql)))))
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/conf/ticket_ext.conf \
               --encoding=UTF8 --no-locale
ISOLATION      = $(sort $(basename $(notdir $(wildcard specs/*.spec))))
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=$(srcdir)/test/conf/ticket_ext.conf \
                 --encoding=UTF8 --no-locale
EXTRA_CLEAN    = tmp_check tmp_check_iso output_iso results regression.diffs regression.out

# On a fresh machine pg_config arrives with `make deps`: parse without it.
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
endif

# the isolation specs run in the database the workers serve (test conf)
ISOLATION_TESTDB = contrib_regression

# PGXS tracks no header dependencies: rebuild everything when one changes
$(OBJS): $(wildcard include/*.h)

.PHONY: deps test demo bench bench-stream bench-pools fuzz soak
deps:
	./scripts/install-deps.sh

# Build and install the extension with a fresh make (PGXS may only have
# become available through `deps`).
.PHONY: build-install
build-install: deps
	$(MAKE) all
	$(MAKE) install

test: build-install
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" ./test/run_all.sh

demo: build-install
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" ./demo/run_demo.sh

bench: build-install
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" ./bench/run_bench.sh

bench-stream: build-install
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" ./bench/stream_bench.sh

# pools + per-customer limit against plain ticket_reserve and a plain-SQL peer
bench-pools: build-install
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" ./bench/pools_bench.sh

# the randomized interleaving soak (test/t/040_soak.pl), longer than the
# 60 s it runs in `make test`; SOAK_SEED=N repeats a run
SOAK_SECONDS ?= 600
soak: build-install
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" SOAK_SECONDS=$(SOAK_SECONDS) \
	  TICKET_TAP_TESTS=test/t/040_soak.pl ./test/run_all.sh tap

# libFuzzer + ASan/UBSan over the parsers of outside input, longer than in `make test`
FUZZ_SECONDS ?= 300
fuzz: deps
	./test/fuzz/run_fuzz.sh $(FUZZ_SECONDS)
