/*
 * spawn.h - handing one message to a sendmail-compatible command
 *
 * Part of invitetomedia-sender.
 */
#ifndef ITM_SPAWN_H
#define ITM_SPAWN_H

#include <stddef.h>

/* what became of a message handed to the sendmail command */
typedef enum
{
	ITM_SEND_OK = 0,			/* the command read it all and exited 0 */
	ITM_SEND_TEMPFAIL,			/* try again later: EX_TEMPFAIL (75), any
								 * status outside sysexits' 64..78, a
								 * signal, a timeout, input left unread, no
								 * pipe or process */
	ITM_SEND_PERMFAIL			/* trying again will not help: a sysexits
								 * code other than EX_TEMPFAIL */
} itm_send_result;

/*
 * Runs command with /bin/sh -c in its own process group (so a Ctrl-C or a
 * SIGTERM sent to the sender's group does not kill it half-way), writes
 * data to its standard input and waits for it to exit, at most
 * timeout_secs seconds (then it is killed).
 *
 * Returns ITM_SEND_OK if the command read the whole message and exited
 * with status 0.  Otherwise describes the failure in err as printable
 * ASCII (the exit status or signal and the first line the command wrote)
 * and says whether it is worth another try.
 */
itm_send_result itm_run_sendmail(const char *command, const char *data, size_t len,
								 int timeout_secs, char *err, size_t errlen);

#endif							/* ITM_SPAWN_H */
