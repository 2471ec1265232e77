/*-------------------------------------------------------------------------
 *
 * itm_text.c
 *	  Token format, email and domain syntax, text hygiene and template
 *	  rendering for invitetomedia, in plain C.
 *
 * Why a checksum in the token: a mistyped, truncated or invented token is
 * refused by arithmetic alone, before any table is read, so scanning for
 * tokens costs the server nothing and leaves no lock or record behind.
 * CRC-32 is not a security measure (the 256 random bits are); it only makes
 * the token self-checking, like the tokens of several code hosts.
 *
 * Why such strict email syntax: the invitee types the address on the lobby
 * page and it is compared case-insensitively with the invited one, and the
 * address ends up in an email header.  Quoted local parts, comments and
 * non-ASCII addresses would make both the comparison and the header
 * ambiguous, so they are refused with a clear reason; internationalised
 * domains are accepted in their punycode (xn--) form.
 *
 * src/itm_text.c
 *
 *-------------------------------------------------------------------------
 */
#include "itm_text.h"

#include <string.h>

static const char b64url[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* CRC-32 (IEEE 802.3, reflected), bitwise: 36 bytes per call, no table needed */
uint32_t
itm_crc32(const unsigned char *data, size_t len)
{
	uint32_t	crc = 0xFFFFFFFFu;
	size_t		i;
	int			k;

	for (i = 0; i < len; i++)
	{
		crc ^= data[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return crc ^ 0xFFFFFFFFu;
}

static void
PayloadFill(const unsigned char random[ITM_TOKEN_RANDOM_BYTES],
			unsigned char payload[ITM_TOKEN_PAYLOAD_BYTES])
{
	uint32_t	crc = itm_crc32(random, ITM_TOKEN_RANDOM_BYTES);

	memcpy(payload, random, ITM_TOKEN_RANDOM_BYTES);
	payload[32] = (unsigned char) (crc >> 24);
	payload[33] = (unsigned char) (crc >> 16);
	payload[34] = (unsigned char) (crc >> 8);
	payload[35] = (unsigned char) crc;
}

void
itm_token_encode(const unsigned char random[ITM_TOKEN_RANDOM_BYTES],
				 char out[ITM_TOKEN_LEN + 1])
{
	itm_token_encode_prefix(random, ITM_TOKEN_PREFIX, out);
}

/* prefix: ITM_TOKEN_PREFIX_LEN characters */
void
itm_token_encode_prefix(const unsigned char random[ITM_TOKEN_RANDOM_BYTES],
						const char *prefix, char out[ITM_TOKEN_LEN + 1])
{
	unsigned char payload[ITM_TOKEN_PAYLOAD_BYTES];
	char	   *p = out + ITM_TOKEN_PREFIX_LEN;
	int			i;

	PayloadFill(random, payload);
	memcpy(out, prefix, ITM_TOKEN_PREFIX_LEN);
	/* 36 bytes are exactly 12 groups of 3: no padding */
	for (i = 0; i < ITM_TOKEN_PAYLOAD_BYTES; i += 3)
	{
		uint32_t	v = ((uint32_t) payload[i] << 16) |
			((uint32_t) payload[i + 1] << 8) | payload[i + 2];

		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
		*p++ = b64url[(v >> 6) & 63];
		*p++ = b64url[v & 63];
	}
	*p = '\0';
}

static int
B64urlValue(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

bool
itm_token_valid(const char *s, size_t len)
{
	return itm_token_valid_prefix(s, len, ITM_TOKEN_PREFIX);
}

bool
itm_token_valid_prefix(const char *s, size_t len, const char *prefix)
{
	unsigned char payload[ITM_TOKEN_PAYLOAD_BYTES];
	const unsigned char *p;
	uint32_t	crc;
	int			i;

	if (len != ITM_TOKEN_LEN || memcmp(s, prefix, ITM_TOKEN_PREFIX_LEN) != 0)
		return false;
	p = (const unsigned char *) s + ITM_TOKEN_PREFIX_LEN;
	for (i = 0; i < ITM_TOKEN_PAYLOAD_BYTES; i += 3, p += 4)
	{
		int			a = B64urlValue(p[0]),
					b = B64urlValue(p[1]),
					c = B64urlValue(p[2]),
					d = B64urlValue(p[3]);
		uint32_t	v;

		if (a < 0 || b < 0 || c < 0 || d < 0)
			return false;
		v = ((uint32_t) a << 18) | ((uint32_t) b << 12) | ((uint32_t) c << 6) | (uint32_t) d;
		payload[i] = (unsigned char) (v >> 16);
		payload[i + 1] = (unsigned char) (v >> 8);
		payload[i + 2] = (unsigned char) v;
	}
	crc = ((uint32_t) payload[32] << 24) | ((uint32_t) payload[33] << 16) |
		((uint32_t) payload[34] << 8) | payload[35];
	return crc == itm_crc32(payload, ITM_TOKEN_RANDOM_BYTES);
}

static bool
IsAsciiAlnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int
itm_domain_check(const char *s, size_t len)
{
	size_t		i;
	size_t		label_start = 0;
	int			labels = 0;
	bool		numeric = true;		/* the current label is all digits so far */
	bool		tld_numeric = false;

	if (len == 0)
		return ITM_DOMAIN_EMPTY;
	if (len > ITM_DOMAIN_MAX_LEN)
		return ITM_DOMAIN_TOO_LONG;
	for (i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80)
			return ITM_DOMAIN_NON_ASCII;

	for (i = 0; i <= len; i++)
	{
		unsigned char c = (i < len) ? (unsigned char) s[i] : '.';

		if (c == '.')
		{
			size_t		llen = i - label_start;

			/* empty label (leading, trailing or double dot), or too long */
			if (llen == 0 || llen > ITM_LABEL_MAX_LEN)
				return ITM_DOMAIN_BAD_LABEL;
			if (s[label_start] == '-' || s[i - 1] == '-')
				return ITM_DOMAIN_BAD_LABEL;
			labels++;
			tld_numeric = numeric;
			numeric = true;
			label_start = i + 1;
		}
		else if (IsAsciiAlnum(c) || c == '-')
		{
			if (!(c >= '0' && c <= '9'))
				numeric = false;
		}
		else
			return ITM_DOMAIN_BAD_CHAR;
	}
	if (labels < 2)
		return ITM_DOMAIN_ONE_LABEL;
	/* an all-digit last label means an IP address, not a domain */
	if (tld_numeric)
		return ITM_DOMAIN_NUMERIC_TLD;
	return ITM_DOMAIN_OK;
}

const char *
itm_domain_problem(int code)
{
	switch (code)
	{
		case ITM_DOMAIN_OK:
			return "valid";
		case ITM_DOMAIN_EMPTY:
			return "The domain is empty.";
		case ITM_DOMAIN_TOO_LONG:
			return "The domain is longer than 253 characters.";
		case ITM_DOMAIN_NON_ASCII:
			return "The domain contains non-ASCII characters.";
		case ITM_DOMAIN_BAD_CHAR:
			return "The domain may contain only letters, digits, hyphens and dots.";
		case ITM_DOMAIN_BAD_LABEL:
			return "Each part of the domain must be 1 to 63 characters and must not begin or end with a hyphen.";
		case ITM_DOMAIN_ONE_LABEL:
			return "The domain needs at least two parts, such as university.edu.";
		case ITM_DOMAIN_NUMERIC_TLD:
			return "The domain ends in a number: IP addresses are not accepted.";
	}
	return "The domain is invalid.";
}

/* RFC 5322 atext, the characters of an unquoted local part besides dots */
static bool
IsAtext(unsigned char c)
{
	return IsAsciiAlnum(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

int
itm_email_check(const char *s, size_t len, size_t *at_offset, int *domain_code)
{
	size_t		i;
	size_t		at = len;
	int			dcode;

	if (domain_code)
		*domain_code = ITM_DOMAIN_OK;
	if (len == 0)
		return ITM_EMAIL_EMPTY;
	if (len > ITM_EMAIL_MAX_LEN)
		return ITM_EMAIL_TOO_LONG;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"')
			return ITM_EMAIL_QUOTED;
		if (c >= 0x80)
			return ITM_EMAIL_NON_ASCII;
		if (c == '@')
		{
			if (at != len)
				return ITM_EMAIL_MANY_AT;
			at = i;
		}
	}
	if (at == len)
		return ITM_EMAIL_NO_AT;
	if (at == 0)
		return ITM_EMAIL_LOCAL_EMPTY;
	if (at > ITM_LOCAL_MAX_LEN)
		return ITM_EMAIL_LOCAL_TOO_LONG;
	/* dot-atom: atext runs separated by single dots */
	if (s[0] == '.' || s[at - 1] == '.')
		return ITM_EMAIL_LOCAL_BAD;
	for (i = 0; i < at; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '.')
		{
			if (s[i + 1] == '.')
				return ITM_EMAIL_LOCAL_BAD;
		}
		else if (!IsAtext(c))
			return ITM_EMAIL_LOCAL_BAD;
	}
	dcode = itm_domain_check(s + at + 1, len - at - 1);
	if (dcode != ITM_DOMAIN_OK)
	{
		if (domain_code)
			*domain_code = dcode;
		return ITM_EMAIL_DOMAIN;
	}
	if (at_offset)
		*at_offset = at;
	return ITM_EMAIL_OK;
}

const char *
itm_email_problem(int code)
{
	switch (code)
	{
		case ITM_EMAIL_OK:
			return "valid";
		case ITM_EMAIL_EMPTY:
			return "The address is empty.";
		case ITM_EMAIL_TOO_LONG:
			return "The address is longer than 254 characters.";
		case ITM_EMAIL_NO_AT:
			return "The address has no @.";
		case ITM_EMAIL_MANY_AT:
			return "The address has more than one @.";
		case ITM_EMAIL_QUOTED:
			return "Quoted local parts are not accepted.";
		case ITM_EMAIL_LOCAL_EMPTY:
			return "The part before @ is empty.";
		case ITM_EMAIL_LOCAL_TOO_LONG:
			return "The part before @ is longer than 64 characters.";
		case ITM_EMAIL_LOCAL_BAD:
			return "The part before @ may contain only letters, digits, single dots and !#$%&'*+/=?^_`{|}~-, and may not begin or end with a dot.";
		case ITM_EMAIL_NON_ASCII:
			return "The address contains non-ASCII characters.";
		case ITM_EMAIL_DOMAIN:
			return "The domain after @ is invalid.";
	}
	return "The address is invalid.";
}

/*
 * Decodes one UTF-8 sequence at s (len > 0); sets *adv to its length.
 * Malformed input (which the server never hands us) yields U+FFFD.
 */
static int32_t
Utf8Next(const unsigned char *s, size_t len, size_t *adv)
{
	unsigned char c = s[0];
	int			n;
	int32_t		cp;
	int			i;

	if (c < 0x80)
	{
		*adv = 1;
		return c;
	}
	if ((c & 0xE0) == 0xC0)
	{
		n = 2;
		cp = c & 0x1F;
	}
	else if ((c & 0xF0) == 0xE0)
	{
		n = 3;
		cp = c & 0x0F;
	}
	else if ((c & 0xF8) == 0xF0)
	{
		n = 4;
		cp = c & 0x07;
	}
	else
	{
		*adv = 1;
		return 0xFFFD;
	}
	if ((size_t) n > len)
	{
		/* truncated: step over the lead byte only, so what follows is seen */
		*adv = 1;
		return 0xFFFD;
	}
	for (i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
		{
			*adv = (size_t) i;
			return 0xFFFD;
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	*adv = (size_t) n;
	return cp;
}

static bool
CodePointForbidden(int32_t cp)
{
	return cp < 0x20 || cp == 0x7F ||
		(cp >= 0x80 && cp <= 0x9F) ||	/* C1 controls, NEL included */
		cp == 0x2028 || cp == 0x2029 || /* line and paragraph separators */
		cp == 0x061C || cp == 0x200E || cp == 0x200F || /* bidi marks */
		cp == 0x200B || cp == 0x2060 || cp == 0xFEFF || /* invisible spaces */
		(cp >= 0x202A && cp <= 0x202E) ||	/* bidi embeddings, overrides */
		(cp >= 0x2066 && cp <= 0x2069) ||	/* bidi isolates */
		cp == 0xFFFD;
}

int32_t
itm_text_forbidden(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		adv;
		int32_t		cp = Utf8Next(p + i, len - i, &adv);

		if (CodePointForbidden(cp))
			return cp;
		i += adv;
	}
	return -1;
}

size_t
itm_utf8_chars(const char *s, size_t len)
{
	size_t		n = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

void
itm_trim_spaces(const char **s, size_t *len)
{
	while (*len > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t'))
	{
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

size_t
itm_single_line(char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;
	size_t		n = 0;
	bool		in_run = false;

	while (i < len)
	{
		size_t		adv;
		int32_t		cp = Utf8Next(p + i, len - i, &adv);

		if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
			cp == 0x2028 || cp == 0x2029)
		{
			if (!in_run)
				s[n++] = ' ';
			in_run = true;
		}
		else
		{
			/* n <= i: moving left never overwrites what is still to read */
			memmove(s + n, s + i, adv);
			n += adv;
			in_run = false;
		}
		i += adv;
	}
	return n;
}

static const struct
{
	const char *name;
	size_t		len;
}			placeholders[ITM_PH_COUNT] =
{
	[ITM_PH_URL] = {"{URL}", 5},
	[ITM_PH_FIRST_NAME] = {"{FIRST_NAME}", 12},
	[ITM_PH_LAST_NAME] = {"{LAST_NAME}", 11},
	[ITM_PH_EMAIL] = {"{EMAIL}", 7},
	[ITM_PH_MEDIA_TITLE] = {"{MEDIA_TITLE}", 13},
	[ITM_PH_ROLE] = {"{ROLE}", 6},
	[ITM_PH_EXPIRES_AT] = {"{EXPIRES_AT}", 12},
	[ITM_PH_INVITER_NAME] = {"{INVITER_NAME}", 14},
};

size_t
itm_render(const char *tmpl, size_t tlen,
		   const char *const values[ITM_PH_COUNT],
		   const size_t lens[ITM_PH_COUNT], char *out)
{
	size_t		i = 0;
	size_t		n = 0;

	while (i < tlen)
	{
		int			ph = -1;
		int			k;

		if (tmpl[i] == '{')
		{
			for (k = 0; k < ITM_PH_COUNT; k++)
			{
				if (tlen - i >= placeholders[k].len &&
					memcmp(tmpl + i, placeholders[k].name, placeholders[k].len) == 0)
				{
					ph = k;
					break;
				}
			}
		}
		if (ph >= 0)
		{
			if (out && lens[ph] > 0)
				memcpy(out + n, values[ph], lens[ph]);
			n += lens[ph];
			i += placeholders[ph].len;
		}
		else
		{
			if (out)
				out[n] = tmpl[i];
			n++;
			i++;
		}
	}
	return n;
}
