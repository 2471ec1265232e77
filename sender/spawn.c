/*
 * spawn.c - handing one message to a sendmail-compatible command
 *
 * Part of invitetomedia-sender.
 */
#define _GNU_SOURCE				/* pipe2 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUTPUT_KEEP 400			/* bytes of the command's output kept */

/* sysexits.h: the range of its codes, and the one that means "try later" */
#define EX__BASE 64
#define EX_TEMPFAIL 75
#define EX__MAX 78

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* first line of the command's output, printable ASCII only */
static void
first_line(const char *buf, size_t len, char *out, size_t outlen)
{
	size_t		o = 0;
	size_t		i = 0;

	while (i < len && (buf[i] == '\n' || buf[i] == '\r' || buf[i] == ' '))
		i++;
	for (; i < len && buf[i] != '\n' && buf[i] != '\r' && o + 1 < outlen; i++)
	{
		unsigned char c = (unsigned char) buf[i];

		out[o++] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
	}
	out[o] = '\0';
}

static void
child_exec(const char *command, int in_fd, int out_fd)
{
	sigset_t	none;

	/* own process group: signals aimed at the sender's group miss it */
	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
		dup2(out_fd, STDERR_FILENO) < 0)
		_exit(126);
	/* the database password is none of the mailer's business */
	unsetenv("PGPASSWORD");
	execl("/bin/sh", "sh", "-c", command, (char *) NULL);
	_exit(127);
}

/* what an exit status other than 0 means for the message */
static itm_send_result
classify_status(int code)
{
	/*
	 * sysexits.h codes describe the failure.  EX_TEMPFAIL says "try again
	 * later"; the others (EX_NOUSER, EX_DATAERR, EX_UNAVAILABLE, ...) say
	 * that trying again will fail again.  Any other status (1, a shell's
	 * 126 or 127) says nothing either way: retried, as before.
	 */
	if (code >= EX__BASE && code <= EX__MAX && code != EX_TEMPFAIL)
		return ITM_SEND_PERMFAIL;
	return ITM_SEND_TEMPFAIL;
}

