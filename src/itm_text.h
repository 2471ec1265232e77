/*-------------------------------------------------------------------------
 *
 * itm_text.h
 *	  Pure C parts of invitetomedia: token format, email and domain syntax,
 *	  text hygiene and template rendering.
 *
 * Nothing here depends on the backend, so the same code is linked into the
 * extension and into the libFuzzer harnesses (fuzz/).  Every function takes
 * explicit lengths and never reads past them; strings need not be
 * NUL-terminated.
 *
 * src/itm_text.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ITM_TEXT_H
#define ITM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Token: "itm_" followed by the URL-safe base64 (no padding) of 32 random
 * bytes and a 4-byte CRC-32 of them: 4 + 48 = 52 characters.  A guest
 * link's token is the same with "itg_": each kind is refused where the
 * other is expected before any table is read.
 */
#define ITM_TOKEN_PREFIX		"itm_"
#define ITM_GUEST_TOKEN_PREFIX	"itg_"
#define ITM_TOKEN_PREFIX_LEN	4
#define ITM_TOKEN_RANDOM_BYTES	32
#define ITM_TOKEN_PAYLOAD_BYTES (ITM_TOKEN_RANDOM_BYTES + 4)
#define ITM_TOKEN_LEN			(ITM_TOKEN_PREFIX_LEN + ITM_TOKEN_PAYLOAD_BYTES / 3 * 4)

extern uint32_t itm_crc32(const unsigned char *data, size_t len);
extern void itm_token_encode(const unsigned char random[ITM_TOKEN_RANDOM_BYTES],
							 char out[ITM_TOKEN_LEN + 1]);
extern bool itm_token_valid(const char *s, size_t len);
extern void itm_token_encode_prefix(const unsigned char random[ITM_TOKEN_RANDOM_BYTES],
									const char *prefix, char out[ITM_TOKEN_LEN + 1]);
extern bool itm_token_valid_prefix(const char *s, size_t len, const char *prefix);

/* Limits on what invite_create accepts. */
#define ITM_EMAIL_MAX_LEN		254
#define ITM_LOCAL_MAX_LEN		64
#define ITM_DOMAIN_MAX_LEN		253
#define ITM_LABEL_MAX_LEN		63
#define ITM_NAME_MAX_CHARS		100
#define ITM_ID_MAX_LEN			255

/* Domain syntax: 0 if valid, else an ITM_DOMAIN_* code. */
#define ITM_DOMAIN_OK			0
#define ITM_DOMAIN_EMPTY		1
#define ITM_DOMAIN_TOO_LONG		2
#define ITM_DOMAIN_NON_ASCII	3
#define ITM_DOMAIN_BAD_CHAR		4
#define ITM_DOMAIN_BAD_LABEL	5
#define ITM_DOMAIN_ONE_LABEL	6
#define ITM_DOMAIN_NUMERIC_TLD	7

extern int	itm_domain_check(const char *s, size_t len);
extern const char *itm_domain_problem(int code);

/* Email (addr-spec) syntax: 0 if valid, else an ITM_EMAIL_* code. */
#define ITM_EMAIL_OK			0
#define ITM_EMAIL_EMPTY			1
#define ITM_EMAIL_TOO_LONG		2
#define ITM_EMAIL_NO_AT			3
#define ITM_EMAIL_MANY_AT		4
#define ITM_EMAIL_QUOTED		5
#define ITM_EMAIL_LOCAL_EMPTY	6
#define ITM_EMAIL_LOCAL_TOO_LONG 7
#define ITM_EMAIL_LOCAL_BAD		8
#define ITM_EMAIL_NON_ASCII		9
#define ITM_EMAIL_DOMAIN		10	/* domain part invalid: see *domain_code */

extern int	itm_email_check(const char *s, size_t len, size_t *at_offset,
							int *domain_code);
extern const char *itm_email_problem(int code);

/*
 * Text hygiene.  Returns the first code point that is not allowed in names,
 * ids and addresses (C0 and C1 controls, DEL, line and paragraph separators,
 * bidirectional formatting marks, zero-width space, word joiner, BOM), or -1 if there is none.  Input is UTF-8
 * as validated by the server; a malformed sequence is reported as U+FFFD.
 */
extern int32_t itm_text_forbidden(const char *s, size_t len);
extern size_t itm_utf8_chars(const char *s, size_t len);
extern void itm_trim_spaces(const char **s, size_t *len);

/*
 * Makes s (len bytes) one line, in place: every run of line-breaking or
 * control code points (C0 and C1 controls, DEL, U+2028, U+2029) becomes one
 * space.  Returns the new length, never more than len.  For email subjects:
 * a media title may hold a line break, a header must not.
 */
extern size_t itm_single_line(char *s, size_t len);

/* Template placeholders, in the order of the values passed to itm_render. */
typedef enum ItmPlaceholder
{
	ITM_PH_URL = 0,
	ITM_PH_FIRST_NAME,
	ITM_PH_LAST_NAME,
	ITM_PH_EMAIL,
	ITM_PH_MEDIA_TITLE,
	ITM_PH_ROLE,
	ITM_PH_EXPIRES_AT,
	ITM_PH_INVITER_NAME,
	ITM_PH_COUNT
} ItmPlaceholder;

/*
 * Single-pass substitution of {NAME} placeholders: substituted values are
 * copied, never scanned again, so a name containing "{URL}" stays literal.
 * Unknown placeholders are copied as they are.  With out == NULL only the
 * length is computed; otherwise out must hold that many bytes (no NUL is
 * written).  Returns the rendered length.
 */
extern size_t itm_render(const char *tmpl, size_t tlen,
						 const char *const values[ITM_PH_COUNT],
						 const size_t lens[ITM_PH_COUNT], char *out);

#endif							/* ITM_TEXT_H */
