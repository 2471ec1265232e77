/*
 * message.c - building an invite email (RFC 5322 / MIME) with GMime 3
 *
 * GMime does the encoding: RFC 2047 encoded words for non-ASCII display
 * names and subjects, quoting of display names, header folding and the
 * quoted-printable body.  This file only decides what goes in, and refuses
 * anything that could end a header field early: the database already
 * rejects CR and LF in names and subjects, but the sender does not rely on
 * that.
 *
 * Part of invitetomedia-sender.
 */
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gmime/gmime.h>

void
itm_message_init(void)
{
	g_mime_init();
}

void
itm_message_shutdown(void)
{
	g_mime_shutdown();
}

const char *
itm_gmime_version(void)
{
	static char buf[32];

	snprintf(buf, sizeof(buf), "%u.%u.%u", gmime_major_version,
			 gmime_minor_version, gmime_micro_version);
	return buf;
}

/* RFC 5322 atext, the characters of a dot-atom besides '.' */
static int
is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* letters, digits, hyphens in dot-separated labels of 1..63 characters */
static int
domain_is_safe(const char *d)
{
	size_t		len = strlen(d);
	size_t		label = 0;

	if (len == 0 || len > 253)
		return 0;
	for (const char *p = d; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '.')
		{
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-'))
			return 0;
		if (c == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && d[len - 1] != '-';
}

int
itm_address_is_safe(const char *addr)
{
	const char *at;
	size_t		local_len;

	if (addr == NULL)
		return 0;
	at = strrchr(addr, '@');
	if (at == NULL || strlen(addr) > 254)
		return 0;
	local_len = (size_t) (at - addr);
	if (local_len == 0 || local_len > 64)
		return 0;
	/* dot-atom: atext runs separated by single dots */
	if (addr[0] == '.' || at[-1] == '.')
		return 0;
	for (const char *p = addr; p < at; p++)
	{
		if (*p == '.')
		{
			if (p[1] == '.')
				return 0;
		}
		else if (!is_atext((unsigned char) *p))
			return 0;
	}
	return domain_is_safe(at + 1);
}

void
itm_mask_address(const char *addr, char *buf, size_t buflen)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	if (!itm_address_is_safe(addr) || at == NULL)
	{
		snprintf(buf, buflen, "(invalid address)");
		return;
	}
	snprintf(buf, buflen, "%c***@%s", addr[0], at + 1);
}

/*
 * A copy of s fit for a header: control characters (CR, LF, TAB, ...)
 * become spaces, runs of spaces become one, no leading or trailing space.
 * s must be valid UTF-8 (bytes >= 0x80 are kept as they are).
 */
static char *
header_text(const char *s)
{
	char	   *out = g_malloc(strlen(s) + 1);
	char	   *o = out;
	int			pending_space = 0;

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f || *p == ' ')
		{
			pending_space = 1;
			continue;
		}
		if (pending_space && o != out)
			*o++ = ' ';
		pending_space = 0;
		*o++ = (char) *p;
	}
	*o = '\0';
	return out;
}

/* the body with CRLF and lone CR turned into LF, ending with a newline */
static char *
body_text(const char *s)
{
	size_t		len = strlen(s);
	char	   *out = g_malloc(len + 2);
	char	   *o = out;

	for (const char *p = s; *p; p++)
	{
		if (*p == '\r')
		{
			*o++ = '\n';
			if (p[1] == '\n')
				p++;
		}
		else
			*o++ = *p;
	}
	if (o == out || o[-1] != '\n')
		*o++ = '\n';
	*o = '\0';
	return out;
}

/*
 * The display name of a --from value: what precedes the '<', without
 * surrounding spaces, unquoted if the whole of it is one quoted string.
 * Returns NULL (name is malformed: an unbalanced quote, or a quote or
 * backslash outside a quoted string) or a g_malloc'd copy, "" for none.
 */
