/*
 * invitetomedia-sender - delivers the invitetomedia email outbox
 *
 * Connects to the database, LISTENs on invitetomedia_email and drains the
 * outbox: at start, on every notification and every --poll seconds.  Each
 * message is claimed with invitetomedia.email_claim(), built as a MIME
 * message (message.c), piped to a sendmail-compatible command (spawn.c)
 * and confirmed with email_sent() or email_failed().
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

#define SENDER_VERSION "1.0"
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
notice_processor(void *arg, const char *message)
{
	char		buf[512];

	(void) arg;
	log_line("server: %s", one_line(message, buf, sizeof(buf)));
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
	PQsetNoticeProcessor(conn, notice_processor, NULL);
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

/* email_sent(): *still_queued tells whether the message was still queued */
static db_status
confirm_sent(PGconn *conn, const char *id, int *still_queued)
{
	const char *params[1] = {id};
	PGresult   *res;
	db_status	st;

	res = PQexecParams(conn, "SELECT invitetomedia.email_sent($1::pg_catalog.int8)",
					   1, NULL, params, NULL, NULL, 0);
	st = result_status(conn, res, PGRES_TUPLES_OK, "email_sent");
	*still_queued = (st == DB_OK && PQntuples(res) == 1 &&
					 strcmp(PQgetvalue(res, 0, 0), "t") == 0);
	PQclear(res);
	return st;
}

/* email_failed(): state receives pending, dead or "" (no longer queued) */
static db_status
confirm_failed(PGconn *conn, const char *id, const char *error,
			   char *state, size_t statelen)
{
	const char *params[2] = {id, error};
	PGresult   *res;
	db_status	st;

	res = PQexecParams(conn,
					   "SELECT invitetomedia.email_failed($1::pg_catalog.int8, $2::pg_catalog.text)",
					   2, NULL, params, NULL, NULL, 0);
	st = result_status(conn, res, PGRES_TUPLES_OK, "email_failed");
	state[0] = '\0';
	if (st == DB_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		snprintf(state, statelen, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return st;
}

/* builds, pipes and confirms one claimed message */
static db_status
deliver_one(PGconn *conn, PGresult *claim, int row)
{
	const char *id = PQgetvalue(claim, row, 0);
	const char *to_email = PQgetisnull(claim, row, 1) ? NULL : PQgetvalue(claim, row, 1);
	const char *to_name = PQgetisnull(claim, row, 2) ? NULL : PQgetvalue(claim, row, 2);
	const char *subject = PQgetisnull(claim, row, 3) ? NULL : PQgetvalue(claim, row, 3);
	const char *body = PQgetisnull(claim, row, 4) ? NULL : PQgetvalue(claim, row, 4);
	char		masked[300];
	char		err[600];
	char		state[32];
	char	   *data = NULL;
	size_t		len = 0;
	int			failed;
	db_status	st;

	itm_mask_address(to_email, masked, sizeof(masked));
	failed = itm_build_message(&identity, strtoll(id, NULL, 10), to_email,
							   to_name, subject, body, &data, &len,
							   err, sizeof(err)) != 0;
	if (!failed)
		failed = itm_run_sendmail(opt_sendmail, data, len, opt_timeout,
								  err, sizeof(err)) != 0;
	if (data != NULL)
	{
		memset(data, 0, len);	/* it held the live link */
		free(data);
	}

	if (!failed)
	{
		int			still_queued;

		st = confirm_sent(conn, id, &still_queued);
		if (st != DB_OK)
			log_line("message %s to %s: handed to sendmail, NOT confirmed (it will be sent again after its lease)",
					 id, masked);
		else if (still_queued)
			log_line("message %s to %s: sent", id, masked);
		else
			log_line("message %s to %s: sent, but it was no longer queued (invite revoked?)",
					 id, masked);
		return st;
	}

	st = confirm_failed(conn, id, err, state, sizeof(state));
	if (st != DB_OK)
		log_line("message %s to %s: failed: %s (failure NOT recorded)", id, masked, err);
	else if (strcmp(state, "dead") == 0)
		log_line("message %s to %s: failed, dead (no more attempts): %s", id, masked, err);
	else if (strcmp(state, "pending") == 0)
		log_line("message %s to %s: failed, will retry: %s", id, masked, err);
	else
		log_line("message %s to %s: failed, no longer queued: %s", id, masked, err);
	return st;
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
		int			n;
		int			skipped = 0;

		res = PQexecParams(conn,
						   "SELECT message_id, to_email, to_name, subject, body "
						   "FROM invitetomedia.email_claim($1::pg_catalog.int4, $2::pg_catalog.interval)",
						   2, NULL, params, NULL, NULL, 0);
		st = result_status(conn, res, PGRES_TUPLES_OK, "email_claim");
		if (st != DB_OK)
		{
			PQclear(res);
			return st;
		}
		n = PQntuples(res);
		if (opt_verbose && n > 0)
			log_line("claimed %d message(s)", n);
		for (int i = 0; i < n; i++)
		{
			if (stop_requested)
			{
				char		state[32];

				st = confirm_failed(conn, PQgetvalue(res, i, 0),
									"not attempted: the sender was stopping",
									state, sizeof(state));
				if (st == DB_OK)
					log_line("message %s: handed back (stopping)", PQgetvalue(res, i, 0));
			}
			else if (now_seconds() - claimed_at > opt_lease - margin)
			{
				skipped++;
				st = DB_OK;
			}
			else
				st = deliver_one(conn, res, i);
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
