/*-------------------------------------------------------------------------
 *
 * fuzz_email.c
 *	  libFuzzer harness for email, domain and text-hygiene parsing in
 *	  src/itm_text.c.
 *
 * The input is copied into a heap block of exactly its size (no NUL), so
 * AddressSanitizer reports any read past the length the functions are given.
 * Properties:
 *  - itm_domain_check agrees with a reference checker written here
 *    independently (split on dots, per-label rules);
 *  - an address accepted by itm_email_check has exactly one '@' at
 *    *at_offset, a local part of 1..64 atext/dot characters without
 *    leading, trailing or double dots, and a domain itm_domain_check
 *    accepts; a refused address comes with a non-empty reason;
 *  - itm_text_forbidden returns -1 or a code point that is really in the
 *    input's forbidden set; itm_utf8_chars <= length; itm_trim_spaces
 *    stays inside the input and leaves no space or tab at either end.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itm_text.h"

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "property violated at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

static int
is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Reference: 1 if s[0..len) is an acceptable domain. */
static int
reference_domain_ok(const char *s, size_t len)
{
	size_t		start = 0;
	size_t		labels = 0;
	int			last_all_digits = 0;

	if (len == 0 || len > 253)
		return 0;
	while (start <= len)
	{
		const char *dot = memchr(s + start, '.', len - start);
		size_t		end = dot ? (size_t) (dot - s) : len;
		size_t		l = end - start;
		size_t		i;
		int			all_digits = 1;

		if (l < 1 || l > 63)
			return 0;
		if (s[start] == '-' || s[end - 1] == '-')
			return 0;
		for (i = start; i < end; i++)
		{
			unsigned char c = (unsigned char) s[i];

			if (!is_alnum(c) && c != '-')
				return 0;
			if (!(c >= '0' && c <= '9'))
				all_digits = 0;
		}
		labels++;
		last_all_digits = all_digits;
		if (!dot)
			break;
		start = end + 1;
	}
	return labels >= 2 && !last_all_digits;
}

static int
is_atext(unsigned char c)
{
	return is_alnum(c) || (c != 0 && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

static int32_t
decode_utf8(const unsigned char *s, size_t len, size_t *adv)
{
	int			n;
	int32_t		cp;
	size_t		i;

	if (s[0] < 0x80)
	{
		*adv = 1;
		return s[0];
	}
	n = (s[0] >= 0xF0 && s[0] < 0xF8) ? 4 : (s[0] >= 0xE0 && s[0] < 0xF0) ? 3 :
		(s[0] >= 0xC0 && s[0] < 0xE0) ? 2 : 0;
	if (n == 0)
	{
		*adv = 1;
		return 0xFFFD;
	}
	if ((size_t) n > len)
	{
		*adv = len;
		return 0xFFFD;
	}
	cp = s[0] & (0x7F >> n);
	for (i = 1; i < (size_t) n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
		{
			*adv = i;
			return 0xFFFD;
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	*adv = (size_t) n;
	return cp;
}

static int
forbidden_cp(int32_t cp)
{
	static const int32_t singles[] = {0x7F, 0x2028, 0x2029, 0x061C, 0x200E, 0x200F,
		0x200B, 0x2060, 0xFEFF, 0xFFFD};
	size_t		i;

	if (cp < 0x20 || (cp >= 0x80 && cp <= 0x9F) ||
		(cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
		return 1;
	for (i = 0; i < sizeof(singles) / sizeof(singles[0]); i++)
		if (cp == singles[i])
			return 1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char	   *s = malloc(size ? size : 1);
	size_t		at = (size_t) -1;
	int			dcode = -1;
	int			code;
	int			dres;
	int32_t		cp;
	const char *t;
	size_t		tlen;

	if (size)
		memcpy(s, data, size);

	/* domain: agree with the reference */
	dres = itm_domain_check(s, size);
	CHECK((dres == ITM_DOMAIN_OK) == (reference_domain_ok(s, size) == 1));
	CHECK(itm_domain_problem(dres) != NULL && itm_domain_problem(dres)[0] != '\0');

	/* email */
	code = itm_email_check(s, size, &at, &dcode);
	CHECK(itm_email_problem(code) != NULL && itm_email_problem(code)[0] != '\0');
	if (code == ITM_EMAIL_OK)
	{
		size_t		i;

		CHECK(size >= 3 && size <= ITM_EMAIL_MAX_LEN);
		CHECK(at >= 1 && at <= ITM_LOCAL_MAX_LEN && at < size);
		CHECK(s[at] == '@');
		CHECK(memchr(s, '@', at) == NULL);
		CHECK(memchr(s + at + 1, '@', size - at - 1) == NULL);
		CHECK(s[0] != '.' && s[at - 1] != '.');
		for (i = 0; i < at; i++)
		{
			unsigned char c = (unsigned char) s[i];

			CHECK(c == '.' ? s[i + 1] != '.' : is_atext(c));
		}
		CHECK(reference_domain_ok(s + at + 1, size - at - 1));
		CHECK(dcode == ITM_DOMAIN_OK);
	}
	else if (code == ITM_EMAIL_DOMAIN)
		CHECK(dcode != ITM_DOMAIN_OK);

	/* text hygiene */
	cp = itm_text_forbidden(s, size);
	{
		const unsigned char *p = (const unsigned char *) s;
		size_t		i = 0;
		int32_t		first = -1;

		while (i < size)
		{
			size_t		adv;
			int32_t		c = decode_utf8(p + i, size - i, &adv);

			if (forbidden_cp(c))
			{
				first = c;
				break;
			}
			i += adv;
		}
		CHECK(cp == first);
	}
	CHECK(itm_utf8_chars(s, size) <= size);

	t = s;
	tlen = size;
	itm_trim_spaces(&t, &tlen);
	CHECK(t >= s && t + tlen <= s + size);
	if (tlen > 0)
		CHECK(t[0] != ' ' && t[0] != '\t' && t[tlen - 1] != ' ' && t[tlen - 1] != '\t');

	free(s);
	return 0;
}
