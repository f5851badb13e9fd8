/*
 * smtp_parse.c: grammar checks for SMTP command arguments. Pure functions
 * over (pointer, length); the grammar being checked is quoted where the
 * code decides. Must never allocate or keep state.
 */
#include "smtp/smtp_parse.h"

#include <string.h>

#include "common/envelope.h"

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int hexval(int c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool smtp_word_eq(const char *s, size_t len, const char *kw)
{
	size_t n = strlen(kw);

	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s[i]) != lower((unsigned char)kw[i]))
			return false;
	return true;
}

size_t smtp_utf8_seq(const uint8_t *s, size_t len)
{
	uint8_t c = s[0];
	size_t n;
	uint8_t lo = 0x80, hi = 0xbf;

	/* RFC 3629 4: UTF8-2 / UTF8-3 / UTF8-4 with their exact ranges */
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;      /* no overlongs */
		else if (c == 0xed)
			hi = 0x9f;      /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;      /* <= U+10FFFF */
	} else {
		return 0;
	}
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

bool smtp_utf8_valid(const char *s, size_t len)
{
	const uint8_t *u = (const uint8_t *)s;

	for (size_t i = 0; i < len;) {
		size_t n = 1;

		if (u[i] >= 0x80 && (n = smtp_utf8_seq(u + i, len - i)) == 0)
			return false;
		i += n;
	}
	return true;
}

/* Let-dig = ALPHA / DIGIT; a U-label's non-ASCII counts as a letter. */
bool smtp_domain_valid(const char *s, size_t len, bool utf8)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t label = 0;
	int prev = '.';

	if (len == 0 || len > SMTP_MAX_DOMAIN)
		return false;
	for (size_t i = 0; i < len;) {
		int c = u[i];
		size_t n = 1;

		if (c >= 0x80) {
			if (!utf8 || (n = smtp_utf8_seq(u + i, len - i)) == 0)
				return false;
			c = 'a';
		}
		if (c == '.') {
			/* sub-domain = Let-dig [Ldh-str]: no empty label, no
			 * trailing hyphen */
			if (prev == '.' || prev == '-')
				return false;
			label = 0;
		} else if (c == '-') {
			if (prev == '.')
				return false;
		} else if (!is_alpha(c) && !is_digit(c)) {
			return false;
		}
		if (c != '.' && ++label > SMTP_MAX_LABEL)
			return false;
		prev = c;
		i += n;
	}
	return prev != '.' && prev != '-';
}

/* Snum = 1*3DIGIT ; representing a decimal integer value in 0-255 */
static bool ipv4_valid(const char *s, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, nd = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
		while (i < len && is_digit(s[i]) && nd < 4) {
			v = v * 10 + (unsigned)(s[i] - '0');
			nd++;
			i++;
		}
		if (nd == 0 || nd > 3 || v > 255)
			return false;
	}
	return i == len;
}

/*
 * IPv6-addr = IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp: hex
 * groups of 1-4 digits, at most one "::", an optional trailing dotted
 * quad worth two groups.
 */
static bool ipv6_valid(const char *s, size_t len)
{
	size_t i = 0, groups = 0;
	bool compressed = false;

	if (len >= 2 && s[0] == ':' && s[1] == ':') {
		compressed = true;
		i = 2;
		if (i == len)
			return true;
	} else if (len > 0 && s[0] == ':') {
		return false;
	}
	while (i < len) {
		size_t start = i, nd = 0;

		while (i < len && hexval((unsigned char)s[i]) >= 0 && nd < 5) {
			i++;
			nd++;
		}
		if (i < len && s[i] == '.') {
			/* the IPv4 tail: must be last and leave room for it */
			if (!ipv4_valid(s + start, len - start))
				return false;
			groups += 2;
			i = len;
			break;
		}
		if (nd == 0 || nd > 4)
			return false;
		groups++;
		if (i == len)
			break;
		if (s[i] != ':')
			return false;
		i++;
		if (i < len && s[i] == ':') {
			if (compressed)
				return false;
			compressed = true;
			i++;
			if (i == len)
				break;
		} else if (i == len) {
			return false; /* trailing single ':' */
		}
	}
	return compressed ? groups <= 7 : groups == 8;
}

bool smtp_addr_literal_valid(const char *s, size_t len)
{
	const char *colon;
	size_t tag_len;

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	s++;
	len -= 2;
	colon = memchr(s, ':', len);
	if (colon == NULL)
		return ipv4_valid(s, len);
	tag_len = (size_t)(colon - s);
	if (smtp_word_eq(s, tag_len, "IPv6"))
		return ipv6_valid(colon + 1, len - tag_len - 1);
	/* General-address-literal = Standardized-tag ":" 1*dcontent */
	if (tag_len == 0 || !smtp_domain_valid(s, tag_len, false) ||
	    memchr(s, '.', tag_len) != NULL || tag_len + 1 == len)
		return false;
	for (size_t i = tag_len + 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		/* dcontent = %d33-90 / %d94-126 */
		if (c < 33 || c > 126 || (c >= 91 && c <= 93))
			return false;
	}
	return true;
}