itm_send_result
itm_run_sendmail(const char *command, const char *data, size_t len,
				 int timeout_secs, char *err, size_t errlen)
{
	int			in_pipe[2];
	int			out_pipe[2];
	pid_t		pid;
	size_t		written = 0;
	int			write_errno = 0;
	int			wait_errno = 0;
	int			unread = 0;
	int			in_open = 1;
	int			out_open = 1;
	int			exited = 0;
	int			status = 0;
	char		output[OUTPUT_KEEP];
	size_t		output_len = 0;
	double		deadline = now_seconds() + timeout_secs;
	char		line[200];

	if (pipe2(in_pipe, O_CLOEXEC) != 0)
	{
		snprintf(err, errlen, "could not create a pipe: %s", strerror(errno));
		return ITM_SEND_TEMPFAIL;
	}
	if (pipe2(out_pipe, O_CLOEXEC) != 0)
	{
		snprintf(err, errlen, "could not create a pipe: %s", strerror(errno));
		close(in_pipe[0]);
		close(in_pipe[1]);
		return ITM_SEND_TEMPFAIL;
	}
	pid = fork();
	if (pid < 0)
	{
		snprintf(err, errlen, "could not fork: %s", strerror(errno));
		close(in_pipe[0]);
		close(in_pipe[1]);
		close(out_pipe[0]);
		close(out_pipe[1]);
		return ITM_SEND_TEMPFAIL;
	}
	if (pid == 0)
		child_exec(command, in_pipe[0], out_pipe[1]);

	setpgid(pid, pid);			/* also here: no race with the child */

	/*
	 * The read end of the command's input stays open here too, to see
	 * afterwards whether the command left part of the message unread: a
	 * small message fits in the pipe at once, so a command that read only
	 * its first line and exited 0 would otherwise look like one that took
	 * it all.
	 */
	close(out_pipe[1]);
	fcntl(in_pipe[1], F_SETFL, fcntl(in_pipe[1], F_GETFL) | O_NONBLOCK);
	fcntl(out_pipe[0], F_SETFL, fcntl(out_pipe[0], F_GETFL) | O_NONBLOCK);
	if (len == 0)
	{
		close(in_pipe[1]);
		in_open = 0;
	}

	/*
	 * Feed stdin and collect stdout/stderr at the same time (a command that
	 * writes a lot before reading would otherwise deadlock), until the
	 * command has exited and its output is drained, or the deadline.
	 */
	while (!exited || out_open)
	{
		struct pollfd fds[2];
		int			nfds = 0;
		int			in_idx = -1;
		int			out_idx = -1;
		double		left = deadline - now_seconds();
		int			wait_ms;

		if (!exited)
		{
			pid_t		r = waitpid(pid, &status, WNOHANG);

			if (r == pid)
				exited = 1;
			else if (r < 0 && errno != EINTR)
			{
				/*
				 * ECHILD: someone else reaped the command (SIGCHLD was
				 * ignored, which the sender undoes when it starts).  Its
				 * fate is unknown; waiting on would only end in a
				 * "timeout", a kill of whatever has the pid now, and the
				 * message sent again.
				 */
				wait_errno = errno;
				break;
			}
		}
		if (left <= 0)
			break;
		/* once exited, drain what is buffered without waiting for EOF
		 * (a daemonised grandchild may keep the pipe open) */
		wait_ms = exited ? 0 : (left > 0.1 ? 100 : (int) (left * 1000) + 1);
		if (in_open && !exited)
		{
			fds[nfds].fd = in_pipe[1];
			fds[nfds].events = POLLOUT;
			in_idx = nfds++;
		}
		if (out_open)
		{
			fds[nfds].fd = out_pipe[0];
			fds[nfds].events = POLLIN;
			out_idx = nfds++;
		}
		if (nfds == 0)
		{
			if (exited)
				break;
			/* nothing to watch but the child itself */
			usleep(20000);
			continue;
		}
		if (poll(fds, nfds, wait_ms) < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		if (in_idx >= 0 && (fds[in_idx].revents & (POLLOUT | POLLERR | POLLHUP)))
		{
			ssize_t		n = write(in_pipe[1], data + written, len - written);

			if (n > 0)
				written += (size_t) n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				write_errno = errno;
			if (written == len || write_errno)
			{
				close(in_pipe[1]);
				in_open = 0;
			}
		}
		if (out_idx >= 0)
		{
			int			got_eof = 0;

			if (fds[out_idx].revents & (POLLIN | POLLHUP | POLLERR))
			{
				char		buf[4096];
				ssize_t		n = read(out_pipe[0], buf, sizeof(buf));

				if (n > 0)
				{
					size_t		keep = (size_t) n;

					if (keep > sizeof(output) - output_len)
						keep = sizeof(output) - output_len;
					memcpy(output + output_len, buf, keep);
					output_len += keep;
				}
				else if (n == 0 || (errno != EAGAIN && errno != EINTR))
					got_eof = 1;
			}
			else if (exited)
				got_eof = 1;	/* exited and nothing buffered */
			if (got_eof)
			{
				close(out_pipe[0]);
				out_open = 0;
			}
		}
	}

	if (in_open)
		close(in_pipe[1]);
	if (out_open)
		close(out_pipe[0]);
	/* what the command left in its input, seen through our read end */
	if (exited && ioctl(in_pipe[0], FIONREAD, &unread) != 0)
		unread = 0;
	close(in_pipe[0]);
	first_line(output, output_len, line, sizeof(line));

	if (wait_errno != 0)
	{
		snprintf(err, errlen,
				 "lost track of the sendmail command (waitpid: %s): whether it took the message is unknown",
				 strerror(wait_errno));
		return ITM_SEND_TEMPFAIL;
	}
	if (!exited)
	{
		/* the deadline passed: kill the whole group */
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		snprintf(err, errlen, "sendmail command timed out after %d s%s%s",
				 timeout_secs, line[0] ? ": " : "", line);
		return ITM_SEND_TEMPFAIL;
	}
	if (WIFSIGNALED(status))
	{
		snprintf(err, errlen, "sendmail command killed by signal %d%s%s",
				 WTERMSIG(status), line[0] ? ": " : "", line);
		return ITM_SEND_TEMPFAIL;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
	{
		snprintf(err, errlen, "sendmail command exited with status %d%s%s",
				 WEXITSTATUS(status), line[0] ? ": " : "", line);
		return classify_status(WEXITSTATUS(status));
	}

	/*
	 * Status 0 counts only for a command that read the whole message: one
	 * that stopped early (a lone "." taken for the end, a wrapper that read
	 * the headers only) did not send what we gave it.
	 */
	if (written != len)
	{
		snprintf(err, errlen,
				 "sendmail command exited 0 without reading the whole message (%s; %zu of %zu bytes written)",
				 write_errno ? strerror(write_errno) : "it stopped reading",
				 written, len);
		return ITM_SEND_TEMPFAIL;
	}
	if (unread > 0)
	{
		snprintf(err, errlen,
				 "sendmail command exited 0 without reading the whole message (%d of %zu bytes left unread)",
				 unread, len);
		return ITM_SEND_TEMPFAIL;
	}
	return ITM_SEND_OK;
}
