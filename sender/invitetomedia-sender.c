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
 * Every copy carries the same Message-ID, <itm-MESSAGE_ID@DOMAIN>, so the
 * receiving side can drop the duplicate.
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

#define SENDER_VERSION "1.0.1"
#define CHANNEL "invitetomedia_email"
#define MAX_BACKOFF 30			/* seconds between reconnection attempts, at most */

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
 * Which confirmation forms the last email_claim result called for: -1 not
 * known yet, 0 the 1.0 forms (no claim_no column), 1 the claim-aware forms.
 * Only kept to log a change once, not per batch.
 */
static int	claim_api = -1;

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
static int	wake_pipe[2] = {-1, -1};

/* outcome of talking to the database */
typedef enum
{
	DB_OK,
	DB_ERROR,					/* a query failed, the connection is fine */
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

	(void) signo;
	stop_requested = 1;
	rc = write(wake_pipe[1], "x", 1);
	(void) rc;
	errno = save_errno;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		log_line("could not create a pipe: %s", strerror(errno));
		exit(1);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;			/* no SA_RESTART: waits return early */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
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
			one_line(PQresultErrorMessage(res), held_warning, sizeof(held_warning));
		return;
	}
	log_line("server: %s", one_line(PQresultErrorMessage(res), buf, sizeof(buf)));
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