/* atext per RFC 5322 3.2.3, plus UTF8-non-ascii (RFC 6531 3.3) */
static bool is_atext(int c)
{
	return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Parses a Local-part at s[*i]; sets *utf8 on non-ASCII. */
static bool parse_local(const char *s, size_t len, size_t *i, bool *utf8)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t j = *i;

	if (j < len && s[j] == '"') {
		/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE */
		j++;
		for (;;) {
			int c;

			if (j >= len)
				return false;
			c = u[j];
			if (c == '"')
				break;
			if (c == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126 */
				if (j + 1 >= len || u[j + 1] < 32 || u[j + 1] > 126)
					return false;
				j += 2;
			} else if (c >= 0x80) {
				size_t n = smtp_utf8_seq(u + j, len - j);

				if (n == 0)
					return false;
				*utf8 = true;
				j += n;
			} else if (c >= 32 && c <= 126) {
				/* qtextSMTP = %d32-33 / %d35-91 / %d93-126 */
				j++;
			} else {
				return false;
			}
		}
		*i = j + 1;
		return true;
	}
	/* Dot-string = Atom *("." Atom) */
	for (;;) {
		size_t start = j;

		while (j < len) {
			if (u[j] >= 0x80) {
				size_t n = smtp_utf8_seq(u + j, len - j);

				if (n == 0)
					return false;
				*utf8 = true;
				j += n;
			} else if (is_atext(u[j])) {
				j++;
			} else {
				break;
			}
		}
		if (j == start)
			return false;
		if (j < len && s[j] == '.') {
			j++;
			continue;
		}
		break;
	}
	*i = j;
	return true;
}

static bool has_8bit(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* Domain / address-literal, up to the closing '>' */
static bool parse_domain_part(const char *s, size_t len, size_t *i,
			      const char *stops, bool *utf8)
{
	size_t j = *i;

	if (j < len && s[j] == '[') {
		const char *rb = memchr(s + j, ']', len - j);

		if (rb == NULL)
			return false;
		if (!smtp_addr_literal_valid(s + j, (size_t)(rb - (s + j)) + 1))
			return false;
		*i = (size_t)(rb - s) + 1;
		return true;
	}
	while (j < len && strchr(stops, s[j]) == NULL)
		j++;
	if (!smtp_domain_valid(s + *i, j - *i, true))
		return false;
	if (has_8bit(s + *i, j - *i))
		*utf8 = true;
	*i = j;
	return true;
}

int smtp_parse_path(const char *s, size_t len, struct smtp_path *p)
{
	size_t i = 1, local_start;

	memset(p, 0, sizeof(*p));
	if (len == 0 || s[0] != '<')
		return SMTP_PARSE_SYNTAX;
	if (len >= 2 && s[1] == '>') {
		p->null_path = true;
		p->end = 2;
		return SMTP_PARSE_OK;
	}
	/* A-d-l = At-domain *( "," At-domain ) ":" ; accepted and ignored
	 * (RFC 5321 4.1.1.3, appendix C) */
	if (i < len && s[i] == '@') {
		for (;;) {
			bool route_utf8 = false;

			i++;
			if (!parse_domain_part(s, len, &i, ",:>", &route_utf8))
				return SMTP_PARSE_ADDR;
			if (i < len && s[i] == ',') {
				i++;
				if (i >= len || s[i] != '@')
					return SMTP_PARSE_ADDR;
				continue;
			}
			if (i < len && s[i] == ':') {
				i++;
				break;
			}
			return SMTP_PARSE_ADDR;
		}
	}
	/* Mailbox = Local-part "@" ( Domain / address-literal ) */
	local_start = i;
	if (!parse_local(s, len, &i, &p->utf8))
		return SMTP_PARSE_ADDR;
	if (i < len && s[i] == '>' &&
	    smtp_word_eq(s + local_start, i - local_start, "postmaster")) {
		/* RFC 5321 4.5.1: <postmaster> needs no domain */
		p->postmaster = true;
	} else {
		if (i >= len || s[i] != '@')
			return SMTP_PARSE_ADDR;
		i++;
		if (!parse_domain_part(s, len, &i, ">", &p->utf8))
			return SMTP_PARSE_ADDR;
	}
	if (i >= len || s[i] != '>')
		return SMTP_PARSE_ADDR;
	p->addr_off = local_start;
	p->addr_len = i - local_start;
	p->end = i + 1;
	return SMTP_PARSE_OK;
}

int smtp_parse_params(const char *s, size_t len, struct smtp_param *out,
		      size_t max)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t i = 0;
	int n = 0;

	for (;;) {
		struct smtp_param *pm;

		while (i < len && s[i] == ' ')
			i++;
		if (i == len)
			return n;
		if ((size_t)n == max)
			return -1;
		pm = &out[n++];
		memset(pm, 0, sizeof(*pm));
		/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
		pm->key = s + i;
		if (!is_alpha(u[i]) && !is_digit(u[i]))
			return -1;
		while (i < len && (is_alpha(u[i]) || is_digit(u[i]) || u[i] == '-'))
			i++;
		pm->key_len = (size_t)(s + i - pm->key);
		if (i == len || s[i] == ' ')
			continue;
		if (s[i] != '=')
			return -1;
		i++;
		/* esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii) */
		pm->has_val = true;
		pm->val = s + i;
		while (i < len && s[i] != ' ') {
			if (u[i] >= 0x80) {
				size_t k = smtp_utf8_seq(u + i, len - i);

				if (k == 0)
					return -1;
				i += k;
			} else if (u[i] >= 33 && u[i] <= 126 && u[i] != '=') {
				i++;
			} else {
				return -1;
			}
		}
		pm->val_len = (size_t)(s + i - pm->val);
		if (pm->val_len == 0)
			return -1;
	}
}

