/*-------------------------------------------------------------------------
 *
 * itm_relay.c
 *	  The event relay: accepted events and mail announcements sent by a
 *	  background worker after the transactions that made them committed.
 *
 * Why.  1.1 sends invitetomedia_accepted (and every mail announcement,
 * invitetomedia_email) with NOTIFY inside the consuming transaction.
 * PostgreSQL serialises the commits of every transaction that notifies:
 * PreCommit_Notify takes a cluster-wide lock that is held through the
 * commit record's flush, so notifying transactions lose group commit.  At
 * synchronous_commit = on and 32 clients, the shape of a use ran at 0.41
 * of its speed without the NOTIFY (bench/README.md, "Issue 21").
 *
 * What.  The truth of every event is already a committed row: the use's
 * record in redemptions (status ok), the join's in guest_link_joins
 * (status ok), the message in outbox.  For each database named in
 * invitetomedia.relay_databases (the library must be in
 * shared_preload_libraries), one background worker reads those rows after
 * they commit and sends the very NOTIFY 1.1 sent, same channel, same
 * payload, one per record, many per transaction of its own.  Writers in
 * such a database send nothing.  Every other database keeps 1.1's
 * in-transaction NOTIFY, which is also the DBA's setting for it: leave the
 * database out of relay_databases.
 *
 * Which rows are new, without reading the whole tables or writing a queue.
 * Ids come from sequences, but a transaction that drew id 7 may commit
 * after one that drew id 8: the relay cannot simply announce "up to the
 * highest id it sees".  It announces up to a bound every id below which is
 * settled: each round reads each record sequence's last value L and then
 * the next transaction id X (ReadNextTransactionId, not a snapshot's xmax,
 * which is the last completed xid + 1 and may be older).  A writer has
 * its xid before it draws a record id (a use's UPDATE, a join's row lock
 * and an invite's INSERT come first; the writers also call
 * GetTopTransactionId there, which costs nothing then), so every
 * transaction that drew an id <= L has an xid < X.  Once a later round's
 * snapshot has xmin >= X, every such transaction has ended, and that
 * snapshot sees every committed row with id <= L: the rows between the
 * cursor and L are announced, and L becomes the cursor.  The cost is a
 * round or two of latency (a round every relay_naptime ms), and one rule:
 * a transaction that holds an xid delays every announcement until it
 * ends, as it delays the xmin horizon (events wait, none is lost).
 * The sequences must hand out ids in order, from the shared counter:
 * CACHE 1, increasing, no CYCLE, and the columns' defaults exactly the
 * extension's nextval(): the relay checks, and stops with an error that
 * names what changed otherwise.
 *
 * The cursor survives a crash with the announcement.  Each record table
 * has a replication origin, named invitetomedia_<database oid>_<sequence
 * oid>; the transaction that sends a batch of NOTIFYs sets its origin's
 * progress to the batch's last id, and PostgreSQL writes that progress in
 * the commit record itself (as logical replication's apply worker does).
 * So the cursor moves exactly when the notifications commit: after a
 * crash the relay goes on from the last committed batch, and nothing is
 * announced twice.  That commit is always synchronous (ForceSyncCommit):
 * its only WAL is the commit record, which PostgreSQL would otherwise
 * flush later, after a listener may have received the batch.
 * The progress is replicated, so a promoted standby goes on from the
 * primary's cursor.  No table of the extension changes: the relay needs no
 * new schema version.
 *
 * The start.  The first time a relay starts for a database (its origins do
 * not exist), the records written before were announced by their writers,
 * and everything drawn afterwards is the relay's.  The switch must lose
 * nothing and repeat nothing while writers run: a writer that finds the
 * relay not ready and no origins takes a share lock (an advisory lock tag
 * of its own, held to the end of its transaction), and announces its own
 * events; the relay takes that lock exclusively, reads L0, creates the
 * origins at L0, commits, marks the database ready in shared memory and
 * lets go.  So a writer either drew its id before L0 was read (and
 * notifies itself), or after the ready mark (and the relay announces it).
 * The relay waits a second at most for that lock (writers queue behind
 * its request meanwhile), else it tries again at its restart, 2 s later.
 * Once the origins exist, a writer that finds the relay not (yet) running
 * leaves its events to it: they wait, none is lost.  The ready mark names
 * the sequences the relay serves: after DROP and CREATE EXTENSION the new
 * sequences have no origins yet, and writers notify themselves until the
 * relay has started again for them.
 *
 * One payload per record.  NOTIFY merges identical notifications of one
 * transaction: two uses of one invite in one round would reach a listener
 * once.  The relay ends its transaction before a payload it already sent
 * in it, so each use still gives one notification.
 *
 * What it does not do: announce a record deleted before it was read (the
 * invite was purged or deleted within a round), or one written by hand by
 * a transaction that drew its id before it had an xid.
 *
 * IDENTIFICATION
 *	  itm_relay.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/origin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "itm_compat.h"
#include "itm_relay.h"

#define RELAY_MAX_DATABASES 64
#define RELAY_BATCH 10000		/* rows read per table per round */
#define RELAY_PENDING 256		/* unsettled bounds kept */
#define RELAY_CHECK_EVERY_MS 1000	/* the sequences' shape checked again */
#define RELAY_IDLE_MS 1000		/* extension missing or too old: look again */

