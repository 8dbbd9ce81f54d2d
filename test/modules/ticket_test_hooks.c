/*-------------------------------------------------------------------------
 *
 * ticket_test_hooks.c
 *	  Test-only module: widens the windows between a transaction's end
 *	  becoming visible and ticket_ext's (sub)transaction callbacks.
 *
 * Never built into ticket_ext and never installed: the tests compile it in
 * their work copy and LOAD it by path in the session under test.  Loaded
 * after ticket_ext (which is preloaded), its callbacks run first
 * (PostgreSQL calls transaction callbacks newest first), so a delay here
 * holds the session right after ProcArrayEndTransaction / the subxact
 * abort record and right before ticket_ext applies or undoes its effects.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static int	commit_delay_ms = 0;
static int	abort_delay_ms = 0;
static int	subabort_delay_ms = 0;

static void
delay(int ms)
{
	if (ms > 0)
		pg_usleep((long) ms * 1000L);
}

static void
test_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT)
		delay(commit_delay_ms);
	else if (event == XACT_EVENT_ABORT)
		delay(abort_delay_ms);
}

static void
test_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		delay(subabort_delay_ms);
}

void
_PG_init(void)
{
	DefineCustomIntVariable("ticket_test.commit_delay_ms",
							"Sleep this long in the commit callback, before ticket_ext's.",
							NULL, &commit_delay_ms, 0, 0, 600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_test.abort_delay_ms",
							"Sleep this long in the abort callback, before ticket_ext's.",
							NULL, &abort_delay_ms, 0, 0, 600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("ticket_test.subabort_delay_ms",
							"Sleep this long in the subtransaction abort callback, before ticket_ext's.",
							NULL, &subabort_delay_ms, 0, 0, 600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	MarkGUCPrefixReserved("ticket_test");
	RegisterXactCallback(test_xact_callback, NULL);
	RegisterSubXactCallback(test_subxact_callback, NULL);
}