static PGconn *
connect_db(void)
{
	const char *keywords[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {opt_conninfo, "invitetomedia-sender", NULL};
	PGconn	   *conn;
	char		buf[512];

	conn = PQconnectdbParams(keywords, values, 1);
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
	PQsetNoticeReceiver(conn, notice_receiver, NULL);
	/* names, subjects and bodies are handled as UTF-8 */
	if (PQsetClientEncoding(conn, "UTF8") != 0)
	{
		log_line("could not set client_encoding to UTF8: %s",
				 one_line(PQerrorMessage(conn), buf, sizeof(buf)));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static db_status
result_status(PGconn *conn, PGresult *res, ExecStatusType expected, const char *what)
{
	char		buf[512];

	if (res != NULL && PQresultStatus(res) == expected)
		return DB_OK;
	if (PQstatus(conn) != CONNECTION_OK)
	{
		log_line("connection lost during %s: %s", what,
				 one_line(PQerrorMessage(conn), buf, sizeof(buf)));
		return DB_LOST;
	}
	log_line("%s failed: %s", what,
			 one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(conn),
					  buf, sizeof(buf)));
	return DB_ERROR;
}

/* what a confirmation found */
typedef enum
{
	CONFIRM_DONE,				/* sent, or the failure recorded (pending, dead) */
	CONFIRM_NOT_QUEUED,			/* already sent, dead, or gone (invite revoked) */
	CONFIRM_SUPERSEDED			/* our claim is no longer current: another
								 * sender claimed the message after our lease
								 * ran out, and owns it now */
} confirm_outcome;

/*
 * One claimed message: the columns of an email_claim row.  claim_no is NULL
 * when the database is at 1.0 (no claim numbers).
 */
typedef struct
{
	const char *id;
	const char *to_email;
	const char *to_name;
	const char *subject;
	const char *body;
	const char *claim_no;
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

	if (m->claim_no != NULL)
	{
		hold_server_warnings();
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_sent($1::pg_catalog.int8, $2::pg_catalog.int4)",
						   2, NULL, params, NULL, NULL, 0);
	}
	else
		res = PQexecParams(conn, "SELECT invitetomedia.email_sent($1::pg_catalog.int8)",
						   1, NULL, params, NULL, NULL, 0);
	st = result_status(conn, res, PGRES_TUPLES_OK, "email_sent");
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
 * email_failed(), with the claim number when there is one.  state receives
 * pending or dead when the failure was recorded (*outcome CONFIRM_DONE).
 */
static db_status
confirm_failed(PGconn *conn, const claimed_message *m, const char *error,
			   confirm_outcome *outcome, char *state, size_t statelen)
{
	const char *params[3] = {m->id, error, m->claim_no};
	PGresult   *res;
	db_status	st;

	if (m->claim_no != NULL)
	{
		hold_server_warnings();
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_failed($1::pg_catalog.int8, $2::pg_catalog.text, $3::pg_catalog.int4)",
						   3, NULL, params, NULL, NULL, 0);
	}
	else
		res = PQexecParams(conn,
						   "SELECT invitetomedia.email_failed($1::pg_catalog.int8, $2::pg_catalog.text)",
						   2, NULL, params, NULL, NULL, 0);
	st = result_status(conn, res, PGRES_TUPLES_OK, "email_failed");
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

/* builds, pipes and confirms one claimed message */
static db_status
deliver_one(PGconn *conn, const claimed_message *m)
{
	char		masked[300];
	char		err[600];
	char		state[32];
	char	   *data = NULL;
	size_t		len = 0;
	int			failed;
	confirm_outcome outcome;
	db_status	st;

	itm_mask_address(m->to_email, masked, sizeof(masked));
	failed = itm_build_message(&identity, strtoll(m->id, NULL, 10), m->to_email,
							   m->to_name, m->subject, m->body, &data, &len,
							   err, sizeof(err)) != 0;
	if (!failed)
		failed = itm_run_sendmail(opt_sendmail, data, len, opt_timeout,
								  err, sizeof(err)) != 0;
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
			log_line("message %s to %s: handed to sendmail, NOT confirmed (it will be sent again after its lease)",
					 m->id, masked);
		else if (outcome == CONFIRM_DONE)
			log_line("message %s to %s: sent", m->id, masked);
		else if (outcome == CONFIRM_SUPERSEDED)
			log_line("message %s to %s: sent, but superseded (another sender claimed it after our lease ran out)",
					 m->id, masked);
		else
			log_line("message %s to %s: sent, but it was no longer queued (sent by another sender, or the invite was revoked)",
					 m->id, masked);
		return st;
	}

	st = confirm_failed(conn, m, err, &outcome, state, sizeof(state));
	if (st != DB_OK)
		log_line("message %s to %s: failed: %s (failure NOT recorded)", m->id, masked, err);
	else if (outcome == CONFIRM_SUPERSEDED)
		log_line("message %s to %s: failed, superseded (another sender claimed it after our lease ran out): %s",
				 m->id, masked, err);
	else if (strcmp(state, "dead") == 0)
		log_line("message %s to %s: failed, dead (no more attempts): %s", m->id, masked, err);
	else if (strcmp(state, "pending") == 0)
		log_line("message %s to %s: failed, will retry: %s", m->id, masked, err);
	else
		log_line("message %s to %s: failed, no longer queued: %s", m->id, masked, err);
	return st;
}

/*
 * Finds email_claim's columns in res by name.  "SELECT *" gives five at
 * extension version 1.0 and claim_no as well from 1.0.1 on, so each result
 * tells which confirmation forms apply, without another round trip and
 * even after an ALTER EXTENSION UPDATE under a running sender.  Returns -1
 * if one of the 1.0 columns is missing.
 */
static int
find_claim_columns(const PGresult *res, claim_columns *c)
{
	int			has_claims;

	c->message_id = PQfnumber(res, "message_id");
	c->to_email = PQfnumber(res, "to_email");
	c->to_name = PQfnumber(res, "to_name");
	c->subject = PQfnumber(res, "subject");
	c->body = PQfnumber(res, "body");
	c->claim_no = PQfnumber(res, "claim_no");
	if (c->message_id < 0 || c->to_email < 0 || c->to_name < 0 ||
		c->subject < 0 || c->body < 0)
		return -1;

	/* said once, and again only if the database changes under us */
	has_claims = c->claim_no >= 0;
	if (has_claims != claim_api)
	{
		if (!has_claims)
			log_line("email_claim returns no claim numbers (extension version 1.0): confirming by message id alone; update the extension to 1.0.1 so that a late confirmation cannot disturb a newer claim");
		else if (claim_api == 0 || opt_verbose)
			log_line("email_claim returns claim numbers: confirmations name their claim");
		claim_api = has_claims;
	}
	return 0;
}

static const char *
value_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* row of an email_claim result, as a claimed_message pointing into res */
static void
claimed_row(const PGresult *res, int row, const claim_columns *c, claimed_message *m)
{
	m->id = PQgetvalue(res, row, c->message_id);
	m->to_email = value_or_null(res, row, c->to_email);
	m->to_name = value_or_null(res, row, c->to_name);
	m->subject = value_or_null(res, row, c->subject);
	m->body = value_or_null(res, row, c->body);
	m->claim_no = c->claim_no >= 0 ? value_or_null(res, row, c->claim_no) : NULL;
}

/*
 * Claims and delivers everything due, batch by batch.
 *
 * A message is only started while its lease has time left (at least
 * min(--timeout, lease/2) seconds): past that, another sender may claim it
 * again.  Messages skipped that way stay claimed and become due again when
 * their lease runs out.  On a stop signal the message in hand is finished
 * and the rest of the batch is handed back with email_failed().
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
		double		claimed_at = now_seconds();
		claim_columns cols;
		int			n;
		int			skipped = 0;

		/* "*": the columns differ between versions (find_claim_columns) */
		res = PQexecParams(conn,
						   "SELECT * FROM invitetomedia.email_claim($1::pg_catalog.int4, $2::pg_catalog.interval)",
						   2, NULL, params, NULL, NULL, 0);
		st = result_status(conn, res, PGRES_TUPLES_OK, "email_claim");
		if (st != DB_OK)
		{
			PQclear(res);
			return st;
		}
		if (find_claim_columns(res, &cols) != 0)
		{
			/*
			 * Not an outbox this sender knows.  Whatever it claimed becomes
			 * due again when the lease runs out.
			 */
			log_line("email_claim failed: its result lacks a column this sender needs (message_id, to_email, to_name, subject, body)");
			PQclear(res);
			return DB_ERROR;
		}
		n = PQntuples(res);
		if (opt_verbose && n > 0)
			log_line("claimed %d message(s)", n);
		for (int i = 0; i < n; i++)
		{
			claimed_message m;

			claimed_row(res, i, &cols, &m);
			if (stop_requested)
			{
				char		state[32];
				confirm_outcome outcome;

				st = confirm_failed(conn, &m,
									"not attempted: the sender was stopping",
									&outcome, state, sizeof(state));
				if (st == DB_OK && outcome == CONFIRM_SUPERSEDED)
					log_line("message %s: not handed back, superseded (another sender claimed it after our lease ran out)",
							 m.id);
				else if (st == DB_OK)
					log_line("message %s: handed back (stopping)", m.id);
			}
			else if (now_seconds() - claimed_at > opt_lease - margin)
			{
				skipped++;
				st = DB_OK;
			}
			else
				st = deliver_one(conn, &m);
			if (st == DB_LOST)
			{
				PQclear(res);
				return st;
			}
		}
		if (skipped > 0)
			log_line("%d claimed message(s) left for after their lease (batch took too long; lower --batch or raise --lease)",
					 skipped);
		PQclear(res);
		if (n < opt_batch)
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
	return st == DB_OK ? 0 : 1;
}