/* the advisory lock tag of the start (see "The start" above) */
#define RELAY_LOCK_KEY1 0x69746d72	/* "itmr" */
#define RELAY_LOCK_KEY2 21		/* issue 21 */
#define RELAY_LOCK_FIELD4 0x4954	/* not 1 or 2: pg_advisory_lock's */

/* The record tables, in the order of every array below. */
typedef enum RelayTable
{
	RT_REDEMPTIONS = 0,
	RT_JOINS,
	RT_OUTBOX,
	RT_COUNT
} RelayTable;

/*
 * The counters the relay follows: 1.1's ids come from these sequences; 2.0
 * draws its ids at random, and its writers draw event_seq from the second
 * set where the relay serves the database (docs/design-2.0.md, section 7).
 */
static const char *const relay_sequences_by_schema[2][RT_COUNT] = {
	{"redemptions_redemption_id_seq", "guest_link_joins_join_id_seq", "outbox_message_id_seq"},
	{"redemptions_event_seq", "guest_link_joins_event_seq", "outbox_event_seq"},
};

/* the worker's: is its database's extension 2.0 (event_seq) or 1.1 (ids) */
static bool relay_v2 = false;

#define relay_sequences (relay_sequences_by_schema[relay_v2 ? 1 : 0])

/* one slot per database of relay_databases, in shared memory */
typedef struct RelaySlot
{
	char		dbname[NAMEDATALEN];
	pg_atomic_uint32 ready;		/* origins exist and the relay runs */
	Oid			seq[3];			/* for these sequences (set while not ready) */
} RelaySlot;

typedef struct RelayShared
{
	int			nslots;
	RelaySlot	slots[FLEXIBLE_ARRAY_MEMBER];
} RelayShared;

/* settings */
static char *relay_databases = NULL;
static int	relay_naptime = 10;
static bool relay_paused = false;

/* NULL unless the library was preloaded */
static RelayShared *relay_shared = NULL;
static int	relay_nslots_requested = 0;
static char relay_names[RELAY_MAX_DATABASES][NAMEDATALEN];

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* a backend's slot: -2 not looked up yet, -1 none */
static int	my_slot = -2;

static Size
RelayShmemSize(void)
{
	return add_size(offsetof(RelayShared, slots),
					mul_size(relay_nslots_requested, sizeof(RelaySlot)));
}

static void
RelayShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(RelayShmemSize());
}

static void
RelayShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	relay_shared = ShmemInitStruct("invitetomedia relay", RelayShmemSize(), &found);
	if (!found)
	{
		int			i;

		relay_shared->nslots = relay_nslots_requested;
		for (i = 0; i < relay_nslots_requested; i++)
		{
			strlcpy(relay_shared->slots[i].dbname, relay_names[i], NAMEDATALEN);
			pg_atomic_init_u32(&relay_shared->slots[i].ready, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
ItmRelayInit(void)
{
	List	   *names;
	ListCell   *lc;
	char	   *copy;

	DefineCustomIntVariable("invitetomedia.relay_naptime",
							"Time between two rounds of the event relay.",
							NULL,
							&relay_naptime,
							10, 1, 10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("invitetomedia.relay_paused",
							 "Stops the event relay's announcements until set off again.",
							 "Events wait in their records; none is lost.",
							 &relay_paused,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	/* a PGC_POSTMASTER setting exists only where the library is preloaded */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomStringVariable("invitetomedia.relay_databases",
							   "Databases whose events the relay announces after commit.",
							   "A comma-separated list of database names; needs the library "
							   "in shared_preload_libraries.  The databases not named keep "
							   "1.1's NOTIFY in the writing transaction.",
							   &relay_databases,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	copy = pstrdup(relay_databases ? relay_databases : "");
	if (!SplitIdentifierString(copy, ',', &names))
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in parameter \"invitetomedia.relay_databases\"")));
	if (list_length(names) > RELAY_MAX_DATABASES)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"invitetomedia.relay_databases\" names %d databases, more than %d",
						list_length(names), RELAY_MAX_DATABASES)));
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		int			i;

		for (i = 0; i < relay_nslots_requested; i++)
			if (strcmp(relay_names[i], name) == 0)
				break;
		if (i < relay_nslots_requested)
			continue;			/* named twice: one relay */
		strlcpy(relay_names[relay_nslots_requested++], name, NAMEDATALEN);
	}

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = RelayShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = RelayShmemStartup;

	for (int i = 0; i < relay_nslots_requested; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 2;
		strlcpy(worker.bgw_library_name, "invitetomedia", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "ItmRelayMain", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "invitetomedia relay for %s", relay_names[i]);
		strlcpy(worker.bgw_type, "invitetomedia relay", BGW_MAXLEN);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

/* ---------- what writers ask ---------- */

static void
SetStartLockTag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, RELAY_LOCK_KEY1, RELAY_LOCK_KEY2,
						 RELAY_LOCK_FIELD4);
}