int smtp_xtext_decode(const char *s, size_t len, char *out, size_t outsz,
		      bool utf8)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t o = 0;

	if (outsz < len + 1)
		return -1;
	for (size_t i = 0; i < len;) {
		int c = u[i];

		if (c == '+') {
			/* hexchar = ASCII "+" immediately followed by two
			 * upper case hexadecimal digits (lower case tolerated) */
			int h, l;

			if (i + 2 >= len)
				return -1;
			h = hexval(u[i + 1]);
			l = hexval(u[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = h * 16 + l;
			if (c < 32 || c == 127)
				return -1;
			out[o++] = (char)c;
			i += 3;
		} else if (c >= 0x80) {
			size_t n = utf8 ? smtp_utf8_seq(u + i, len - i) : 0;

			if (n == 0)
				return -1;
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		} else if (c >= 33 && c <= 126 && c != '=') {
			/* xchar: "!" .. "~" except "+" and "=" */
			out[o++] = (char)c;
			i++;
		} else {
			return -1;
		}
	}
	out[o] = '\0';
	return (int)o;
}

int smtp_parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		uint64_t d;

		if (!is_digit(s[i]))
			return -1;
		d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			v = UINT64_MAX;
		else
			v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int smtp_parse_notify(const char *s, size_t len, uint8_t *bits)
{
	uint8_t b = 0;
	size_t i = 0;

	while (i <= len) {
		const char *comma = memchr(s + i, ',', len - i);
		size_t end = comma ? (size_t)(comma - s) : len;
		const char *w = s + i;
		size_t wl = end - i;
		uint8_t bit;

		if (smtp_word_eq(w, wl, "NEVER"))
			bit = ENV_NOTIFY_NEVER;
		else if (smtp_word_eq(w, wl, "SUCCESS"))
			bit = ENV_NOTIFY_SUCCESS;
		else if (smtp_word_eq(w, wl, "FAILURE"))
			bit = ENV_NOTIFY_FAILURE;
		else if (smtp_word_eq(w, wl, "DELAY"))
			bit = ENV_NOTIFY_DELAY;
		else
			return -1;
		if (b & bit)
			return -1;
		b |= bit;
		i = end + 1;
	}
	/* RFC 3461 4.1: NEVER must appear alone */
	if ((b & ENV_NOTIFY_NEVER) && b != ENV_NOTIFY_NEVER)
		return -1;
	*bits = b;
	return 0;
}

int smtp_parse_bdat(const char *s, size_t len, uint64_t *size, bool *last)
{
	const char *sp = memchr(s, ' ', len);
	size_t nl = sp ? (size_t)(sp - s) : len;

	if (smtp_parse_size(s, nl, size) != 0 || *size == UINT64_MAX)
		return -1;
	*last = false;
	if (sp == NULL)
		return 0;
	/* bdat-last = SP "LAST"; trailing spaces tolerated */
	s = sp + 1;
	len -= nl + 1;
	while (len > 0 && s[len - 1] == ' ')
		len--;
	if (len == 0)
		return 0;
	if (!smtp_word_eq(s, len, "LAST"))
		return -1;
	*last = true;
	return 0;
}
