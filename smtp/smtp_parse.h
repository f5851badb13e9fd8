/*
 * smtp_parse.h: pure parsers for the pieces of SMTP commands: paths
 * (RFC 5321 4.1.2, with the RFC 6531 UTF-8 extensions), ESMTP
 * parameters, xtext (RFC 3461 4), SIZE, NOTIFY, BDAT arguments, UTF-8.
 *
 * Every function works on (pointer, length) and never reads past it, so
 * NUL bytes in the input are just bad bytes. Nothing allocates, nothing
 * keeps state: the session (smtp_server.c) decides what a result means
 * for the reply.
 */
#ifndef DPMAIL_SMTP_SMTP_PARSE_H
#define DPMAIL_SMTP_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.2: a domain name is at most 255 octets; DNS labels 63. */
#define SMTP_MAX_DOMAIN 255
#define SMTP_MAX_LABEL 63
/* RFC 3461 4.4 and 4.2: ENVID and ORCPT xtext lengths. */
#define SMTP_MAX_ENVID 100
#define SMTP_MAX_ORCPT 500

enum smtp_parse_err {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX = -1, /* not "<...>" at all: a command syntax error */
	SMTP_PARSE_ADDR = -2,   /* "<...>" holds no valid Mailbox */
};

/* A parsed Reverse-path / Forward-path. The mailbox is always a
 * substring of the input (a source route is dropped from its front). */
struct smtp_path {
	size_t addr_off, addr_len; /* Mailbox inside the input; 0,0 for <> */
	size_t end;                /* offset just past the closing '>' */
	bool null_path;            /* "<>" */
	bool postmaster;           /* "<postmaster>" without a domain */
	bool utf8;                 /* non-ASCII (valid UTF-8) in the path */
};

/*
 * Path = "<" [ A-d-l ":" ] Mailbox ">"   /  "<>"
 * s[0] must be '<'. Returns SMTP_PARSE_OK and fills p, SMTP_PARSE_SYNTAX
 * when s does not start with '<', SMTP_PARSE_ADDR for a bad mailbox,
 * source route, invalid UTF-8 or a missing '>'. Whether <> and
 * <postmaster> are acceptable, and UTF-8 without SMTPUTF8, is for the
 * caller to decide.
 */
int smtp_parse_path(const char *s, size_t len, struct smtp_path *p);

/* Domain = sub-domain *("." sub-domain), U-labels allowed when utf8. */
bool smtp_domain_valid(const char *s, size_t len, bool utf8);
/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" dcontent ) "]" */
bool smtp_addr_literal_valid(const char *s, size_t len);

/* Length of the valid UTF-8 sequence (>= 2 octets) at s, 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
size_t smtp_utf8_seq(const uint8_t *s, size_t len);
bool smtp_utf8_valid(const char *s, size_t len);

/* One esmtp-param = esmtp-keyword ["=" esmtp-value]. */
struct smtp_param {
	const char *key, *val;
	size_t key_len, val_len;
	bool has_val;
};

/*
 * Mail-parameters = esmtp-param *(SP esmtp-param), leading and extra
 * spaces tolerated. Values may hold valid UTF-8 (RFC 6531 3.3); the
 * caller refuses it where SMTPUTF8 was not given. Returns the number of
 * parameters (<= max) or -1 on bad syntax or more than max.
 */
int smtp_parse_params(const char *s, size_t len, struct smtp_param *out,
		      size_t max);

/*
 * xtext = *( xchar / "+" 2HEXDIG ) into out (outsz >= len + 1, NUL
 * terminated). Decoded control characters (CR, LF, NUL ...) are refused:
 * these values end up in DSN headers. Raw UTF-8 only when utf8.
 * Returns the decoded length or -1.
 */
int smtp_xtext_decode(const char *s, size_t len, char *out, size_t outsz,
		      bool utf8);

/* 1*20DIGIT; values above UINT64_MAX saturate (they are too big anyway).
 * Returns 0 or -1. */
int smtp_parse_size(const char *s, size_t len, uint64_t *out);

/* NOTIFY = "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ), case
 * insensitive, into enum env_notify bits. Returns 0 or -1. */
int smtp_parse_notify(const char *s, size_t len, uint8_t *bits);

/* bdat-args = chunk-size [ SP "LAST" ] (RFC 3030 2). Returns 0 or -1. */
int smtp_parse_bdat(const char *s, size_t len, uint64_t *size, bool *last);

/* Case-insensitive ASCII comparison of s[0..len) with the NUL-terminated kw. */
bool smtp_word_eq(const char *s, size_t len, const char *kw);

#endif