static void
OriginName(char *buf, size_t len, Oid seqoid)
{
	snprintf(buf, len, "invitetomedia_%u_%u", MyDatabaseId, seqoid);
}

/*
 * This database's record sequences now, or false if the extension (or one
 * of them) is missing.  Syscache look-ups: cheap enough for every call.
 */
static bool
CurrentSequences(Oid *seqs)
{
	Oid			nsp = get_namespace_oid("invitetomedia", true);
	int			t;
	int			v;

	if (!OidIsValid(nsp))
		return false;
	/* 2.0's counters if they exist, else 1.1's */
	v = OidIsValid(get_relname_relid(relay_sequences_by_schema[1][0], nsp)) ? 1 : 0;
	for (t = 0; t < RT_COUNT; t++)
	{
		seqs[t] = get_relname_relid(relay_sequences_by_schema[v][t], nsp);
		if (!OidIsValid(seqs[t]))
			return false;
	}
	return true;
}

/* Do the three origins of these sequences exist? */
static bool
OriginsExist(const Oid *seqs)
{
	int			t;

	for (t = 0; t < RT_COUNT; t++)
	{
		char		name[NAMEDATALEN * 2];

		OriginName(name, sizeof(name), seqs[t]);
		if (replorigin_by_name(name, true) == InvalidRepOriginId)
			return false;
	}
	return true;
}

/*
 * Is the relay running for exactly these sequences?  A relay started for
 * an earlier extension (dropped and created again) is not ready for the
 * new one's records, whatever its mark says.
 */
static bool
SlotReady(RelaySlot *slot, const Oid *seqs)
{
	if (!pg_atomic_read_u32(&slot->ready))
		return false;
	pg_read_barrier();
	return slot->seq[RT_REDEMPTIONS] == seqs[RT_REDEMPTIONS] &&
		slot->seq[RT_JOINS] == seqs[RT_JOINS] &&
		slot->seq[RT_OUTBOX] == seqs[RT_OUTBOX];
}

static int
MySlot(void)
{
	if (my_slot == -2)
	{
		char	   *db;

		my_slot = -1;
		if (relay_shared == NULL || relay_shared->nslots == 0)
			return my_slot;
		db = get_database_name(MyDatabaseId);
		if (db == NULL)
			return my_slot;
		for (int i = 0; i < relay_shared->nslots; i++)
			if (strcmp(relay_shared->slots[i].dbname, db) == 0)
				my_slot = i;
	}
	return my_slot;
}

bool
ItmRelayAnnounces(void)
{
	int			slot = MySlot();
	LOCKTAG		tag;
	Oid			seqs[RT_COUNT];

	if (slot < 0)
		return false;
	/* a read-only transaction writes no record: its own error comes later */
	if (XactReadOnly || RecoveryInProgress())
		return false;

	if (!CurrentSequences(seqs))
		return false;			/* no records to write: its own error comes */
	if (SlotReady(&relay_shared->slots[slot], seqs))
		return true;

	/*
	 * The relay is not running, or its first start is under way (see "The
	 * start" above).  The lock comes first: the relay holds it while it
	 * creates the origins, so what follows sees them created or not yet.
	 * If they exist, the relay will announce this record: it waits for it.
	 */
	SetStartLockTag(&tag);
	(void) LockAcquire(&tag, ShareLock, false, false);
	if (SlotReady(&relay_shared->slots[slot], seqs))
		return true;
	AcceptInvalidationMessages();
	return OriginsExist(seqs);
}

/* ---------- the worker ---------- */

/* an unsettled bound: the sequences' values, then the next xid */
typedef struct RelayBound
{
	int64		last[RT_COUNT];
	TransactionId next_xid;
} RelayBound;

/* a row to announce */
typedef struct RelayRow
{
	int64		id;				/* the record's id (2.0: its event_seq): the cursor */
	int64		key;			/* the payload's id */
	int32		tenant_id;		/* 2.0: the payload's tenant */
} RelayRow;

typedef struct RelayState
{
	Oid			seq[RT_COUNT];
	RepOriginId origin[RT_COUNT];
	int64		cursor[RT_COUNT];	/* every id <= cursor is done */
	int64		settled[RT_COUNT];	/* every id <= settled may be read */
	int64		read_to[RT_COUNT];	/* this round read every row up to here */
	RelayBound	pending[RELAY_PENDING];
	int			npending;
	RelayRow   *rows[RT_COUNT];
	int			nrows[RT_COUNT];
	MemoryContext round_cxt;
	SPIPlanPtr	read_plan[RT_COUNT];
	SPIPlanPtr	last_plan;
	TimestampTz checked_at;
} RelayState;

static RelayState rs;

