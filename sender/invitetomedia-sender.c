/*
 * invitetomedia-sender - delivers the invitetomedia email outbox
 *
 * Connects to the database, LISTENs on invitetomedia_email and drains the
 * outbox: at start, on every notification and every --poll seconds.  Each
 * message is claimed with invitetomedia.email_claim(), built as a MIME
 * message (message.c), piped to a sendmail-compatible command (spawn.c)
 * and confirmed with email_sent() or email_failed().
 *
 * From extension version 1.0.1 on, every claim has a number (claim_no) and
 * the confirmations name it: once a lease has run out and another sender
 * has claimed the message again, a late confirmation of the old claim
 * changes nothing ("superseded") instead of making the message due again
 * while the new claimant is still sending it.  Against a database still at
 * 1.0, whose email_claim returns no claim_no, the 1.0 forms are used.
 *
 * Delivery is at least once: a message whose sendmail command succeeded
 * but whose confirmation never reached the database (crash, kill -9,
 * network loss) is claimed again when its lease runs out and sent again.
 * Every copy carries the same Message-ID, <itm-MESSAGE_KEY@DOMAIN>, so the
 * receiving side can drop the duplicate.  The key is a random UUID kept
 * with the message (1.0.1): message ids start again at 1 in every
 * database, reinstall or restored copy, and a receiver that drops
 * duplicates by Message-ID would drop real mail if they were used.
 * Against a 1.0 database, which has no keys, <itm-MESSAGE_ID@DOMAIN>.
 *
 * From extension version 2.0 on (tenants and sites), one sender serves
 * every tenant: where the database has email_claim_all and the sender's
 * role may execute it (a privilege of the platform's sender role), it
 * claims with it and confirms with email_sent_all, email_failed_all and
 * email_release_all, which name each message by its tenant (outbox ids are
 * unique within a tenant only).  A role that may not, but may execute
 * email_claim_sites (a tenant's own sender), claims its tenant's sites with
 * that and confirms with the claim_no forms, which keep to its tenant.
 * Otherwise the 1.x functions are used, which in a 2.0 database serve the
 * default site of the role's tenant; both fallbacks are logged.  Which
 * applies is read from the catalog on every connection and again every
 * --poll seconds (choose_claim).  In 2.0, each message comes with its
 * site's from_address and message_id_domain: From is the site's address
 * when set, else --from; the Message-ID's domain is the site's when set,
 * else --domain.
 *
 * Exit status: 0 when stopped by a signal, or with --once when everything
 * due was delivered and confirmed; 1 with --once when the database could
 * not be reached or a result could not be recorded (a message handed to
 * sendmail without confirmation will be sent again); 64 (EX_USAGE) for a
 * bad command line; 78 (EX_CONFIG) when the database lacks the extension
 * or the role a privilege, which retrying cannot cure.
 *
 * The body holds a live invite link: it is never logged.
 */
#define _GNU_SOURCE				/* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "message.h"
#include "spawn.h"

#define SENDER_VERSION "1.1"
#define CHANNEL "invitetomedia_email"
#define MAX_BACKOFF 30			/* seconds between reconnection attempts, at most */

/* sysexits.h */
#define EXIT_USAGE 64			/* EX_USAGE: the command line is wrong */
#define EXIT_CONFIG 78			/* EX_CONFIG: the database or role is not set up */

/*
 * How many failures in a row that retrying will not cure (see
 * setup_failure_seen) the daemon takes before it gives up.
 */
#define SETUP_FAILURES_MAX 3

static const char *progname = "invitetomedia-sender";

/* options */
static const char *opt_conninfo = NULL;
static const char *opt_sendmail = "/usr/sbin/sendmail -t -i";
static const char *opt_from = "invitetomedia@localhost";
static const char *opt_domain = NULL;
static int	opt_batch = 10;
static int	opt_lease = 300;
static int	opt_poll = 30;
static int	opt_timeout = 60;
static int	opt_once = 0;
static int	opt_verbose = 0;

static itm_identity identity;

/*
 * What the last email_claim result offered: -1 not known yet, 0 nothing
 * new (extension 1.0: no claim_no column, the 1.0 confirmation forms), 1
 * claim numbers only (an early 1.0.1), 2 claim numbers and message keys
 * (1.0.1: email_release and email_failed's permanent come with them).
 * Only kept to log a change once, not per batch.
 */
static int	claim_api = -1;

/*
 * Which claim function the connection uses (choose_claim): the 1.x
 * email_claim, a 2.0 tenant's email_claim_sites, or the platform's
 * email_claim_all.
 */
typedef enum
{
	CLAIM_1X,
	CLAIM_SITES,
	CLAIM_ALL
} claim_fn;

static claim_fn claim_mode = CLAIM_1X;
static int	claim_mode_logged = -1;	/* what was last said about it, -1 nothing */
static unsigned long claim_mode_conn = 0;	/* the connection it was read on */
static double claim_mode_read_at = 0;
static unsigned long conn_generation = 0;	/* counts connections */

/*
 * Failures that retrying will not cure: the extension is not installed in
 * the database (undefined function, schema or table) or the role lacks a
 * privilege.  The same one SETUP_FAILURES_MAX times in a row stops the
 * daemon with EXIT_CONFIG: a service manager then shows a failed unit
 * rather than a sender that looks healthy and sends nothing.  "In a row"
 * ends with a success of the same call: a sender whose email_sent is
 * refused still claims fine, and must not count that as a recovery (each
 * of its messages would be sent again after every lease).
 */
static int	setup_failures = 0;
static char setup_failure[600];	/* "what failed: server message" */
static char setup_failure_what[32];	/* what failed: email_claim, ... */

/*
 * While a message is handed back (hand_back): a refused email_release is
 * done without, and is no reason to stop the sender.
 */
static int	handing_back = 0;

/*
 * --once: messages whose outcome could not be recorded (handed to
 * sendmail but not confirmed: they will be sent again; or failed without
 * the failure recorded).  Any makes the exit status 1, so that cron says so.
 */
static int	unsettled = 0;

/*
 * While a claim-aware confirmation runs, the server's WARNINGs are held here
 * instead of logged: the one that says a claim was superseded is told by
 * the message's own log line.  Anything else is logged after the call.
 */
static int	hold_warnings = 0;
static int	held_warnings = 0;
static char held_warning[512];

/* signals */
static volatile sig_atomic_t stop_requested = 0;
static volatile sig_atomic_t stop_signal = 0;
static int	wake_pipe[2] = {-1, -1};

/* outcome of talking to the database */
typedef enum
{
	DB_OK,
	DB_ERROR,					/* a query failed, the connection is fine */
	DB_BROKEN,					/* a query failed in a way retrying will not
								 * cure (setup_failure_seen) */
	DB_LOST						/* the connection is gone */
} db_status;

