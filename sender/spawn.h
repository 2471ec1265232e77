/*
 * spawn.h - handing one message to a sendmail-compatible command
 *
 * Part of invitetomedia-sender.
 */
#ifndef ITM_SPAWN_H
#define ITM_SPAWN_H

#include <stddef.h>

/*
 * Runs command with /bin/sh -c in its own process group (so a Ctrl-C or a
 * SIGTERM sent to the sender's group does not kill it half-way), writes
 * data to its standard input and waits for it to exit, at most
 * timeout_secs seconds (then it is killed).
 *
 * Returns 0 if the command read the whole message and exited with status
 * 0.  Otherwise returns -1 and describes the failure in err as printable
 * ASCII: the exit status or signal and the first line the command wrote.
 */
int			itm_run_sendmail(const char *command, const char *data, size_t len,
							 int timeout_secs, char *err, size_t errlen);

#endif							/* ITM_SPAWN_H */