static const char *const relay_read_sql_by_schema[2][RT_COUNT] = {{
	"SELECT r.redemption_id::pg_catalog.int8, r.invite_id::pg_catalog.int8"
	"  FROM invitetomedia.redemptions r"
	" WHERE r.redemption_id OPERATOR(pg_catalog.>) $1"
	"   AND r.redemption_id OPERATOR(pg_catalog.<=) $2"
	"   AND r.status::pg_catalog.text OPERATOR(pg_catalog.=) 'ok'::pg_catalog.text"
	" ORDER BY r.redemption_id LIMIT " CppAsString2(RELAY_BATCH),
	"SELECT j.join_id::pg_catalog.int8, j.guest_link_id::pg_catalog.int8"
	"  FROM invitetomedia.guest_link_joins j"
	" WHERE j.join_id OPERATOR(pg_catalog.>) $1"
	"   AND j.join_id OPERATOR(pg_catalog.<=) $2"
	"   AND j.status::pg_catalog.text OPERATOR(pg_catalog.=) 'ok'::pg_catalog.text"
	" ORDER BY j.join_id LIMIT " CppAsString2(RELAY_BATCH),
	"SELECT o.message_id::pg_catalog.int8, o.message_id::pg_catalog.int8"
	"  FROM invitetomedia.outbox o"
	" WHERE o.message_id OPERATOR(pg_catalog.>) $1"
	"   AND o.message_id OPERATOR(pg_catalog.<=) $2"
	" ORDER BY o.message_id LIMIT " CppAsString2(RELAY_BATCH),
}, {
	/* 2.0: the counter's ranges, across tenants; the tenant goes with the id */
	"SELECT r.event_seq::pg_catalog.int8, r.invite_id::pg_catalog.int8,"
	"       r.tenant_id::pg_catalog.int4"
	"  FROM invitetomedia.redemptions r"
	" WHERE r.event_seq OPERATOR(pg_catalog.>) $1"
	"   AND r.event_seq OPERATOR(pg_catalog.<=) $2"
	"   AND r.status::pg_catalog.text OPERATOR(pg_catalog.=) 'ok'::pg_catalog.text"
	" ORDER BY r.event_seq LIMIT " CppAsString2(RELAY_BATCH),
	"SELECT j.event_seq::pg_catalog.int8, j.guest_link_id::pg_catalog.int8,"
	"       j.tenant_id::pg_catalog.int4"
	"  FROM invitetomedia.guest_link_joins j"
	" WHERE j.event_seq OPERATOR(pg_catalog.>) $1"
	"   AND j.event_seq OPERATOR(pg_catalog.<=) $2"
	"   AND j.status::pg_catalog.text OPERATOR(pg_catalog.=) 'ok'::pg_catalog.text"
	" ORDER BY j.event_seq LIMIT " CppAsString2(RELAY_BATCH),
	"SELECT o.event_seq::pg_catalog.int8, o.message_id::pg_catalog.int8,"
	"       o.tenant_id::pg_catalog.int4"
	"  FROM invitetomedia.outbox o"
	" WHERE o.event_seq OPERATOR(pg_catalog.>) $1"
	"   AND o.event_seq OPERATOR(pg_catalog.<=) $2"
	" ORDER BY o.event_seq LIMIT " CppAsString2(RELAY_BATCH),
}};

/* The relay's tables are the events, in the same order. */
StaticAssertDecl(RT_REDEMPTIONS == (int) ITM_EVENT_INVITE_ACCEPTED &&
				 RT_JOINS == (int) ITM_EVENT_GUEST_JOINED &&
				 RT_OUTBOX == (int) ITM_EVENT_MAIL_QUEUED &&
				 RT_COUNT == (int) ITM_EVENT_COUNT,
				 "the relay's tables and the events must match");

const char *
ItmEventChannel(ItmEvent e)
{
	return e == ITM_EVENT_MAIL_QUEUED ? "invitetomedia_email" : "invitetomedia_accepted";
}

char *
ItmEventPayload(ItmEvent e, int64 id)
{
	switch (e)
	{
		case ITM_EVENT_INVITE_ACCEPTED:
			return psprintf("{\"kind\":\"invite\",\"id\":" INT64_FORMAT "}", id);
		case ITM_EVENT_GUEST_JOINED:
			return psprintf("{\"kind\":\"guest_link\",\"id\":" INT64_FORMAT "}", id);
		default:
			return psprintf(INT64_FORMAT, id);
	}
}

void
ItmNotifyEvent(ItmEvent e, int64 id)
{
	Async_Notify(ItmEventChannel(e), ItmEventPayload(e, id));
}

/*
 * 2.0: the tenant's id goes with the record's, so that a listener can
 * follow one tenant (ids only still: any role may LISTEN).
 */
char *
ItmTenantEventPayload(ItmEvent e, int32 tenant_id, int64 id)
{
	switch (e)
	{
		case ITM_EVENT_INVITE_ACCEPTED:
			return psprintf("{\"kind\":\"invite\",\"tenant\":%d,\"id\":" INT64_FORMAT "}",
							tenant_id, id);
		case ITM_EVENT_GUEST_JOINED:
			return psprintf("{\"kind\":\"guest_link\",\"tenant\":%d,\"id\":" INT64_FORMAT "}",
							tenant_id, id);
		default:
			return psprintf("{\"tenant\":%d,\"id\":" INT64_FORMAT "}", tenant_id, id);
	}
}

