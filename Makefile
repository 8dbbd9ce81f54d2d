# ticket_ext: PGXS build.  `make demo` and `make test` are the two entry
# points (README.md); both install missing Debian/npm packages first.

EXTENSION   = ticket_ext
MODULE_big  = ticket_ext
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c bgworker/*.c)))
DATA        = sql/ticket_ext--1.0.sql
PGFILEDESC  = "ticket_ext - high-frequency ticket selling"

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -Iinclude -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
              -Wno-sign-compare -Wno-missing-field-initializers

# Tests are driven by test/run_all.sh (see `make test`), not by PGXS's
# installcheck: every suite needs its own throwaway cluster with
# shared_preload_libraries.
NO_INSTALLCHECK = 1

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: deps test demo bench
deps:
	./scripts/install-deps.sh

test: deps
	$(MAKE) all
	$(MAKE) install
	./test/run_all.sh

demo: deps
	$(MAKE) all
	$(MAKE) install
	./demo/run_demo.sh

bench: deps
	$(MAKE) all
	$(MAKE) install
	./bench/run_bench.sh
