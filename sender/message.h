/*
 * message.h - building an invite email (RFC 5322 / MIME) with GMime 3
 *
 * Part of invitetomedia-sender.
 */
#ifndef ITM_MESSAGE_H
#define ITM_MESSAGE_H

#include <stddef.h>

/* The sender's identity: the From mailbox and the Message-ID domain. */
typedef struct itm_identity
{
	char	   *from_name;		/* display name, may be NULL */
	char	   *from_addr;		/* validated addr-spec */
	char	   *domain;			/* right-hand side of Message-IDs */
} itm_identity;

/* Call once before anything else / once at exit. */
void		itm_message_init(void);
void		itm_message_shutdown(void);

/* the GMime library version in use, e.g. "3.2.13" */
const char *itm_gmime_version(void);

/*
 * Parses and validates a --from value ("addr@example.com" or
 * "Name <addr@example.com>", the name optionally quoted; nothing else) and a --domain value (NULL: this host's name)
 * into *id.  Returns 0, or -1 with a message in err.
 */
int			itm_identity_init(itm_identity *id, const char *from,
							  const char *domain, char *err, size_t errlen);
void		itm_identity_free(itm_identity *id);

/*
 * The identity of one site's mail (extension 2.0, whose sites may set
 * from_address and message_id_domain): from_address, when not NULL,
 * replaces base's From mailbox, display name included (a site names a bare
 * address, and the display name of --from is the platform's, not the
 * site's); message_id_domain, when not NULL, replaces base's domain.  Both
 * are checked as --from's address and --domain are.  Returns 0 with a copy
 * in *id (itm_identity_free it), or -1 with a message in err.
 */
int			itm_identity_for_site(itm_identity *id, const itm_identity *base,
								  const char *from_address,
								  const char *message_id_domain,
								  char *err, size_t errlen);

/*
 * True if addr is a plain ASCII addr-spec (dot-atom local part, domain of
 * letters, digits and hyphens): nothing in it can end a header field or
 * add a recipient.
 */
int			itm_address_is_safe(const char *addr);

/*
 * Writes a masked form of an address for logs into buf: the first letter
 * of the local part, then "***@" and the domain.
 */
void		itm_mask_address(const char *addr, char *buf, size_t buflen);

/*
 * Builds the complete message for one outbox row.  message_ref goes into
 * its Message-ID, <itm-MESSAGE_REF@DOMAIN>: the message's key (a UUID),
 * or its id against a database without keys (extension 1.0).  On success
 * returns 0 and a malloc'd buffer (*out, *outlen) holding the message with
 * LF line ends, as a sendmail command reads it.  On failure returns -1 if
 * the row cannot make a message (an invalid recipient address, no body,
 * text that is not UTF-8: retrying will not change that) or -2 if
 * building failed for another reason (out of memory), with the reason in
 * err (the reason never contains the body).
 */
int			itm_build_message(const itm_identity *id, const char *message_ref,
							  const char *to_email, const char *to_name,
							  const char *subject, const char *body,
							  char **out, size_t *outlen,
							  char *err, size_t errlen);

#endif							/* ITM_MESSAGE_H */