void
ItmNotifyTenantEvent(ItmEvent e, int32 tenant_id, int64 id)
{
	Async_Notify(ItmEventChannel(e), ItmTenantEventPayload(e, tenant_id, id));
}

/*
 * The shape the relay relies on, checked at the start and every second:
 * the extension at 1.1 or later, and each record sequence in order and
 * shared.  Returns false (with a LOG once) if the extension is missing or
 * too old; raises an error if a sequence was changed.
 */
static bool
CheckShape(bool first)
{
	static bool said_missing = false;
	int			ret;
	int			t;

	ret = SPI_execute("SELECT e.extversion::pg_catalog.text"
					  "  FROM pg_catalog.pg_extension e"
					  " WHERE e.extname OPERATOR(pg_catalog.=) 'invitetomedia'",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "invitetomedia relay: reading pg_extension failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed != 1)
	{
		if (!said_missing)
			ereport(LOG,
					(errmsg("invitetomedia relay: the extension is not installed in database \"%s\"; waiting",
							get_database_name(MyDatabaseId))));
		said_missing = true;
		return false;
	}
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		bool		v2;

		if (v == NULL || strcmp(v, "1.0") == 0 || strcmp(v, "1.0.1") == 0)
		{
			if (!said_missing)
				ereport(LOG,
						(errmsg("invitetomedia relay: database \"%s\" has version %s of the extension, which has no events to relay before 1.1; waiting",
								get_database_name(MyDatabaseId), v ? v : "(null)")));
			said_missing = true;
			return false;
		}
		/* 1.1 and 1.1.1 count with their ids; every later version with event_seq */
		v2 = strncmp(v, "1.", 2) != 0;
		if (first)
			relay_v2 = v2;
		else if (v2 != relay_v2)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("invitetomedia relay: the extension was updated to %s; starting again", v)));
	}
	said_missing = false;

	for (t = 0; t < RT_COUNT; t++)
	{
		static const char *const tables[RT_COUNT] = {"redemptions", "guest_link_joins", "outbox"};
		static const char *const columns_by_schema[2][RT_COUNT] = {
			{"redemption_id", "join_id", "message_id"},
			{"event_seq", "event_seq", "event_seq"},
		};
		const char *const *columns = columns_by_schema[relay_v2 ? 1 : 0];
		Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, BOOLOID};
		Datum		args[4];
		bool		isnull;
		Oid			seq;
		char	   *problem;

		args[0] = CStringGetTextDatum(tables[t]);
		args[1] = CStringGetTextDatum(columns[t]);
		args[2] = CStringGetTextDatum(relay_sequences[t]);
		/* 1.1's ids come from the column's default; 2.0's writers draw event_seq */
		args[3] = BoolGetDatum(!relay_v2);
		ret = SPI_execute_with_args(
									"SELECT s.oid,"
									"  CASE WHEN s.oid IS NULL THEN 'the sequence is missing'"
									"       WHEN q.seqcache OPERATOR(pg_catalog.<>) 1 THEN 'its CACHE is not 1'"
									"       WHEN q.seqincrement OPERATOR(pg_catalog.<=) 0 THEN 'it does not increase'"
									"       WHEN q.seqcycle THEN 'it has CYCLE'"
									"       WHEN a.attnum IS NULL THEN 'the column is missing'"
									"       WHEN NOT $4 THEN NULL"
									"       WHEN d.adbin IS NULL THEN 'the column has no default'"
									"       WHEN pg_catalog.pg_get_expr(d.adbin, d.adrelid)"
									"            OPERATOR(pg_catalog.<>) pg_catalog.format('nextval(%L::regclass)',"
									"              'invitetomedia.' OPERATOR(pg_catalog.||) $3)"
									"         THEN 'the column''s default is not its nextval()'"
									"  END"
									"  FROM (SELECT pg_catalog.to_regclass('invitetomedia.' OPERATOR(pg_catalog.||) $1) AS rel) r"
									"  LEFT JOIN pg_catalog.pg_class s"
									"    ON s.relname OPERATOR(pg_catalog.=) $3::pg_catalog.name"
									"   AND s.relnamespace OPERATOR(pg_catalog.=) 'invitetomedia'::pg_catalog.regnamespace"
									"   AND s.relkind OPERATOR(pg_catalog.=) 'S'"
									"  LEFT JOIN pg_catalog.pg_sequence q ON q.seqrelid OPERATOR(pg_catalog.=) s.oid"
									"  LEFT JOIN pg_catalog.pg_attribute a"
									"    ON a.attrelid OPERATOR(pg_catalog.=) r.rel"
									"   AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name"
									"   AND NOT a.attisdropped"
									"  LEFT JOIN pg_catalog.pg_attrdef d"
									"    ON d.adrelid OPERATOR(pg_catalog.=) a.attrelid"
									"   AND d.adnum OPERATOR(pg_catalog.=) a.attnum",
									4, argtypes, args, NULL, true, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1 ||
			SPI_tuptable->tupdesc->natts != 2 ||
			SPI_gettypeid(SPI_tuptable->tupdesc, 1) != OIDOID)
			elog(ERROR, "invitetomedia relay: the shape check of %s failed", tables[t]);
		problem = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("invitetomedia relay: cannot announce the records of invitetomedia.%s: %s",
							tables[t], problem),
					 errdetail("The relay announces the rows below a bound it reads from invitetomedia.%s: %s must come from it, in order (CACHE 1, increasing, no CYCLE).",
							   relay_sequences[t], relay_v2 ? "event_seq values" : "ids"),
					 relay_v2 ?
					 errhint("Restore the sequence %s and the column %s.event_seq, or remove this database from invitetomedia.relay_databases.",
							 relay_sequences[t], tables[t]) :
					 errhint("Restore the sequence and the default of %s.%s, or remove this database from invitetomedia.relay_databases.",
							 tables[t], columns[t])));
		seq = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
			elog(ERROR, "invitetomedia relay: no sequence for %s", tables[t]);
		if (first)
			rs.seq[t] = seq;
		else if (seq != rs.seq[t])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("invitetomedia relay: the sequence %s was replaced; starting again",
							relay_sequences[t])));
	}
	return true;
}