static void
log_line(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
log_line(const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", progname, buf);
}

/* a libpq error message on one line */
static const char *
one_line(const char *msg, char *buf, size_t buflen)
{
	size_t		o = 0;

	if (msg == NULL)
		msg = "";
	for (; *msg && o + 1 < buflen; msg++)
	{
		/* control characters (newlines, tabs) become one space */
		if ((unsigned char) *msg < 0x20 || *msg == ' ')
		{
			if (o > 0 && buf[o - 1] != ' ')
				buf[o++] = ' ';
		}
		else
			buf[o++] = *msg;
	}
	while (o > 0 && buf[o - 1] == ' ')
		o--;
	buf[o] = '\0';
	return buf;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
handle_stop(int signo)
{
	int			save_errno = errno;
	ssize_t		rc;

	stop_requested = 1;
	stop_signal = signo;
	rc = write(wake_pipe[1], "x", 1);
	(void) rc;
	errno = save_errno;
}

static void
setup_signals(void)
{
	struct sigaction sa;
	sigset_t	none;

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		log_line("could not create a pipe: %s", strerror(errno));
		exit(1);
	}

	/*
	 * What the parent left us is not trusted.  A SIGCHLD it ignored would
	 * make the kernel reap the sendmail commands itself, so that waitpid
	 * fails and every message looks lost and is sent again; a mask it
	 * blocked would keep SIGTERM from stopping the sender.  Both are
	 * inherited across exec.
	 */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;			/* no SA_RESTART: waits return early */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* a closed terminal or a "reload" must not drop claimed messages */
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static const char *
signal_name(int signo)
{
	switch (signo)
	{
		case SIGTERM:
			return "SIGTERM";
		case SIGINT:
			return "SIGINT";
		case SIGHUP:
			return "SIGHUP";
		default:
			return "a signal";
	}
}

/*
 * Gives descriptors 0, 1 and 2 a file if they have none (/dev/null): a
 * program started with them closed would otherwise get its first pipe or
 * the database socket there, and a log line to stderr would go into the
 * database protocol stream.
 */
static void
ensure_standard_fds(void)
{
	for (int fd = 0; fd <= 2; fd++)
	{
		int			nfd;

		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		nfd = open("/dev/null", O_RDWR);
		if (nfd < 0)
			_exit(71);			/* EX_OSERR; nowhere to say why */
		if (nfd != fd)
		{
			if (dup2(nfd, fd) < 0)
				_exit(71);
			close(nfd);
		}
	}
}

static void
drain_wake_pipe(void)
{
	char		buf[64];

	while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * Waits until fd (if >= 0) is readable, a stop signal arrives or seconds
 * pass.  Returns 1 if fd is readable, 0 otherwise.
 */
static int
wait_for(int fd, double seconds)
{
	struct pollfd fds[2];
	int			nfds = 0;
	int			ms;

	if (stop_requested)
		return 0;
	if (seconds < 0)
		seconds = 0;
	ms = seconds > INT_MAX / 1000 ? INT_MAX : (int) (seconds * 1000);
	fds[nfds].fd = wake_pipe[0];
	fds[nfds].events = POLLIN;
	nfds++;
	if (fd >= 0)
	{
		fds[nfds].fd = fd;
		fds[nfds].events = POLLIN;
		nfds++;
	}
	if (poll(fds, nfds, ms) <= 0)
		return 0;
	if (fds[0].revents)
		drain_wake_pipe();
	return fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

/*
 * A server error or notice on one line, tersely: "ERROR: primary; HINT:
 * hint".  Never the DETAIL or CONTEXT: they can quote a row's contents (an
 * address, a link).  A message made by libpq itself (a lost connection)
 * has no fields: its text is used, on one line.
 */
static const char *
server_message(const PGresult *res, char *buf, size_t buflen)
{
	const char *severity = res ? PQresultErrorField(res, PG_DIAG_SEVERITY) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	char		p[400];
	char		h[400];

	if (primary == NULL)
		return one_line(res ? PQresultErrorMessage(res) : "", buf, buflen);
	one_line(primary, p, sizeof(p));
	if (hint != NULL)
		one_line(hint, h, sizeof(h));
	/* cut short if need be: the start says the most */
	if (snprintf(buf, buflen, "%s%s%s%s%s", severity ? severity : "", severity ? ": " : "",
				 p, hint ? "; HINT: " : "", hint ? h : "") < 0)
		snprintf(buf, buflen, "%s", p);
	return buf;
}

/* server notices and errors, on one line with our prefix */
static void
notice_receiver(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	char		buf[512];

	(void) arg;
	if (hold_warnings && severity != NULL && strcmp(severity, "WARNING") == 0)
	{
		if (held_warnings++ == 0)
			server_message(res, held_warning, sizeof(held_warning));
		return;
	}
	log_line("server: %s", server_message(res, buf, sizeof(buf)));
}

/* starts holding the server's WARNINGs (see hold_warnings) */
static void
hold_server_warnings(void)
{
	hold_warnings = 1;
	held_warnings = 0;
	held_warning[0] = '\0';
}

/*
 * Stops holding WARNINGs; logs those held unless the caller has explained
 * them (explained).  Returns how many were held.
 */
static int
release_server_warnings(int explained)
{
	int			n = held_warnings;

	hold_warnings = 0;
	held_warnings = 0;
	if (n > 0 && !explained)
	{
		if (n == 1)
			log_line("server: %s", held_warning);
		else
			log_line("server: %s (and %d more warnings)", held_warning, n - 1);
	}
	return n;
}

/*
 * Connection settings the sender supplies when neither the connection
 * string nor the environment sets them.  Without them, connecting to a
 * host that does not answer waits for the kernel's TCP timeout (minutes),
 * and a connection whose server vanished without a word (a failover, a
 * dropped NAT entry, a cable) looks open for hours: the sender waits on
 * LISTEN for notifications that never come, or on a reply that never
 * comes.  With them a dead peer is noticed within about a minute and the
 * sender reconnects.  (libpq ignores the TCP ones on a Unix socket.)
 */
static const struct
{
	const char *keyword;
	const char *value;
}			conn_fallbacks[] = {
	{"connect_timeout", "10"},	/* seconds per host to connect */
	{"keepalives", "1"},
	{"keepalives_idle", "30"},	/* seconds of silence before probing */
	{"keepalives_interval", "10"},	/* seconds between probes */
	{"keepalives_count", "3"},	/* probes unanswered: the peer is gone */
	{"tcp_user_timeout", "60000"},	/* milliseconds sent data may wait for
									 * an acknowledgement */
};

#define N_FALLBACKS (sizeof(conn_fallbacks) / sizeof(conn_fallbacks[0]))

/* PQconnectdbParams' arrays: the fallbacks missing, then the user's */
static const char *conn_keywords[N_FALLBACKS + 3];
static const char *conn_values[N_FALLBACKS + 3];
static int	conn_fallback_added[N_FALLBACKS];

/* libpq's own rule: a URI, or anything with an "=", is a connection string */
static int
is_connection_string(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 ||
		strncmp(s, "postgres://", 11) == 0 || strchr(s, '=') != NULL;
}

static int
option_is_set(const PQconninfoOption *opts, const char *keyword)
{
	for (; opts != NULL && opts->keyword != NULL; opts++)
	{
		if (strcmp(opts->keyword, keyword) == 0)
			return opts->val != NULL && opts->val[0] != '\0';
	}
	return 0;
}

/*
 * Fills conn_keywords and conn_values: each fallback the user did not set,
 * in CONNINFO or through the environment (PQconndefaults: PG* variables
 * such as PGCONNECT_TIMEOUT, and a service file named by PGSERVICE), then
 * CONNINFO itself as an expanded dbname, so that whatever it sets wins
 * anyway.  Returns -1 with a message in err if CONNINFO does not parse:
 * every connection attempt would fail the same way.
 */
static int
prepare_connection(char *err, size_t errlen)
{
	PQconninfoOption *given = NULL;
	PQconninfoOption *defaults;
	int			k = 0;

	if (opt_conninfo != NULL && is_connection_string(opt_conninfo))
	{
		char	   *msg = NULL;

		given = PQconninfoParse(opt_conninfo, &msg);
		if (given == NULL)
		{
			char		buf[400];

			snprintf(err, errlen, "invalid connection string: %s",
					 msg ? one_line(msg, buf, sizeof(buf)) : "out of memory");
			PQfreemem(msg);
			return -1;
		}
	}
	defaults = PQconndefaults();
	for (size_t i = 0; i < N_FALLBACKS; i++)
	{
		conn_fallback_added[i] = !option_is_set(given, conn_fallbacks[i].keyword) &&
			!option_is_set(defaults, conn_fallbacks[i].keyword);
		if (conn_fallback_added[i])
		{
			conn_keywords[k] = conn_fallbacks[i].keyword;
			conn_values[k++] = conn_fallbacks[i].value;
		}
	}
	conn_keywords[k] = "fallback_application_name";
	conn_values[k++] = "invitetomedia-sender";
	if (opt_conninfo != NULL)
	{
		conn_keywords[k] = "dbname";
		conn_values[k++] = opt_conninfo;
	}
	conn_keywords[k] = NULL;
	conn_values[k] = NULL;
	PQconninfoFree(given);
	PQconninfoFree(defaults);
	return 0;
}

/* --verbose: the timeouts in effect, and which the sender added */
static void
log_connection_settings(PGconn *conn)
{
	PQconninfoOption *opts = PQconninfo(conn);
	char		set[300] = "";
	char		added[300] = "";

	for (size_t i = 0; i < N_FALLBACKS; i++)
	{
		char	   *list = conn_fallback_added[i] ? added : set;
		const char *v = NULL;

		for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		{
			if (strcmp(o->keyword, conn_fallbacks[i].keyword) == 0)
				v = o->val;
		}
		snprintf(list + strlen(list), 300 - strlen(list), "%s%s=%s",
				 list[0] ? " " : "", conn_fallbacks[i].keyword, v ? v : "(none)");
	}
	log_line("connection timeouts: %s%s%s%s%s", set, set[0] ? " as set" : "",
			 set[0] && added[0] ? "; " : "", added, added[0] ? " added by the sender" : "");
	PQconninfoFree(opts);
}

static PGconn *
connect_db(void)
{
	static int	logged_settings = 0;
	PGconn	   *conn;
	char		buf[512];

	conn = PQconnectdbParams(conn_keywords, conn_values, 1);
	if (conn == NULL)
	{
		log_line("could not connect: out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		log_line("could not connect: %s", one_line(PQerrorMessage(conn), buf, sizeof(buf)));
		PQfinish(conn);
		return NULL;
	}
	conn_generation++;
	PQsetNoticeReceiver(conn, notice_receiver, NULL);
	/* names, subjects and bodies are handled as UTF-8 */
	if (PQsetClientEncoding(conn, "UTF8") != 0)
	{
		log_line("could not set client_encoding to UTF8: %s",
				 one_line(PQerrorMessage(conn), buf, sizeof(buf)));
		PQfinish(conn);
		return NULL;
	}
	if (opt_verbose && !logged_settings)
	{
		log_connection_settings(conn);
		logged_settings = 1;
	}
	return conn;
}

/*
 * What to do about an error that retrying will not cure, by SQLSTATE; NULL
 * for any other error.
 */
static const char *
setup_advice(const char *sqlstate)
{
	if (sqlstate == NULL)
		return NULL;
	if (strcmp(sqlstate, "42883") == 0 ||	/* undefined_function */
		strcmp(sqlstate, "3F000") == 0 ||	/* invalid_schema_name */
		strcmp(sqlstate, "42P01") == 0) /* undefined_table */
		return "is the extension installed in this database? Install it (CREATE EXTENSION invitetomedia) or point the sender at the database that has it";
	if (strcmp(sqlstate, "42501") == 0) /* insufficient_privilege */
		return "the sender's role lacks a privilege: grant what the README's section \"A database role for the sender\" grants";
	return NULL;
}

/* advice for an error that may pass (the server is a standby, for now) */
static const char *
other_advice(const char *sqlstate)
{
	if (sqlstate != NULL && strcmp(sqlstate, "25006") == 0) /* read_only_sql_transaction */
		return "the server is read-only (a standby?): connect to the primary, e.g. with target_session_attrs=read-write in the connection string";
	return NULL;
}

/* counts a failure that retrying will not cure (see setup_failures) */
static void
setup_failure_seen(const char *what, const char *message)
{
	char		key[sizeof(setup_failure)];

	snprintf(key, sizeof(key), "%s: %s", what, message);
	if (setup_failures > 0 && strcmp(key, setup_failure) == 0)
		setup_failures++;
	else
	{
		snprintf(setup_failure, sizeof(setup_failure), "%s", key);
		snprintf(setup_failure_what, sizeof(setup_failure_what), "%s", what);
		setup_failures = 1;
	}
}

static db_status
result_status(PGconn *conn, PGresult *res, ExecStatusType expected, const char *what)
{
	char		buf[512];
	const char *sqlstate;
	const char *advice;

	if (res != NULL && PQresultStatus(res) == expected)
	{
		/* the call that failed for good works now */
		if (setup_failures > 0 && strcmp(what, setup_failure_what) == 0)
			setup_failures = 0;
		return DB_OK;
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		log_line("connection lost during %s: %s", what,
				 one_line(PQerrorMessage(conn), buf, sizeof(buf)));
		return DB_LOST;
	}
	if (res == NULL)
	{
		log_line("%s failed: %s", what, one_line(PQerrorMessage(conn), buf, sizeof(buf)));
		return DB_ERROR;
	}
	server_message(res, buf, sizeof(buf));
	sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if ((advice = setup_advice(sqlstate)) != NULL)
	{
		log_line("%s failed: %s; %s", what, buf, advice);
		if (!handing_back)
			setup_failure_seen(what, buf);
		return DB_BROKEN;
	}
	advice = other_advice(sqlstate);
	log_line("%s failed: %s%s%s", what, buf, advice ? "; " : "", advice ? advice : "");
	return DB_ERROR;
}

/* what a confirmation found */
typedef enum
{
	CONFIRM_DONE,				/* sent, the failure recorded (pending, dead),
								 * or handed back */
	CONFIRM_NOT_QUEUED,			/* already sent, dead, or gone (invite revoked) */
	CONFIRM_SUPERSEDED			/* our claim is no longer current: another
								 * sender claimed the message after our lease
								 * ran out, and owns it now */
} confirm_outcome;

/*
 * One claimed message: the columns of an email_claim row.  claim_no is NULL
 * when the database is at 1.0 (no claim numbers).  ref is what goes into
 * the Message-ID: the message key, or the id where there are no keys (1.0);
 * NULL if the key column is there but empty, which builds no message.
 * release says whether the database has email_release and the permanent
 * form of email_failed (it returned keys, 1.0.1).
 */
typedef struct
{
	const char *id;
	const char *to_email;
	const char *to_name;
	const char *subject;
	const char *body;
	const char *claim_no;
	const char *ref;
	int			release;
	/* 2.0 (email_claim_sites, email_claim_all); NULL before */
	const char *tenant_id;
	const char *site_id;
	const char *from_address;	/* NULL: --from */
	const char *message_id_domain;	/* NULL: --domain */
	claim_fn	fn;				/* the claim: which confirmations apply */
	char		label[160];		/* the message in logs: "ID", or "ID (tenant
								 * T, site S)" in 2.0 */
} claimed_message;

/* the positions of email_claim's columns in a result, by name */
typedef struct
{
	int			message_id;
	int			to_email;
	int			to_name;
	int			subject;
	int			body;
	int			claim_no;		/* -1: extension 1.0, no claim numbers */
	int			message_key;	/* -1: no message keys (1.0, early 1.0.1) */
	int			tenant_id;		/* -1: before 2.0 */
	int			site_id;
	int			from_address;
	int			message_id_domain;
} claim_columns;

/*
 * email_sent(), with the claim number when there is one.  The claim-aware
 * form returns false both when the message is no longer queued (already
 * sent, by whichever claim, dead, or gone) and when the claim was
 * superseded while the message is still unsent; only the latter comes with
 * a WARNING.
 */
static db_status
confirm_sent(PGconn *conn, const claimed_message *m, confirm_outcome *outcome)
{
	const char *params[2] = {m->id, m->claim_no};
	PGresult   *res;
	db_status	st;
	int			marked;
	int			warnings = 0;

	if (m->fn == CLAIM_ALL)
	{
		const char *all_params[3] = {m->tenant_id, m->id, m->claim_no};

		hold_server_warnings();
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_sent_all($1::pg_catalog.int4, $2::pg_catalog.int8, $3::pg_catalog.int4)",
						   3, NULL, all_params, NULL, NULL, 0);
	}
	else if (m->claim_no != NULL)
	{
		hold_server_warnings();
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_sent($1::pg_catalog.int8, $2::pg_catalog.int4)",
						   2, NULL, params, NULL, NULL, 0);
	}
	else
		res = PQexecParams(conn, "SELECT invitetomedia.email_sent($1::pg_catalog.int8)",
						   1, NULL, params, NULL, NULL, 0);
	st = result_status(conn, res, PGRES_TUPLES_OK,
					   m->fn == CLAIM_ALL ? "email_sent_all" : "email_sent");
	marked = (st == DB_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
			  strcmp(PQgetvalue(res, 0, 0), "t") == 0);
	if (m->claim_no != NULL)
		warnings = release_server_warnings(st == DB_OK && !marked);
	if (marked)
		*outcome = CONFIRM_DONE;
	else if (st == DB_OK && warnings > 0)
		*outcome = CONFIRM_SUPERSEDED;
	else
		*outcome = CONFIRM_NOT_QUEUED;
	PQclear(res);
	return st;
}

/*
 * email_failed(), with the claim number when there is one, and permanent
 * (dead at once) where the database has it: against an older one a
 * permanent failure is recorded as an ordinary one.  state receives pending
 * or dead when the failure was recorded (*outcome CONFIRM_DONE).
 */
static db_status
confirm_failed(PGconn *conn, const claimed_message *m, const char *error,
			   int permanent, confirm_outcome *outcome, char *state, size_t statelen)
{
	const char *params[4] = {m->id, error, m->claim_no, permanent ? "true" : "false"};
	PGresult   *res;
	db_status	st;

	if (m->fn == CLAIM_ALL)
	{
		const char *all_params[5] = {m->tenant_id, m->id, error, m->claim_no,
		permanent ? "true" : "false"};

		hold_server_warnings();
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_failed_all($1::pg_catalog.int4, $2::pg_catalog.int8, $3::pg_catalog.text, $4::pg_catalog.int4, $5::pg_catalog.bool)",
						   5, NULL, all_params, NULL, NULL, 0);
	}
	else if (m->claim_no != NULL)
	{
		hold_server_warnings();
		if (m->release)
			res = PQexecParams(conn,
							   "SELECT invitetomedia.email_failed($1::pg_catalog.int8, $2::pg_catalog.text, $3::pg_catalog.int4, $4::pg_catalog.bool)",
							   4, NULL, params, NULL, NULL, 0);
		else
			res = PQexecParams(conn,
							   "SELECT invitetomedia.email_failed($1::pg_catalog.int8, $2::pg_catalog.text, $3::pg_catalog.int4)",
							   3, NULL, params, NULL, NULL, 0);
	}
	else
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_failed($1::pg_catalog.int8, $2::pg_catalog.text)",
						   2, NULL, params, NULL, NULL, 0);
	st = result_status(conn, res, PGRES_TUPLES_OK,
					   m->fn == CLAIM_ALL ? "email_failed_all" : "email_failed");
	state[0] = '\0';
	*outcome = CONFIRM_NOT_QUEUED;
	if (st == DB_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
	{
		const char *v = PQgetvalue(res, 0, 0);

		if (strcmp(v, "superseded") == 0)
			*outcome = CONFIRM_SUPERSEDED;
		else
		{
			*outcome = CONFIRM_DONE;
			snprintf(state, statelen, "%s", v);
		}
	}
	if (m->claim_no != NULL)
		release_server_warnings(*outcome == CONFIRM_SUPERSEDED);
	PQclear(res);
	return st;
}

/*
 * Hands back a claimed message that was not attempted (the sender is
 * stopping, its lease ran short, or an error stopped the batch); why is
 * the error recorded where email_failed has to do.  With email_release (1.0.1) it is due
 * at once and its claim's attempt is not counted: stopping and starting
 * the sender cannot use up a message's attempts untried, nor hold it back
 * for the retry delay.  Against an older database, or if the call is
 * refused, it is recorded as a failure (email_failed), as up to 1.0.1: due
 * after the retry delay, the attempt counted.  *outcome is CONFIRM_DONE if
 * it was handed back, CONFIRM_SUPERSEDED if the claim is no longer ours
 * (claimed again by another sender, or no longer queued: email_release
 * does not tell these apart).
 */
static int	no_release = 0;	/* email_release was refused: do without */

static db_status
hand_back(PGconn *conn, const claimed_message *m, const char *why,
		  confirm_outcome *outcome)
{
	db_status	st;
	char		state[32];

	handing_back = 1;
	if (m->release && !no_release)
	{
		const char *params[2] = {m->id, m->claim_no};
		const char *all_params[3] = {m->tenant_id, m->id, m->claim_no};
		PGresult   *res;

		if (m->fn == CLAIM_ALL)
			res = PQexecParams(conn,
							   "SELECT invitetomedia.email_release_all($1::pg_catalog.int4, $2::pg_catalog.int8, $3::pg_catalog.int4)",
							   3, NULL, all_params, NULL, NULL, 0);
		else
			res = PQexecParams(conn,
							   "SELECT invitetomedia.email_release($1::pg_catalog.int8, $2::pg_catalog.int4)",
							   2, NULL, params, NULL, NULL, 0);
		st = result_status(conn, res, PGRES_TUPLES_OK,
						   m->fn == CLAIM_ALL ? "email_release_all" : "email_release");
		if (st == DB_OK)
			*outcome = (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
						strcmp(PQgetvalue(res, 0, 0), "t") == 0)
				? CONFIRM_DONE : CONFIRM_SUPERSEDED;
		PQclear(res);
		if (st != DB_BROKEN)
		{
			handing_back = 0;
			return st;
		}
		log_line("handing messages back with email_failed instead (they count an attempt and wait for the retry delay)");
		no_release = 1;
	}
	st = confirm_failed(conn, m, why, 0, outcome, state, sizeof(state));
	if (*outcome == CONFIRM_NOT_QUEUED)
		*outcome = CONFIRM_SUPERSEDED;
	handing_back = 0;
	return st;
}

/* builds, pipes and confirms one claimed message */
static db_status
deliver_one(PGconn *conn, const claimed_message *m)
{
	char		masked[300];
	char		err[600];
	char		state[32];
	char	   *data = NULL;
	size_t		len = 0;
	int			built;
	int			failed;
	int			permanent = 0;
	confirm_outcome outcome;
	db_status	st;
	itm_identity site_identity;

	itm_mask_address(m->to_email, masked, sizeof(masked));
	if (m->from_address == NULL && m->message_id_domain == NULL)
		built = itm_build_message(&identity, m->ref, m->to_email, m->to_name,
								  m->subject, m->body, &data, &len, err, sizeof(err));
	else if (itm_identity_for_site(&site_identity, &identity, m->from_address,
								   m->message_id_domain, err, sizeof(err)) != 0)
		built = -3;				/* the site's configuration: it can be mended */
	else
	{
		built = itm_build_message(&site_identity, m->ref, m->to_email, m->to_name,
								  m->subject, m->body, &data, &len, err, sizeof(err));
		itm_identity_free(&site_identity);
	}
	if (built == 0)
	{
		itm_send_result sent = itm_run_sendmail(opt_sendmail, data, len, opt_timeout,
												err, sizeof(err));

		failed = sent != ITM_SEND_OK;
		permanent = sent == ITM_SEND_PERMFAIL;
	}
	else
	{
		/* a row that makes no message (an invalid address) never will */
		failed = 1;
		permanent = built == -1;
	}
	if (data != NULL)
	{
		memset(data, 0, len);	/* it held the live link */
		free(data);
	}

	/*
	 * A superseded claim is not confirmed again: the sender that holds the
	 * newer claim confirms the message, and nothing we could retry would
	 * change that.
	 */
	if (!failed)
	{
		st = confirm_sent(conn, m, &outcome);
		if (st != DB_OK)
		{
			log_line("message %s to %s: handed to sendmail, NOT confirmed (it will be sent again after its lease)",
					 m->label, masked);
			unsettled++;
		}
		else if (outcome == CONFIRM_DONE)
			log_line("message %s to %s: sent", m->label, masked);
		else if (outcome == CONFIRM_SUPERSEDED)
			log_line("message %s to %s: sent, but superseded (another sender claimed it after our lease ran out)",
					 m->label, masked);
		else
			log_line("message %s to %s: sent, but it was no longer queued (sent by another sender, or the invite was revoked)",
					 m->label, masked);
		return st;
	}

	st = confirm_failed(conn, m, err, permanent, &outcome, state, sizeof(state));
	if (st != DB_OK)
	{
		log_line("message %s to %s: failed: %s (failure NOT recorded)", m->label, masked, err);
		unsettled++;
	}
	else if (outcome == CONFIRM_SUPERSEDED)
		log_line("message %s to %s: failed, superseded (another sender claimed it after our lease ran out): %s",
				 m->label, masked, err);
	else if (strcmp(state, "dead") == 0 && permanent)
		log_line("message %s to %s: failed permanently, dead: %s", m->label, masked, err);
	else if (strcmp(state, "dead") == 0)
		log_line("message %s to %s: failed, dead (no more attempts): %s", m->label, masked, err);
	else if (strcmp(state, "pending") == 0)
		log_line("message %s to %s: failed, will retry: %s", m->label, masked, err);
	else
		log_line("message %s to %s: failed, no longer queued: %s", m->label, masked, err);
	return st;
}

/*
 * Finds email_claim's columns in res by name.  "SELECT *" gives five at
 * extension version 1.0 and claim_no and message_key as well from 1.0.1
 * on, so each result tells which confirmation forms apply, without another
 * round trip and even after an ALTER EXTENSION UPDATE under a running
 * sender.  Returns -1 if one of the 1.0 columns is missing.
 */
static int
find_claim_columns(const PGresult *res, claim_columns *c)
{
	int			api;

	c->message_id = PQfnumber(res, "message_id");
	c->to_email = PQfnumber(res, "to_email");
	c->to_name = PQfnumber(res, "to_name");
	c->subject = PQfnumber(res, "subject");
	c->body = PQfnumber(res, "body");
	c->claim_no = PQfnumber(res, "claim_no");
	c->message_key = PQfnumber(res, "message_key");
	c->tenant_id = PQfnumber(res, "tenant_id");
	c->site_id = PQfnumber(res, "site_id");
	c->from_address = PQfnumber(res, "from_address");
	c->message_id_domain = PQfnumber(res, "message_id_domain");
	if (c->message_id < 0 || c->to_email < 0 || c->to_name < 0 ||
		c->subject < 0 || c->body < 0)
		return -1;
	/* keys without claim numbers: no such version; use neither */
	if (c->claim_no < 0)
		c->message_key = -1;

	/* said once, and again only if the database changes under us */
	api = c->claim_no < 0 ? 0 : c->message_key < 0 ? 1 : 2;
	if (api != claim_api)
	{
		if (api == 0)
			log_line("email_claim returns no claim numbers (extension version 1.0): confirming by message id alone; update the extension to 1.0.1 so that a late confirmation cannot disturb a newer claim");
		else if (api == 1)
			log_line("email_claim returns claim numbers but no message keys: Message-IDs carry the message id, which another database can repeat; update the extension");
		else if (claim_api >= 0 || opt_verbose)
			log_line("email_claim returns claim numbers: confirmations name their claim, Message-IDs carry the message key");
		claim_api = api;
	}
	return 0;
}

static const char *
value_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/*
 * Row of an email_claim (email_claim_sites, email_claim_all) result, as a
 * claimed_message pointing into res.  Returns -1 if a 2.0 row lacks its
 * tenant or claim number: such a row cannot be confirmed.
 */
static int
claimed_row(const PGresult *res, int row, const claim_columns *c, claim_fn fn,
			claimed_message *m)
{
	m->id = PQgetvalue(res, row, c->message_id);
	m->to_email = value_or_null(res, row, c->to_email);
	m->to_name = value_or_null(res, row, c->to_name);
	m->subject = value_or_null(res, row, c->subject);
	m->body = value_or_null(res, row, c->body);
	m->claim_no = c->claim_no >= 0 ? value_or_null(res, row, c->claim_no) : NULL;
	m->release = c->message_key >= 0;
	m->ref = m->release ? value_or_null(res, row, c->message_key) : m->id;
	m->fn = fn;
	m->tenant_id = NULL;
	m->site_id = NULL;
	m->from_address = NULL;
	m->message_id_domain = NULL;
	if (fn == CLAIM_1X)
	{
		snprintf(m->label, sizeof(m->label), "%s", m->id);
		return 0;
	}
	m->tenant_id = value_or_null(res, row, c->tenant_id);
	m->site_id = value_or_null(res, row, c->site_id);
	m->from_address = value_or_null(res, row, c->from_address);
	m->message_id_domain = value_or_null(res, row, c->message_id_domain);
	{
		char		site[80];

		one_line(m->site_id ? m->site_id : "?", site, sizeof(site));
		snprintf(m->label, sizeof(m->label), "%s (tenant %s, site %s)", m->id,
				 m->tenant_id ? m->tenant_id : "?", site);
	}
	return m->tenant_id == NULL || m->claim_no == NULL ? -1 : 0;
}

/*
 * Reads from the catalog which claim function this connection uses
 * (claim_fn), on a new connection and again every --poll seconds, so that
 * an ALTER EXTENSION UPDATE or a GRANT under a running sender is followed.
 * A catalog query: it works whether or not the extension is there, and
 * the role needs no privilege for it.  Each change is logged once.
 */
static db_status
choose_claim(PGconn *conn)
{
	PGresult   *res;
	db_status	st;
	int			has_all;
	int			can_all;
	int			can_sites;
	claim_fn	fn;
	int			said;

	if (claim_mode_conn == conn_generation && now_seconds() - claim_mode_read_at < opt_poll)
		return DB_OK;
	res = PQexec(conn,
				 "SELECT COALESCE(pg_catalog.bool_or(p.proname OPERATOR(pg_catalog.=) 'email_claim_all'), false),"
				 "       COALESCE(pg_catalog.bool_or(p.proname OPERATOR(pg_catalog.=) 'email_claim_all'"
				 "           AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')), false),"
				 "       COALESCE(pg_catalog.bool_or(p.proname OPERATOR(pg_catalog.=) 'email_claim_sites'"
				 "           AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')), false)"
				 "  FROM pg_catalog.pg_proc p"
				 "  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace"
				 " WHERE n.nspname OPERATOR(pg_catalog.=) 'invitetomedia'"
				 "   AND p.proname OPERATOR(pg_catalog.=) ANY ('{email_claim_all,email_claim_sites}'::pg_catalog.name[])"
				 "   AND p.proargtypes OPERATOR(pg_catalog.=) '23 1186'::pg_catalog.oidvector");
	st = result_status(conn, res, PGRES_TUPLES_OK, "choosing the claim function");
	if (st != DB_OK)
	{
		PQclear(res);
		return st;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 3)
	{
		log_line("choosing the claim function failed: an unexpected result");
		PQclear(res);
		return DB_ERROR;
	}
	has_all = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	can_all = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	can_sites = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	PQclear(res);
	fn = can_all ? CLAIM_ALL : can_sites ? CLAIM_SITES : CLAIM_1X;
	/* what to say: 0 nothing (1.x), 1 every tenant, 2 and 3 fallbacks */
	said = fn == CLAIM_ALL ? 1 : fn == CLAIM_SITES ? 2 : has_all ? 3 : 0;
	if (said != claim_mode_logged)
	{
		if (said == 1)
			log_line("extension 2.0: serving every tenant (email_claim_all); From and the Message-ID's domain are each site's where it sets them");
		else if (said == 2)
			log_line("extension 2.0, but this role may not execute email_claim_all: delivering its own tenant's mail only (email_claim_sites); to serve every tenant, grant the platform's sender role EXECUTE on email_claim_all, email_sent_all, email_failed_all and email_release_all");
		else if (said == 3)
			log_line("extension 2.0, but this role may execute neither email_claim_all nor email_claim_sites: delivering only the default site of its tenant (email_claim); to serve every tenant, grant the platform's sender role EXECUTE on email_claim_all, email_sent_all, email_failed_all and email_release_all");
		claim_mode_logged = said;
	}
	claim_mode = fn;
	claim_mode_conn = conn_generation;
	claim_mode_read_at = now_seconds();
	return DB_OK;
}

/*
 * Claims and delivers everything due, batch by batch.
 *
 * A message is only started while its lease has time left (at least
 * min(--timeout, lease/2) seconds): past that, another sender may claim it
 * again.  Messages skipped that way are handed back (hand_back) where the
 * database has email_release, so that they are claimed again at once;
 * otherwise they stay claimed and become due again when their lease runs
 * out.  On a stop signal, or a failure that retrying will not cure, the
 * message in hand is finished and the rest of the batch is handed back.
 */
static db_status
drain(PGconn *conn)
{
	char		batch[16];
	char		lease[32];
	const char *params[2] = {batch, lease};
	double		margin = opt_timeout < opt_lease / 2.0 ? opt_timeout : opt_lease / 2.0;

	snprintf(batch, sizeof(batch), "%d", opt_batch);
	snprintf(lease, sizeof(lease), "%d seconds", opt_lease);

	while (!stop_requested)
	{
		PGresult   *res;
		db_status	st;
		db_status	broken = DB_OK;
		double		claimed_at = now_seconds();
		claim_columns cols;
		int			n;
		int			skipped = 0;
		int			released = 0;

		claim_fn	fn;
		const char *claim_name;

		st = choose_claim(conn);
		if (st != DB_OK)
			return st;
		fn = claim_mode;
		claim_name = fn == CLAIM_ALL ? "email_claim_all"
			: fn == CLAIM_SITES ? "email_claim_sites" : "email_claim";
		/* "*": the columns differ between versions (find_claim_columns) */
		res = PQexecParams(conn,
						   fn == CLAIM_ALL ?
						   "SELECT * FROM invitetomedia.email_claim_all($1::pg_catalog.int4, $2::pg_catalog.interval)"
						   : fn == CLAIM_SITES ?
						   "SELECT * FROM invitetomedia.email_claim_sites($1::pg_catalog.int4, $2::pg_catalog.interval)"
						   : "SELECT * FROM invitetomedia.email_claim($1::pg_catalog.int4, $2::pg_catalog.interval)",
						   2, NULL, params, NULL, NULL, 0);
		st = result_status(conn, res, PGRES_TUPLES_OK, claim_name);
		if (st != DB_OK)
		{
			PQclear(res);
			return st;
		}
		if (find_claim_columns(res, &cols) != 0 ||
			(fn != CLAIM_1X && (cols.claim_no < 0 || cols.message_key < 0 ||
								cols.tenant_id < 0 || cols.site_id < 0 ||
								cols.from_address < 0 || cols.message_id_domain < 0)))
		{
			/*
			 * Not an outbox this sender knows.  Whatever it claimed becomes
			 * due again when the lease runs out.
			 */
			if (fn == CLAIM_1X)
				log_line("email_claim failed: its result lacks a column this sender needs (message_id, to_email, to_name, subject, body)");
			else
				log_line("%s failed: its result lacks a column this sender needs (message_id, to_email, to_name, subject, body, claim_no, message_key, tenant_id, site_id, from_address, message_id_domain)",
						 claim_name);
			PQclear(res);
			return DB_ERROR;
		}
		n = PQntuples(res);
		if (opt_verbose && n > 0)
			log_line("claimed %d message(s)", n);
		for (int i = 0; i < n; i++)
		{
			claimed_message m;
			confirm_outcome outcome;

			if (claimed_row(res, i, &cols, fn, &m) != 0)
			{
				/* cannot be confirmed: due again when its lease runs out */
				log_line("message %s: claimed without its tenant or claim number; left for after its lease",
						 m.label);
				continue;
			}
			if (stop_requested || broken != DB_OK)
			{
				st = hand_back(conn, &m,
							   stop_requested ? "not attempted: the sender was stopping"
							   : "not attempted: the sender stopped on an error",
							   &outcome);
				if (st == DB_OK && outcome == CONFIRM_SUPERSEDED)
					log_line("message %s: not handed back, superseded or no longer queued (another sender claimed it after our lease ran out, or it was sent or revoked)",
							 m.label);
				else if (st == DB_OK)
					log_line("message %s: handed back (%s)", m.label,
							 stop_requested ? "stopping" : "not attempted after an error that retrying will not cure");
			}
			else if (now_seconds() - claimed_at > opt_lease - margin)
			{
				skipped++;
				st = DB_OK;
				if (m.release && !no_release)
				{
					st = hand_back(conn, &m, "not attempted: its lease ran short", &outcome);
					released += st == DB_OK && outcome == CONFIRM_DONE;
				}
			}
			else
			{
				st = deliver_one(conn, &m);
				if (st == DB_BROKEN)
					broken = st;
			}
			if (st == DB_LOST)
			{
				PQclear(res);
				return st;
			}
		}
		if (released > 0)
			log_line("%d claimed message(s) handed back unstarted, their lease running short (the batch took too long; lower --batch or raise --lease)",
					 released);
		if (skipped > released)
			log_line("%d claimed message(s) left for after their lease (the batch took too long; lower --batch or raise --lease)",
					 skipped - released);
		PQclear(res);
		if (broken != DB_OK)
			return broken;
		/* what was handed back is due now: claim it again */
		if (n < opt_batch && released == 0)
			break;
	}
	return DB_OK;
}

/* reads pending input; returns the number of notifications, -1 if lost */
static int
collect_notifications(PGconn *conn)
{
	PGnotify   *note;
	int			count = 0;

	if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
		return -1;
	while ((note = PQnotifies(conn)) != NULL)
	{
		count++;
		PQfreemem(note);
	}
	return count;
}

/* --once: one connection, one drain */
static int
run_once(void)
{
	PGconn	   *conn = connect_db();
	db_status	st;

	if (conn == NULL)
		return 1;
	st = drain(conn);
	PQfinish(conn);
	if (st == DB_BROKEN)
		return EXIT_CONFIG;
	if (unsettled > 0)
		log_line("%d message outcome(s) could not be recorded: a message handed to sendmail without confirmation will be sent again after its lease",
				 unsettled);
	return st == DB_OK && unsettled == 0 ? 0 : 1;
}

/*
 * Listens and drains until stopped or something goes wrong; returns why
 * (DB_OK: stopped).  *listening says whether it got as far as listening
 * with a first drain done, i.e. whether the connection was a good one.
 */
static db_status
serve(PGconn *conn, int *listening)
{
	PGresult   *res;
	db_status	st;
	double		next_poll;

	*listening = 0;
	res = PQexec(conn, "LISTEN " CHANNEL);
	st = result_status(conn, res, PGRES_COMMAND_OK, "LISTEN");
	PQclear(res);
	if (st != DB_OK)
		return st;				/* start over on a new connection */

	/* what was queued while no sender was listening */
	st = drain(conn);
	if (st == DB_LOST || st == DB_BROKEN)
		return st;
	*listening = 1;
	if (setup_failures > 0)
		log_line("connected, listening on %s; but %s, and retrying will not cure that (see above)",
				 CHANNEL, setup_failure);
	else
		log_line("connected, listening on %s", CHANNEL);
	next_poll = now_seconds() + opt_poll;

	while (!stop_requested)
	{
		int			notes;
		int			due;

		/* notifications that came in while draining */
		notes = collect_notifications(conn);
		if (notes < 0)
			break;
		due = notes > 0 || now_seconds() >= next_poll;
		if (!due)
		{
			if (!wait_for(PQsocket(conn), next_poll - now_seconds()))
			{
				if (stop_requested)
					break;
				due = now_seconds() >= next_poll;
			}
			notes = collect_notifications(conn);
			if (notes < 0)
				break;
			due = due || notes > 0;
		}
		if (!due)
			continue;
		if (opt_verbose)
			log_line("draining (%s)", notes > 0 ? "notification" : "poll");
		st = drain(conn);
		if (st == DB_LOST || st == DB_BROKEN)
			return st;
		next_poll = now_seconds() + opt_poll;
	}
	if (stop_requested)
		return DB_OK;
	{
		char		buf[512];

		log_line("connection lost: %s", one_line(PQerrorMessage(conn), buf, sizeof(buf)));
	}
	return DB_LOST;
}

/*
 * Connects, serves, and reconnects after whatever went wrong, waiting 1,
 * 2, 4 ... up to MAX_BACKOFF seconds between attempts until a connection
 * gets as far as listening.  A LISTEN refused (a standby: "cannot execute
 * LISTEN during recovery") or a failing first drain waits just as a failed
 * connection does, instead of trying again every second for ever.
 */
static int
run_daemon(void)
{
	int			backoff = 1;

	while (!stop_requested)
	{
		PGconn	   *conn = connect_db();
		db_status	st;
		int			listening;

		if (conn == NULL)
		{
			log_line("retrying in %d s", backoff);
			wait_for(-1, backoff);
			backoff = backoff * 2 > MAX_BACKOFF ? MAX_BACKOFF : backoff * 2;
			continue;
		}
		st = serve(conn, &listening);
		PQfinish(conn);
		if (stop_requested)
			break;
		if (st == DB_BROKEN && setup_failures >= SETUP_FAILURES_MAX)
		{
			log_line("giving up: %s (%d times in a row); retrying will not cure it",
					 setup_failure, setup_failures);
			return EXIT_CONFIG;
		}
		/* a good connection that broke: the server may be restarting */
		if (listening)
			backoff = 1;
		log_line("reconnecting in %d s", backoff);
		wait_for(-1, backoff);
		backoff = backoff * 2 > MAX_BACKOFF ? MAX_BACKOFF : backoff * 2;
	}
	log_line("stopped (%s)", signal_name(stop_signal));
	return 0;
}

static void
usage(FILE *out)
{
	fprintf(out,
			"%s delivers the invitetomedia email outbox through a sendmail command.\n"
			"\n"
			"Usage:\n"
			"  %s [OPTION]... [CONNINFO]\n"
			"\n"
			"CONNINFO is a libpq connection string or URI (\"host=db dbname=app user=sender\",\n"
			"\"postgresql://sender@db/app\"); without it the PG* environment variables apply.\n"
			"Unless it (or the environment) sets them, the sender adds connect_timeout=10,\n"
			"keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3\n"
			"and tcp_user_timeout=60000.\n"
			"\n"
			"Options:\n"
			"  -s, --sendmail=CMD  command the message is piped to, run with /bin/sh -c\n"
			"                      (default: \"/usr/sbin/sendmail -t -i\"); it must read the\n"
			"                      recipients from the headers and exit 0 once it accepted\n"
			"  -f, --from=ADDR     From address, \"addr@host\" or \"Name <addr@host>\"\n"
			"                      (default: invitetomedia@localhost)\n"
			"  -d, --domain=NAME   domain of Message-IDs <itm-KEY@NAME> (default: host name)\n"
			"  -b, --batch=N       messages claimed at a time, 1..1000 (default: 10)\n"
			"  -l, --lease=SECONDS how long a claim lasts before another sender may take\n"
			"                      the message again, 1..86400 (default: 300)\n"
			"  -p, --poll=SECONDS  look for due messages at least this often, besides\n"
			"                      notifications (default: 30)\n"
			"  -t, --timeout=SECONDS  kill a sendmail command running longer (default: 60)\n"
			"  -1, --once          deliver what is due now and exit\n"
			"  -v, --verbose       log claims, wake-ups and connection timeouts too\n"
			"  -V, --version       print the version and exit\n"
			"  -h, --help          print this help and exit\n"
			"\n"
			"One line per message goes to standard error: message id, masked recipient,\n"
			"outcome.  Bodies and links are never logged.  SIGTERM, SIGINT or SIGHUP:\n"
			"finish the message in hand, hand the other claimed ones back, exit 0.\n"
			"Delivery is at least once; copies of a message share its Message-ID.\n"
			"\n"
			"Against a 2.0 database the sender serves every tenant if its role may\n"
			"execute email_claim_all (else its tenant's sites with email_claim_sites,\n"
			"else email_claim); From and the Message-ID's domain are each site's\n"
			"from_address and message_id_domain where the site sets them.\n"
			"\n"
			"Exit status: 0 stopped by a signal, or --once and everything confirmed;\n"
			"1 --once and the database unreachable or an outcome not recorded;\n"
			"64 a bad command line; 78 the database lacks the extension or the role a\n"
			"privilege (the daemon gives up after %d such identical failures in a row).\n",
			progname, progname, SETUP_FAILURES_MAX);
}

static int
parse_int(const char *arg, const char *name, int min, int max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < min || v > max)
	{
		fprintf(stderr, "%s: %s must be an integer between %d and %d, not \"%s\"\n",
				progname, name, min, max, arg);
		exit(EXIT_USAGE);
	}
	return (int) v;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"sendmail", required_argument, NULL, 's'},
		{"from", required_argument, NULL, 'f'},
		{"domain", required_argument, NULL, 'd'},
		{"batch", required_argument, NULL, 'b'},
		{"lease", required_argument, NULL, 'l'},
		{"poll", required_argument, NULL, 'p'},
		{"timeout", required_argument, NULL, 't'},
		{"once", no_argument, NULL, '1'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	int			rc;
	char		err[512];

	/* before anything opens a file */
	ensure_standard_fds();

	while ((c = getopt_long(argc, argv, "s:f:d:b:l:p:t:1vVh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 's':
				opt_sendmail = optarg;
				break;
			case 'f':
				opt_from = optarg;
				break;
			case 'd':
				opt_domain = optarg;
				break;
			case 'b':
				opt_batch = parse_int(optarg, "--batch", 1, 1000);
				break;
			case 'l':
				opt_lease = parse_int(optarg, "--lease", 1, 86400);
				break;
			case 'p':
				opt_poll = parse_int(optarg, "--poll", 1, 86400);
				break;
			case 't':
				opt_timeout = parse_int(optarg, "--timeout", 1, 86400);
				break;
			case '1':
				opt_once = 1;
				break;
			case 'v':
				opt_verbose = 1;
				break;
			case 'V':
				printf("invitetomedia-sender %s (libpq %d, GMime %s)\n",
					   SENDER_VERSION, PQlibVersion(), itm_gmime_version());
				return 0;
			case 'h':
				usage(stdout);
				return 0;
			default:
				fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
				return EXIT_USAGE;
		}
	}
	if (optind < argc)
		opt_conninfo = argv[optind++];
	if (optind < argc)
	{
		fprintf(stderr, "%s: too many arguments (first extra: \"%s\")\n", progname, argv[optind]);
		fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
		return EXIT_USAGE;
	}
	if (opt_sendmail[0] == '\0')
	{
		fprintf(stderr, "%s: --sendmail must not be empty\n", progname);
		return EXIT_USAGE;
	}

	setvbuf(stderr, NULL, _IOLBF, 0);
	itm_message_init();
	if (itm_identity_init(&identity, opt_from, opt_domain, err, sizeof(err)) != 0 ||
		prepare_connection(err, sizeof(err)) != 0)
	{
		fprintf(stderr, "%s: %s\n", progname, err);
		itm_identity_free(&identity);
		itm_message_shutdown();
		return EXIT_USAGE;
	}
	if (opt_timeout >= opt_lease)
		log_line("warning: --timeout (%d s) is not below --lease (%d s): a slow sendmail may deliver a message another sender claimed again",
				 opt_timeout, opt_lease);
	setup_signals();

	rc = opt_once ? run_once() : run_daemon();

	itm_identity_free(&identity);
	itm_message_shutdown();
	return rc;
}