static char *
from_display_name(const char *start, const char *end)
{
	GString    *name;

	while (start < end && *start == ' ')
		start++;
	while (end > start && end[-1] == ' ')
		end--;
	if (start == end)
		return g_strdup("");
	name = g_string_new(NULL);
	if (*start == '"')
	{
		const char *p;

		/* a quoted-string: \x stands for x, and it must end at the end */
		for (p = start + 1; p < end && *p != '"'; p++)
		{
			if (*p == '\\' && p + 1 < end)
				p++;
			g_string_append_c(name, *p);
		}
		if (p != end - 1)
		{
			g_string_free(name, TRUE);
			return NULL;
		}
	}
	else
	{
		/*
		 * Unquoted: taken as the text it is (GMime quotes it on output),
		 * but a stray quote or backslash means the value was meant to be
		 * quoted and is not well formed.
		 */
		for (const char *p = start; p < end; p++)
		{
			if (*p == '"' || *p == '\\')
			{
				g_string_free(name, TRUE);
				return NULL;
			}
		}
		g_string_append_len(name, start, end - start);
	}
	return g_string_free(name, FALSE);
}

int
itm_identity_init(itm_identity *id, const char *from, const char *domain,
				  char *err, size_t errlen)
{
	const char *lt;
	const char *gt;
	const char *end;
	char	   *addr;
	char	   *name = NULL;

	memset(id, 0, sizeof(*id));
	if (from == NULL || !g_utf8_validate(from, -1, NULL))
	{
		snprintf(err, errlen, "--from is not valid UTF-8");
		return -1;
	}
	for (const char *p = from; *p; p++)
	{
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
		{
			snprintf(err, errlen, "--from contains a control character");
			return -1;
		}
	}

	/*
	 * Parsed here, strictly, rather than by an RFC 5322 address-list
	 * parser: such a parser recovers from what it does not understand
	 * ("a@b@c.com" became "a@b", "Media <a@b.com" was taken), and a From
	 * address that is not the one the operator meant is refused by relays
	 * or lands the mail in spam.  Two forms: "addr@host", or a display
	 * name (optional, may be quoted) and exactly one "<addr@host>" at the
	 * end.
	 */
	while (*from == ' ')
		from++;
	end = from + strlen(from);
	while (end > from && end[-1] == ' ')
		end--;
	lt = strchr(from, '<');
	gt = strchr(from, '>');
	if (lt == NULL && gt == NULL)
		addr = g_strndup(from, end - from);
	else if (lt != NULL && gt == end - 1 && strchr(lt + 1, '<') == NULL &&
			 gt > lt && (name = from_display_name(from, lt)) != NULL)
		addr = g_strndup(lt + 1, gt - lt - 1);
	else
	{
		snprintf(err, errlen,
				 "--from must be \"addr@example.com\" or \"Name <addr@example.com>\" (one address, the name optional), not \"%.200s\"",
				 from);
		return -1;
	}
	if (!itm_address_is_safe(addr))
	{
		snprintf(err, errlen,
				 "--from address \"%.200s\" is not a plain ASCII addr@host (one @, a dot-atom before it, a domain name after it)",
				 addr);
		g_free(addr);
		g_free(name);
		return -1;
	}
	id->from_addr = addr;
	if (name != NULL && *name != '\0')
		id->from_name = header_text(name);
	g_free(name);

	if (domain != NULL)
	{
		if (!domain_is_safe(domain))
		{
			itm_identity_free(id);
			snprintf(err, errlen, "--domain is not a valid domain name: %.200s", domain);
			return -1;
		}
		id->domain = g_strdup(domain);
	}
	else
	{
		char		host[256];

		if (gethostname(host, sizeof(host)) != 0)
			host[0] = '\0';
		host[sizeof(host) - 1] = '\0';
		id->domain = g_strdup(domain_is_safe(host) ? host : "localhost");
	}
	return 0;
}