/* Each sequence's last value now (0 if none was drawn), then the next xid. */
static void
ReadBound(RelayBound *b)
{
	Datum		args[RT_COUNT];
	int			ret;
	int			t;

	if (rs.last_plan == NULL)
	{
		Oid			argtypes[RT_COUNT] = {REGCLASSOID, REGCLASSOID, REGCLASSOID};
		SPIPlanPtr	p;

		p = SPI_prepare("SELECT COALESCE(pg_catalog.pg_sequence_last_value($1), 0)::pg_catalog.int8,"
						"       COALESCE(pg_catalog.pg_sequence_last_value($2), 0)::pg_catalog.int8,"
						"       COALESCE(pg_catalog.pg_sequence_last_value($3), 0)::pg_catalog.int8",
						RT_COUNT, argtypes);
		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "invitetomedia relay: could not prepare the bound query");
		rs.last_plan = p;
	}
	for (t = 0; t < RT_COUNT; t++)
		args[t] = ObjectIdGetDatum(rs.seq[t]);
	ret = SPI_execute_plan(rs.last_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "invitetomedia relay: reading the sequences failed");
	for (t = 0; t < RT_COUNT; t++)
	{
		bool		isnull;

		b->last[t] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, t + 1, &isnull));
		if (isnull)
			elog(ERROR, "invitetomedia relay: a sequence's value is NULL");
		if (b->last[t] < rs.cursor[t])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("invitetomedia relay: invitetomedia.%s went back from " INT64_FORMAT " to " INT64_FORMAT,
							relay_sequences[t], rs.cursor[t], b->last[t]),
					 errhint("Ids below the relay's cursor are never announced.  To start the relay from now, drop its origin: SELECT pg_replication_origin_drop('invitetomedia_%u_%u').",
							 MyDatabaseId, rs.seq[t])));
	}
	/* after the read: any writer that drew an id <= last had an xid before */
	b->next_xid = ReadNextTransactionId();
}

/*
 * Look up, or create at the sequences' current values, the three origins.
 * Called in a transaction, with SPI connected and a snapshot.  Returns
 * true if the start lock was taken (the caller releases it once ready).
 */
