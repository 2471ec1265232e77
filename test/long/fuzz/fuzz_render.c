/*-------------------------------------------------------------------------
 *
 * fuzz_render.c
 *	  libFuzzer harness for itm_render() (template substitution) in
 *	  src/itm_text.c.
 *
 * The input is split on 0xFF bytes (never valid UTF-8, so never in a
 * template or value the server hands over): template, then up to eight
 * values for {URL}, {FIRST_NAME}, ... {INVITER_NAME}; missing values are
 * empty.  Every piece is copied into a heap block of exactly its size.
 * Properties:
 *  - the length pass (out == NULL) and the writing pass return the same
 *    length, and the writing pass stays inside a block of exactly that size;
 *  - the output equals a reference renderer written here: one left-to-right
 *    pass, a placeholder is replaced by its value and the value is never
 *    scanned again, anything else is copied;
 *  - values are never rescanned: rendering again with every value replaced
 *    by the text "{URL}" gives, where each value was, the literal "{URL}";
 *  - itm_single_line() on the rendered text (the subject's treatment) leaves
 *    no C0/C1 control, DEL, U+2028 or U+2029, never grows the text, is
 *    idempotent, and changes nothing in text that had none of them.
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

static const char *const names[ITM_PH_COUNT] = {
	"{URL}", "{FIRST_NAME}", "{LAST_NAME}", "{EMAIL}", "{MEDIA_TITLE}",
	"{ROLE}", "{EXPIRES_AT}", "{INVITER_NAME}"
};

/* Reference renderer: returns a malloc'd buffer, length in *outlen. */
static char *
reference_render(const char *t, size_t tlen, const char *const *v,
				 const size_t *vl, size_t *outlen)
{
	size_t		cap = 16;
	size_t		n = 0;
	char	   *out = malloc(cap);
	size_t		i = 0;

	while (i < tlen)
	{
		const char *piece = t + i;
		size_t		plen = 1;
		size_t		step = 1;
		int			k;

		for (k = 0; k < ITM_PH_COUNT; k++)
		{
			size_t		nl = strlen(names[k]);

			if (tlen - i >= nl && strncmp(t + i, names[k], nl) == 0)
			{
				piece = v[k];
				plen = vl[k];
				step = nl;
				break;
			}
		}
		while (n + plen > cap)
		{
			cap *= 2;
			out = realloc(out, cap);
		}
		if (plen)
			memcpy(out + n, piece, plen);
		n += plen;
		i += step;
	}
	*outlen = n;
	return out;
}

static char *
dup_exact(const unsigned char *p, size_t len)
{
	char	   *c = malloc(len ? len : 1);

	if (len)
		memcpy(c, p, len);
	return c;
}

/* true if the code point at s[i] (UTF-8) is one itm_single_line replaces */
static int
breaks_line(const unsigned char *s, size_t len, size_t i)
{
	if (s[i] < 0x20 || s[i] == 0x7F)
		return 1;
	if (s[i] == 0xC2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F)
		return 1;
	if (s[i] == 0xE2 && i + 2 < len && s[i + 1] == 0x80 &&
		(s[i + 2] == 0xA8 || s[i + 2] == 0xA9))
		return 1;
	return 0;
}

/* strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) */
static int
valid_utf8(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		n;
		unsigned long cp;
		size_t		k;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 4, cp = c & 0x07;
		else
			return 0;
		if (i + n > len)
			return 0;
		for (k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			(cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return 0;
		i += n;
	}
	return 1;
}

static void
check_single_line(const char *text, size_t len)
{
	char	   *a = dup_exact((const unsigned char *) text, len);
	char	   *b;
	size_t		n;
	size_t		n2;
	size_t		i;
	int			had = 0;

	for (i = 0; i < len; i++)
		had |= breaks_line((const unsigned char *) text, len, i);
	n = itm_single_line(a, len);
	CHECK(n <= len);
	for (i = 0; i < n; i++)
		CHECK(!breaks_line((const unsigned char *) a, n, i));
	/* (the server hands over valid UTF-8 only; other input may change) */
	if (!had && valid_utf8((const unsigned char *) text, len))
		CHECK(n == len && (len == 0 || memcmp(a, text, len) == 0));
	b = dup_exact((const unsigned char *) a, n);
	n2 = itm_single_line(b, n);
	CHECK(n2 == n && (n == 0 || memcmp(a, b, n) == 0));
	free(b);
	free(a);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char	   *tmpl;
	size_t		tlen;
	char	   *vals[ITM_PH_COUNT];
	size_t		lens[ITM_PH_COUNT];
	const char *cvals[ITM_PH_COUNT];
	const char *urls[ITM_PH_COUNT];
	size_t		urllens[ITM_PH_COUNT];
	const unsigned char *p = data;
	const unsigned char *end = data + size;
	const unsigned char *sep;
	size_t		n;
	size_t		n2;
	size_t		refn;
	char	   *out;
	char	   *ref;
	int			k;

	sep = memchr(p, 0xFF, (size_t) (end - p));
	tlen = (size_t) ((sep ? sep : end) - p);
	tmpl = dup_exact(p, tlen);
	p = sep ? sep + 1 : end;
	for (k = 0; k < ITM_PH_COUNT; k++)
	{
		sep = p < end ? memchr(p, 0xFF, (size_t) (end - p)) : NULL;
		lens[k] = (size_t) ((sep ? sep : end) - p);
		vals[k] = dup_exact(p, lens[k]);
		cvals[k] = vals[k];
		p = sep ? sep + 1 : end;
		urls[k] = "{URL}";
		urllens[k] = 5;
	}

	/* length pass and writing pass agree, into a block of exactly n bytes */
	n = itm_render(tmpl, tlen, cvals, lens, NULL);
	out = malloc(n ? n : 1);
	n2 = itm_render(tmpl, tlen, cvals, lens, out);
	CHECK(n == n2);

	/* same output as the reference */
	ref = reference_render(tmpl, tlen, cvals, lens, &refn);
	CHECK(refn == n);
	CHECK(n == 0 || memcmp(out, ref, n) == 0);
	free(ref);

	/* the subject's treatment: one line, no control character */
	check_single_line(out, n);
	free(out);

	/* values are not rescanned: "{URL}" as every value stays literal */
	n = itm_render(tmpl, tlen, urls, urllens, NULL);
	out = malloc(n ? n : 1);
	CHECK(itm_render(tmpl, tlen, urls, urllens, out) == n);
	ref = reference_render(tmpl, tlen, urls, urllens, &refn);
	CHECK(refn == n && (n == 0 || memcmp(out, ref, n) == 0));
	free(ref);
	free(out);

	free(tmpl);
	for (k = 0; k < ITM_PH_COUNT; k++)
		free(vals[k]);
	return 0;
}