void
itm_identity_free(itm_identity *id)
{
	g_free(id->from_name);
	g_free(id->from_addr);
	g_free(id->domain);
	memset(id, 0, sizeof(*id));
}

int
itm_identity_for_site(itm_identity *id, const itm_identity *base,
					  const char *from_address, const char *message_id_domain,
					  char *err, size_t errlen)
{
	memset(id, 0, sizeof(*id));
	if (from_address != NULL && !itm_address_is_safe(from_address))
	{
		snprintf(err, errlen,
				 "the site's from_address is not a plain ASCII addr@host (one @, a dot-atom before it, a domain name after it)");
		return -1;
	}
	if (message_id_domain != NULL && !domain_is_safe(message_id_domain))
	{
		snprintf(err, errlen, "the site's message_id_domain is not a valid domain name");
		return -1;
	}
	if (from_address != NULL)
		id->from_addr = g_strdup(from_address);
	else
	{
		id->from_addr = g_strdup(base->from_addr);
		id->from_name = g_strdup(base->from_name);
	}
	id->domain = g_strdup(message_id_domain != NULL ? message_id_domain : base->domain);
	return 0;
}

/*
 * Adds one mailbox to an address list.  Display names are encoded as UTF-8
 * (RFC 2047) when they are not ASCII, whatever smaller charset would do.
 */
static void
add_mailbox(InternetAddressList *list, const char *name, const char *addr)
{
	InternetAddress *ia = internet_address_mailbox_new(name, addr);

	internet_address_set_charset(ia, "utf-8");
	internet_address_list_add(list, ia);
	g_object_unref(ia);
}

/* a Message-ID's left part after "itm-": letters, digits, hyphens */
static int
message_ref_is_safe(const char *ref)
{
	size_t		len = ref ? strlen(ref) : 0;

	if (len == 0 || len > 64)
		return 0;
	for (const char *p = ref; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-'))
			return 0;
	}
	return 1;
}

/* p is at a body line that is just "." (body: where the body starts) */
static int
is_lone_dot(const unsigned char *data, size_t len, const unsigned char *body,
			const unsigned char *p)
{
	return body != NULL && p >= body && *p == '.' && p[-1] == '\n' &&
		(p + 1 == data + len || p[1] == '\n');
}

/*
 * Copies a formatted message into a malloc'd buffer, writing every body
 * line that is a lone "." as "=2E", its quoted-printable form.
 *
 * A sendmail run without -i (or -oi) takes a lone "." line for the end of
 * the message and drops the rest, and GMime's quoted-printable encoder
 * leaves a "." as it is, even one that its own soft line breaks put on a
 * line of its own.  "=2E" decodes to the same ".", so the message reads the
 * same whatever the mailer's options.  (Dot-stuffing, "..", would be read
 * back as two dots by a mailer run with -i.)  The body is all
 * quoted-printable, so every line after the header is one: headers cannot
 * hold a lone "." (a folded line starts with white space).
 */
static char *
copy_escaping_dots(const unsigned char *data, size_t len, size_t *outlen)
{
	const unsigned char *body = NULL;
	size_t		dots = 0;
	char	   *out;
	char	   *o;

	for (size_t i = 0; i + 1 < len; i++)
	{
		if (data[i] == '\n' && data[i + 1] == '\n')
		{
			body = data + i + 2;
			break;
		}
	}
	for (const unsigned char *p = data; p < data + len; p++)
		dots += is_lone_dot(data, len, body, p);
	out = malloc(len + 2 * dots + 1);
	if (out == NULL)
		return NULL;
	o = out;
	for (const unsigned char *p = data; p < data + len; p++)
	{
		if (is_lone_dot(data, len, body, p))
		{
			memcpy(o, "=2E", 3);
			o += 3;
		}
		else
			*o++ = (char) *p;
	}
	*o = '\0';
	*outlen = (size_t) (o - out);
	return out;
}

