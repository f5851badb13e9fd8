/*
 * envelope.c: allocation of the message envelope and body.
 */
#include "common/envelope.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char empty_str[1];

static bool is_static_empty(const char *s)
{
	return s == empty_str;
}

static void free_str(char **s)
{
	if (*s != NULL && !is_static_empty(*s))
		free(*s);
	*s = empty_str;
}

struct envelope *envelope_new(void)
{
	struct envelope *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->mail_from = e->envid = e->helo = e->client_addr = empty_str;
	return e;
}

int envelope_set_str(char **dst, const char *src, size_t len)
{
	char *p;

	if (len == SIZE_MAX)
		len = strlen(src);
	if (len == 0) {
		free_str(dst);
		return 0;
	}
	p = malloc(len + 1);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, src, len);
	p[len] = '\0';
	free_str(dst);
	*dst = p;
	return 0;
}

int envelope_add_rcpt(struct envelope *e, const char *addr,
		      const char *orcpt, uint8_t notify)
{
	struct env_rcpt *r;

	if (e->nrcpt == e->rcpt_cap) {
		uint32_t cap = e->rcpt_cap ? e->rcpt_cap * 2 : 4;
		struct env_rcpt *n = realloc(e->rcpt, cap * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		e->rcpt = n;
		e->rcpt_cap = cap;
	}
	r = &e->rcpt[e->nrcpt];
	r->addr = r->orcpt = empty_str;
	r->notify = notify;
	if (envelope_set_str(&r->addr, addr, SIZE_MAX) != 0)
		return -ENOMEM;
	if (orcpt != NULL && envelope_set_str(&r->orcpt, orcpt, SIZE_MAX) != 0) {
		free_str(&r->addr);
		return -ENOMEM;
	}
	e->nrcpt++;
	return 0;
}

int envelope_body_append(struct envelope *e, const void *data, size_t len)
{
	if (len == 0)
		return 0; /* memcpy from or to NULL is undefined even for 0 */
	if (len > e->body_cap - e->body_len) {
		size_t cap = e->body_cap ? e->body_cap : 4096;
		uint8_t *n;

		while (cap - e->body_len < len) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		n = realloc(e->body, cap);
		if (n == NULL)
			return -ENOMEM;
		e->body = n;
		e->body_cap = cap;
	}
	memcpy(e->body + e->body_len, data, len);
	e->body_len += len;
	return 0;
}

void envelope_reset_txn(struct envelope *e)
{
	for (uint32_t i = 0; i < e->nrcpt; i++) {
		free_str(&e->rcpt[i].addr);
		free_str(&e->rcpt[i].orcpt);
	}
	free(e->rcpt);
	e->rcpt = NULL;
	e->nrcpt = e->rcpt_cap = 0;
	free(e->body);
	e->body = NULL;
	e->body_len = e->body_cap = 0;
	free_str(&e->mail_from);
	free_str(&e->envid);
	e->qid[0] = '\0';
	e->ret = ENV_RET_NONE;
	e->body_type = ENV_BODY_NONE;
	e->smtputf8 = false;
	e->arrival_us = 0;
	e->declared_size = 0;
}

void envelope_free(struct envelope *e)
{
	if (e == NULL)
		return;
	envelope_reset_txn(e);
	free_str(&e->helo);
	free_str(&e->client_addr);
	free(e);
}

struct envelope *envelope_dup(const struct envelope *src)
{
	struct envelope *e = envelope_new();

	if (e == NULL)
		return NULL;
	memcpy(e->qid, src->qid, sizeof(e->qid));
	e->client_port = src->client_port;
	e->local_port = src->local_port;
	e->ret = src->ret;
	e->body_type = src->body_type;
	e->smtputf8 = src->smtputf8;
	e->esmtp = src->esmtp;
	e->arrival_us = src->arrival_us;
	e->declared_size = src->declared_size;
	e->spool_at = src->spool_at;
	if (envelope_set_str(&e->mail_from, src->mail_from, SIZE_MAX) != 0 ||
	    envelope_set_str(&e->envid, src->envid, SIZE_MAX) != 0 ||
	    envelope_set_str(&e->helo, src->helo, SIZE_MAX) != 0 ||
	    envelope_set_str(&e->client_addr, src->client_addr, SIZE_MAX) != 0 ||
	    envelope_body_append(e, src->body, src->body_len) != 0)
		goto fail;
	for (uint32_t i = 0; i < src->nrcpt; i++)
		if (envelope_add_rcpt(e, src->rcpt[i].addr, src->rcpt[i].orcpt,
				      src->rcpt[i].notify) != 0)
			goto fail;
	return e;
fail:
	envelope_free(e);
	return NULL;
}
