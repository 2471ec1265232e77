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
 *    by the text "{URL}" gives, where each value was, the literal "{URL}".
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