int
itm_build_message(const itm_identity *id, const char *message_ref,
				  const char *to_email, const char *to_name,
				  const char *subject, const char *body,
				  char **out, size_t *outlen, char *err, size_t errlen)
{
	GMimeMessage *msg;
	GMimeTextPart *part;
	GMimeStream *content_stream;
	GMimeDataWrapper *content;
	GMimeStream *stream;
	GMimeFormatOptions *options;
	GByteArray *bytes;
	GDateTime  *now;
	char	   *name;
	char	   *subj;
	char	   *text;
	char	   *msgid;

	*out = NULL;
	*outlen = 0;
	if (to_email == NULL || !itm_address_is_safe(to_email))
	{
		snprintf(err, errlen, "invalid recipient address (not a plain ASCII addr-spec)");
		return -1;
	}
	if (body == NULL)
	{
		snprintf(err, errlen, "message has no body");
		return -1;
	}
	if (!message_ref_is_safe(message_ref))
	{
		snprintf(err, errlen, "invalid message key (not letters, digits and hyphens)");
		return -1;
	}
	if ((to_name && !g_utf8_validate(to_name, -1, NULL)) ||
		(subject && !g_utf8_validate(subject, -1, NULL)) ||
		!g_utf8_validate(body, -1, NULL))
	{
		snprintf(err, errlen, "message is not valid UTF-8");
		return -1;
	}

	name = header_text(to_name ? to_name : "");
	subj = header_text(subject ? subject : "");
	text = body_text(body);
	msgid = g_strdup_printf("itm-%s@%s", message_ref, id->domain);
	now = g_date_time_new_now_local();

	/* pretty headers: From, To, Subject, Date, Message-Id, MIME-Version */
	msg = g_mime_message_new(TRUE);
	add_mailbox(g_mime_message_get_from(msg), id->from_name, id->from_addr);
	add_mailbox(g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO),
				*name ? name : NULL, to_email);
	g_mime_message_set_subject(msg, subj, "utf-8");
	g_mime_message_set_date(msg, now);
	g_mime_message_set_message_id(msg, msgid);
	/* RFC 3834: automatic replies should not answer this message */
	g_mime_object_set_header(GMIME_OBJECT(msg), "Auto-Submitted", "auto-generated", NULL);

	/*
	 * The body goes in as the UTF-8 bytes it is (g_mime_text_part_set_text
	 * would pick a smaller charset and convert); GMime encodes it as
	 * quoted-printable when the message is written.
	 */
	part = g_mime_text_part_new_with_subtype("plain");
	content_stream = g_mime_stream_mem_new_with_buffer(text, strlen(text));
	content = g_mime_data_wrapper_new_with_stream(content_stream,
												  GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(GMIME_PART(part), content);
	g_object_unref(content);
	g_object_unref(content_stream);
	g_mime_text_part_set_charset(part, "utf-8");
	g_mime_part_set_content_encoding(GMIME_PART(part),
									 GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
	g_mime_message_set_mime_part(msg, GMIME_OBJECT(part));
	g_object_unref(part);

	/* LF line ends: a sendmail command reads the local text format */
	options = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(options, GMIME_NEWLINE_FORMAT_UNIX);
	stream = g_mime_stream_mem_new();
	if (g_mime_object_write_to_stream(GMIME_OBJECT(msg), options, stream) < 0)
		snprintf(err, errlen, "could not format the message");
	else
	{
		bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(stream));
		*out = copy_escaping_dots(bytes->data, bytes->len, outlen);
		if (*out == NULL)
			snprintf(err, errlen, "out of memory");
		/* the body held a live link: do not leave copies lying around */
		memset(bytes->data, 0, bytes->len);
	}
	memset(text, 0, strlen(text));

	g_object_unref(stream);
	g_mime_format_options_free(options);
	g_object_unref(msg);
	g_date_time_unref(now);
	g_free(msgid);
	g_free(text);
	g_free(subj);
	g_free(name);
	/* the message was fine: building it failed for want of memory */
	return (*out == NULL) ? -2 : 0;
}
