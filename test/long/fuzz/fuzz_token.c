/*-------------------------------------------------------------------------
 *
 * fuzz_token.c
 *	  libFuzzer harness for the token format of src/itm_text.c.
 *
 * Checks, for every input:
 *  - itm_token_valid() never reads outside the input (the input is copied
 *    into a heap block of exactly its size, so AddressSanitizer sees any
 *    over-read) and accepts only a canonical token: if it says valid, the
 *    string decodes to 32 bytes whose encoding is the same string;
 *  - round trip: the first 32 bytes, taken as the random part, encode to a
 *    52-character token that is valid;
 *  - every single-character change of that token (position and new
 *    character chosen by the input) makes it invalid: CRC-32 catches every
 *    burst of up to 32 bits, and one base64url character is 6 bits;
 *  - the two kinds never pass for each other: a valid invite token is not a
 *    valid guest token and the other way round, and the guest encoding of
 *    the same bytes differs from the invite one in the prefix only.
 *
 * Build: see fuzz/fuzz.mk.
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

static const char alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Reference decoder, written independently of itm_text.c. */
static int
decode_char(unsigned char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(alphabet, c);
	return p ? (int) (p - alphabet) : -1;
}

static int
reference_decode(const char *s, unsigned char out[ITM_TOKEN_PAYLOAD_BYTES])
{
	unsigned int bits = 0;
	int			nbits = 0;
	size_t		o = 0;
	size_t		i;

	for (i = ITM_TOKEN_PREFIX_LEN; i < ITM_TOKEN_LEN; i++)
	{
		int			v = decode_char((unsigned char) s[i]);

		if (v < 0)
			return 0;
		bits = (bits << 6) | (unsigned int) v;
		nbits += 6;
		if (nbits >= 8)
		{
			nbits -= 8;
			out[o++] = (unsigned char) (bits >> nbits);
			bits &= (1u << nbits) - 1;
		}
	}
	return o == ITM_TOKEN_PAYLOAD_BYTES;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char	   *copy = malloc(size ? size : 1);
	bool		valid;

	if (size)
		memcpy(copy, data, size);
	valid = itm_token_valid(copy, size);
	if (valid)
	{
		unsigned char payload[ITM_TOKEN_PAYLOAD_BYTES];
		char		again[ITM_TOKEN_LEN + 1];

		CHECK(size == ITM_TOKEN_LEN);
		CHECK(memcmp(copy, ITM_TOKEN_PREFIX, ITM_TOKEN_PREFIX_LEN) == 0);
		CHECK(reference_decode(copy, payload));
		itm_token_encode(payload, again);
		CHECK(memcmp(again, copy, ITM_TOKEN_LEN) == 0);
	}
	free(copy);

	if (size >= ITM_TOKEN_RANDOM_BYTES)
	{
		unsigned char random[ITM_TOKEN_RANDOM_BYTES];
		char		token[ITM_TOKEN_LEN + 1];
		unsigned char payload[ITM_TOKEN_PAYLOAD_BYTES];
		size_t		pos;
		char		c;

		memcpy(random, data, sizeof(random));
		memset(token, 0x7f, sizeof(token));
		itm_token_encode(random, token);
		CHECK(token[ITM_TOKEN_LEN] == '\0');
		CHECK(strlen(token) == ITM_TOKEN_LEN);
		CHECK(itm_token_valid(token, ITM_TOKEN_LEN));
		CHECK(reference_decode(token, payload));
		CHECK(memcmp(payload, random, sizeof(random)) == 0);
		/* a valid token followed or preceded by anything is not valid */
		CHECK(!itm_token_valid(token, ITM_TOKEN_LEN - 1));

		/* the guest kind: same payload, its own prefix, never the other's */
		{
			char		guest[ITM_TOKEN_LEN + 1];

			itm_token_encode_prefix(random, ITM_GUEST_TOKEN_PREFIX, guest);
			CHECK(itm_token_valid_prefix(guest, ITM_TOKEN_LEN, ITM_GUEST_TOKEN_PREFIX));
			CHECK(!itm_token_valid(guest, ITM_TOKEN_LEN));
			CHECK(!itm_token_valid_prefix(token, ITM_TOKEN_LEN, ITM_GUEST_TOKEN_PREFIX));
			CHECK(memcmp(guest + ITM_TOKEN_PREFIX_LEN, token + ITM_TOKEN_PREFIX_LEN,
						 ITM_TOKEN_LEN - ITM_TOKEN_PREFIX_LEN) == 0);
		}

		/* one character changed: position and replacement from the input */
		pos = size > 32 ? data[32] % ITM_TOKEN_LEN : 0;
		c = size > 33 ? (char) data[33] : 'A';
		if (c == token[pos])
			c = (c == 'A') ? 'B' : 'A';
		token[pos] = c;
		CHECK(!itm_token_valid(token, ITM_TOKEN_LEN));
	}
	return 0;
}