static bool
OpenOrigins(void)
{
	char		names[RT_COUNT][NAMEDATALEN * 2];
	bool		all = true;
	int			t;
	int			ret;

	for (t = 0; t < RT_COUNT; t++)
	{
		OriginName(names[t], sizeof(names[t]), rs.seq[t]);
		rs.origin[t] = replorigin_by_name(names[t], true);
		if (rs.origin[t] == InvalidRepOriginId)
			all = false;
	}

	/*
	 * Origins of this database's earlier sequences, or of databases that
	 * are gone, are dropped: they would hold replication-origin slots.
	 */
	ret = SPI_execute("SELECT o.roname::pg_catalog.text FROM pg_catalog.pg_replication_origin o"
					  " WHERE o.roname OPERATOR(pg_catalog.~) '^invitetomedia_[0-9]+_[0-9]+$'",
					  true, 0);
	if (ret == SPI_OK_SELECT)
	{
		List	   *drop = NIL;
		ListCell   *lc;

		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *n = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			unsigned int db;
			unsigned int seq;

			if (n == NULL || sscanf(n, "invitetomedia_%u_%u", &db, &seq) != 2)
				continue;
			if (db == MyDatabaseId)
			{
				bool		current = false;

				for (t = 0; t < RT_COUNT; t++)
					if (strcmp(n, names[t]) == 0)
						current = true;
				if (!current)
					drop = lappend(drop, pstrdup(n));
			}
			else if (get_database_name((Oid) db) == NULL)
				drop = lappend(drop, pstrdup(n));
		}
		foreach(lc, drop)
		{
			ereport(LOG,
					(errmsg("invitetomedia relay: dropping the stale replication origin \"%s\"",
							(char *) lfirst(lc))));
			replorigin_drop_by_name((char *) lfirst(lc), true, true);
		}
	}

	if (all)
	{
		for (t = 0; t < RT_COUNT; t++)
			rs.cursor[t] = (int64) replorigin_get_progress(rs.origin[t], false);
		return false;
	}

	/* the first start: see "The start" above */
	{
		LOCKTAG		tag;
		RelayBound	b;

		/*
		 * Writers in flight hold the lock to their commit, and new ones
		 * queue behind this request: wait a second at most (an idle
		 * transaction must not hold every writer up), then give up and
		 * let the worker's restart try again.
		 */
		SetStartLockTag(&tag);
		SetConfigOption("lock_timeout", "1s", PGC_SUSET, PGC_S_SESSION);
		(void) LockAcquire(&tag, ExclusiveLock, true, false);
		SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_SESSION);
		for (t = 0; t < RT_COUNT; t++)
			rs.cursor[t] = 0;
		ReadBound(&b);
		LockRelationOid(ReplicationOriginRelationId, RowExclusiveLock);
		for (t = 0; t < RT_COUNT; t++)
		{
			if (rs.origin[t] == InvalidRepOriginId)
				rs.origin[t] = replorigin_create(names[t]);
			replorigin_advance(rs.origin[t], (XLogRecPtr) b.last[t],
							   InvalidXLogRecPtr, true, true);
			rs.cursor[t] = b.last[t];
		}
		ereport(LOG,
				(errmsg("invitetomedia relay: announcing the events of database \"%s\" from now on (after %s " INT64_FORMAT ", " INT64_FORMAT ", " INT64_FORMAT ")",
						get_database_name(MyDatabaseId), relay_v2 ? "event_seq" : "ids",
						b.last[0], b.last[1], b.last[2])));
		return true;
	}
}

/* The rows of table t between the cursor and the settled bound. */
static void
ReadRows(RelayTable t)
{
	Datum		args[2];
	int			ret;
	MemoryContext old;

	rs.nrows[t] = 0;
	if (rs.settled[t] <= rs.cursor[t])
		return;
	if (rs.read_plan[t] == NULL)
	{
		Oid			argtypes[2] = {INT8OID, INT8OID};
		/*
		 * A custom plan at every round: a generic plan made while the table
		 * was empty (a fresh install, a purge) is a sequential scan and a
		 * sort, which would then read the whole table 100 times a second
		 * (bench/README.md, "The relay, measured").  The range between the
		 * cursor and the bound is narrow: planned with its values, it is an
		 * index scan of the primary key.
		 */
		SPIPlanPtr	p = SPI_prepare_cursor(relay_read_sql_by_schema[relay_v2 ? 1 : 0][t], 2, argtypes,
										   CURSOR_OPT_CUSTOM_PLAN);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "invitetomedia relay: could not prepare the read of table %d", (int) t);
		rs.read_plan[t] = p;
	}
	args[0] = Int64GetDatum(rs.cursor[t]);
	args[1] = Int64GetDatum(rs.settled[t]);
	ret = SPI_execute_plan(rs.read_plan[t], args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "invitetomedia relay: reading %s's records failed: %s",
			 relay_sequences[t], SPI_result_code_string(ret));
	if (SPI_tuptable->tupdesc->natts != (relay_v2 ? 3 : 2) ||
		SPI_gettypeid(SPI_tuptable->tupdesc, 1) != INT8OID ||
		SPI_gettypeid(SPI_tuptable->tupdesc, 2) != INT8OID ||
		(relay_v2 && SPI_gettypeid(SPI_tuptable->tupdesc, 3) != INT4OID))
		elog(ERROR, "invitetomedia relay: unexpected result shape for %s", relay_sequences[t]);

	old = MemoryContextSwitchTo(rs.round_cxt);
	rs.rows[t] = palloc(sizeof(RelayRow) * Max(SPI_processed, 1));
	MemoryContextSwitchTo(old);
	rs.read_to[t] = rs.settled[t];
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		n1,
					n2,
					n3 = false;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &n1));
		int64		key = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &n2));
		int32		tenant_id = relay_v2 ?
			DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &n3)) : 0;

		if (!n1 && SPI_processed >= RELAY_BATCH)
			rs.read_to[t] = id;	/* a full batch: the next round goes on here */
		if (n1 || n2 || n3)
			continue;			/* a NULL a DBA allowed: nothing to announce */
		rs.rows[t][rs.nrows[t]].id = id;
		rs.rows[t][rs.nrows[t]].key = key;
		rs.rows[t][rs.nrows[t]].tenant_id = tenant_id;
		rs.nrows[t]++;
	}
}

/*
 * Sends table t's rows, one NOTIFY each, in as few transactions as NOTIFY's
 * merging of identical payloads allows; each commit carries the origin's
 * progress up to its last row.
 */