/* listens and drains until stopped; returns DB_LOST to reconnect */
static db_status
serve(PGconn *conn)
{
	PGresult   *res;
	db_status	st;
	double		next_poll;

	res = PQexec(conn, "LISTEN " CHANNEL);
	st = result_status(conn, res, PGRES_COMMAND_OK, "LISTEN");
	PQclear(res);
	if (st != DB_OK)
		return DB_LOST;			/* start over on a new connection */

	/* what was queued while no sender was listening */
	if (drain(conn) == DB_LOST)
		return DB_LOST;
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
		if (drain(conn) == DB_LOST)
			return DB_LOST;
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

static int
run_daemon(void)
{
	int			backoff = 1;

	while (!stop_requested)
	{
		PGconn	   *conn = connect_db();
		db_status	st;

		if (conn == NULL)
		{
			log_line("retrying in %d s", backoff);
			wait_for(-1, backoff);
			backoff = backoff * 2 > MAX_BACKOFF ? MAX_BACKOFF : backoff * 2;
			continue;
		}
		backoff = 1;
		st = serve(conn);
		PQfinish(conn);
		if (st == DB_LOST && !stop_requested)
		{
			/* the server may be restarting: give it a moment */
			wait_for(-1, 1);
		}
	}
	log_line("stopped");
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
			"\n"
			"Options:\n"
			"  -s, --sendmail=CMD  command the message is piped to, run with /bin/sh -c\n"
			"                      (default: \"/usr/sbin/sendmail -t -i\"); it must read the\n"
			"                      recipients from the headers and exit 0 once it accepted\n"
			"  -f, --from=ADDR     From address, \"addr@host\" or \"Name <addr@host>\"\n"
			"                      (default: invitetomedia@localhost)\n"
			"  -d, --domain=NAME   domain of Message-IDs <itm-ID@NAME> (default: host name)\n"
			"  -b, --batch=N       messages claimed at a time, 1..1000 (default: 10)\n"
			"  -l, --lease=SECONDS how long a claim lasts before another sender may take\n"
			"                      the message again, 1..86400 (default: 300)\n"
			"  -p, --poll=SECONDS  look for due messages at least this often, besides\n"
			"                      notifications (default: 30)\n"
			"  -t, --timeout=SECONDS  kill a sendmail command running longer (default: 60)\n"
			"  -1, --once          deliver what is due now and exit\n"
			"  -v, --verbose       log claims and wake-ups too\n"
			"  -V, --version       print the version and exit\n"
			"  -h, --help          print this help and exit\n"
			"\n"
			"One line per message goes to standard error: message id, masked recipient,\n"
			"outcome.  Bodies and links are never logged.  SIGTERM or SIGINT: finish the\n"
			"message in hand, then exit 0.  Delivery is at least once; copies of a message\n"
			"share its Message-ID.\n",
			progname, progname);
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
		exit(2);
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
				return 2;
		}
	}
	if (optind < argc)
		opt_conninfo = argv[optind++];
	if (optind < argc)
	{
		fprintf(stderr, "%s: too many arguments (first extra: \"%s\")\n", progname, argv[optind]);
		fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
		return 2;
	}
	if (opt_sendmail[0] == '\0')
	{
		fprintf(stderr, "%s: --sendmail must not be empty\n", progname);
		return 2;
	}

	setvbuf(stderr, NULL, _IOLBF, 0);
	itm_message_init();
	if (itm_identity_init(&identity, opt_from, opt_domain, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "%s: %s\n", progname, err);
		return 2;
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