static void
Announce(RelayTable t)
{
	int			i = 0;

	while (i < rs.nrows[t])
	{
		HASHCTL		ctl;
		HTAB	   *sent;
		int64		last = 0;

		StartTransactionCommand();
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64);
		ctl.hcxt = CurTransactionContext;
		sent = hash_create("invitetomedia relay payloads", 256, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		replorigin_session_setup(rs.origin[t], 0);
		replorigin_session_origin = rs.origin[t];
		for (; i < rs.nrows[t]; i++)
		{
			bool		found;

			(void) hash_search(sent, &rs.rows[t][i].key, HASH_ENTER, &found);
			if (found)
				break;			/* NOTIFY would merge it: the next transaction */
			if (relay_v2)
				ItmNotifyTenantEvent((ItmEvent) t, rs.rows[t][i].tenant_id, rs.rows[t][i].key);
			else
				ItmNotifyEvent((ItmEvent) t, rs.rows[t][i].key);
			last = rs.rows[t][i].id;
		}
		replorigin_session_origin_lsn = (XLogRecPtr) last;
		replorigin_session_origin_timestamp = GetCurrentTimestamp();

		/*
		 * The commit record carries the cursor, and it is the only WAL this
		 * transaction writes: PostgreSQL would commit it asynchronously
		 * (nothing else to make durable) and a listener could receive the
		 * batch before the cursor is on disk, to receive it again after a
		 * crash.  So the commit waits for its flush before it is visible.
		 */
		ForceSyncCommit();
		CommitTransactionCommand();
		replorigin_session_reset();
		replorigin_session_origin = InvalidRepOriginId;
		replorigin_session_origin_lsn = InvalidXLogRecPtr;
		replorigin_session_origin_timestamp = 0;
	}
}

/* One round: settle, read, remember a new bound; then announce. */
static void
Round(void)
{
	Snapshot	snap;
	TransactionId xmin;
	int			t;
	int			k;
	bool		check;

	MemoryContextReset(rs.round_cxt);
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "invitetomedia relay: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	snap = GetActiveSnapshot();
	xmin = snap->xmin;

	check = TimestampDifferenceExceeds(rs.checked_at, GetCurrentTimestamp(),
									   RELAY_CHECK_EVERY_MS);
	if (check)
	{
		if (!CheckShape(false))
			elog(ERROR, "invitetomedia relay: the extension went away");
		rs.checked_at = GetCurrentTimestamp();
	}

	/* the bounds every transaction that drew below them has left */
	for (k = 0; k < rs.npending; k++)
	{
		if (!TransactionIdPrecedesOrEquals(rs.pending[k].next_xid, xmin))
			break;
		for (t = 0; t < RT_COUNT; t++)
			rs.settled[t] = Max(rs.settled[t], rs.pending[k].last[t]);
	}
	if (k > 0)
	{
		memmove(&rs.pending[0], &rs.pending[k], sizeof(RelayBound) * (rs.npending - k));
		rs.npending -= k;
	}

	for (t = 0; t < RT_COUNT; t++)
		ReadRows((RelayTable) t);

	/* a new bound; if too many wait (xmin held back), the newest replaces */
	if (rs.npending == RELAY_PENDING)
		rs.npending--;
	ReadBound(&rs.pending[rs.npending++]);

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	for (t = 0; t < RT_COUNT; t++)
	{
		if (rs.nrows[t] > 0)
			Announce((RelayTable) t);
		/* the rows read are announced: the cursor moves past them */
		rs.cursor[t] = Max(rs.cursor[t], rs.read_to[t]);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Wait for the extension, open the origins, mark the database ready. */
static bool
Start(int slot)
{
	bool		locked;
	bool		ok;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "invitetomedia relay: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	ok = CheckShape(true);
	locked = ok ? OpenOrigins() : false;
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	if (!ok)
		return false;
	for (int t = 0; t < RT_COUNT; t++)
	{
		rs.settled[t] = rs.cursor[t];
		rs.read_to[t] = rs.cursor[t];
	}
	rs.npending = 0;
	rs.checked_at = GetCurrentTimestamp();
	for (int t = 0; t < RT_COUNT; t++)
		relay_shared->slots[slot].seq[t] = rs.seq[t];
	pg_write_barrier();
	pg_atomic_write_u32(&relay_shared->slots[slot].ready, 1);
	if (locked)
	{
		LOCKTAG		tag;

		SetStartLockTag(&tag);
		LockRelease(&tag, ExclusiveLock, true);
	}
	return true;
}

void
ItmRelayMain(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	bool		started = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (relay_shared == NULL || slot < 0 || slot >= relay_shared->nslots)
		elog(ERROR, "invitetomedia relay: no slot %d", slot);
	pg_atomic_write_u32(&relay_shared->slots[slot].ready, 0);

	BackgroundWorkerInitializeConnection(relay_shared->slots[slot].dbname, NULL, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "invitetomedia relay", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("invitetomedia relay");

	rs.round_cxt = AllocSetContextCreate(TopMemoryContext, "invitetomedia relay round",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		int			wait = started ? relay_naptime : RELAY_IDLE_MS;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (relay_paused)
			continue;
		if (!started)
		{
			started = Start(slot);
			continue;
		}
		Round();
	}
}
