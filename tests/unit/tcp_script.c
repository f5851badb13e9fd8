/*
 * tcp_script.c: the script interpreter of tcp_script.h: a line parser, the
 * segment builder (peer -> us), the segment matcher (us -> peer) and the
 * test application driven by the script's commands.
 */
#include "tests/unit/tcp_script.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpstack/tcp.h"
#include "tcpstack/tcp_internal.h"
#include "tests/unit/ut_helpers.h"

#define TS_SENT_MAX (1u << 20)
#define TS_MAXOPT 16
#define TS_ANY UINT64_MAX

enum app_kind { APP_ECHO, APP_DISCARD, APP_SINK, APP_HOLD, APP_REFUSE };

/* One TCP option: kind, and its value(s); TS_ANY where the script says *. */
struct opt {
	uint8_t kind;
	uint64_t v1, v2;
	uint8_t raw[40];
	uint8_t rawlen; /* inbound 'raw' */
	uint8_t nblk;   /* SACK blocks (RFC 2018), peer sequence numbers */
	uint64_t blk[4][2];
};

/* A segment in script notation, parsed from a line or from a frame. */
struct sseg {
	uint8_t flags;
	uint64_t seq, end, len, ack, win; /* TS_ANY = wildcard */
	bool has_ack_field, has_win;
	bool check_opts;
	bool abs;       /* outbound: seq is absolute, not relative to our ISN */
	bool psh_any;   /* outbound: PSH not checked */
	int nopt;
	struct opt o[TS_MAXOPT];
	bool badsum;
	int doff; /* -1: computed */
	const uint8_t *payload; /* actual frames */
};

static struct ts {
	const char *name;
	int lineno;
	char line[512];
	struct stack_conf conf;
	bool started;
	uint64_t now;      /* script ms since UT_T0 */
	uint64_t last_t;   /* time of the previous line */
	uint16_t lport, rport;
	bool have_iss;
	uint32_t iss;
	uint32_t irs;
	bool have_tsval;
	uint32_t last_tsval;
	bool have_tsbase;
	uint32_t tsbase;
	/* the application */
	enum app_kind app;
	struct tcp_listener *l;
	struct tcp_conn *c;
	uint8_t *sent;
	size_t sent_len;
	uint64_t app_off;  /* bytes 'send' has written */
	uint64_t rcvd;
	int64_t rcvd_bad;  /* first offset that differed, -1 none */
	int closed;        /* on_closed reason, 0 none */
	int peer_closed, writable, connected;
} T;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cr_assert_fail("script %s line %d (t=%.3f): %s\n    line: %s", T.name,
		       T.lineno, (double)T.now / 1000.0, msg, T.line);
}

/* ------------------------------------------------------------------ */
/* The test application                                                */

static void app_record_sent(const uint8_t *p, size_t n)
{
	if (T.sent_len + n > TS_SENT_MAX)
		fail("app wrote more than %u bytes", TS_SENT_MAX);
	memcpy(T.sent + T.sent_len, p, n);
	T.sent_len += n;
}

static void app_on_data(struct tcp_conn *c, void *user, const uint8_t *data,
			size_t len)
{
	(void)user;
	for (size_t i = 0; i < len; i++)
		if (T.rcvd_bad < 0 &&
		    data[i] != ts_peer_byte(T.irs + 1 + (uint32_t)(T.rcvd + i)))
			T.rcvd_bad = (int64_t)(T.rcvd + i);
	T.rcvd += len;
	if (T.app == APP_ECHO && c == T.c) {
		ssize_t n = tcp_send(c, data, len);
		if (n > 0)
			app_record_sent(data, (size_t)n);
	}
}

static void app_on_writable(struct tcp_conn *c, void *user)
{
	(void)c;
	(void)user;
	T.writable++;
}

static void app_on_peer_closed(struct tcp_conn *c, void *user)
{
	(void)c;
	(void)user;
	T.peer_closed++;
}

static void app_on_closed(struct tcp_conn *c, void *user,
			  enum tcp_close_reason r)
{
	(void)user;
	if (c == T.c)
		T.c = NULL;
	T.closed = (int)r;
}

static void app_on_connected(struct tcp_conn *c, void *user)
{
	(void)c;
	(void)user;
	T.connected++;
}

static const struct tcp_callbacks app_cb = {
	.on_connected = app_on_connected,
	.on_data = app_on_data,
	.on_writable = app_on_writable,
	.on_peer_closed = app_on_peer_closed,
	.on_closed = app_on_closed,
};

static void new_conn_state(void)
{
	T.sent_len = 0;
	T.app_off = 0;
	T.rcvd = 0;
	T.rcvd_bad = -1;
	T.closed = 0;
	T.peer_closed = T.writable = T.connected = 0;
}

static int app_accept(struct tcp_conn *c, void *listen_user,
		      const struct tcp_callbacks **cb, void **user)
{
	(void)listen_user;
	if (T.app == APP_REFUSE)
		return -ECONNREFUSED;
	new_conn_state();
	T.c = c;
	*cb = &app_cb;
	*user = &T;
	if (T.app == APP_HOLD)
		tcp_recv_pause(c, true);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lexing                                                              */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Next whitespace-delimited word into w; returns the rest. */
static const char *word(const char *p, char *w, size_t cap)
{
	size_t n = 0;

	p = skip_ws(p);
	while (*p != '\0' && *p != ' ' && *p != '\t') {
		if (n + 1 < cap)
			w[n++] = *p;
		p++;
	}
	w[n] = '\0';
	return p;
}

static uint64_t num(const char *w, const char *what)
{
	char *e;
	unsigned long long v;

	if (strcmp(w, "*") == 0 || strcmp(w, "?") == 0)
		return TS_ANY;
	errno = 0;
	v = strtoull(w, &e, 0);
	if (e == w || *e != '\0' || errno != 0)
		fail("bad number '%s' for %s", w, what);
	return v;
}

static const char *app_name(enum app_kind a)
{
	static const char *const n[] = { "echo", "discard", "sink", "hold",
					 "refuse" };
	return n[a];
}

static enum app_kind parse_app(const char *w)
{
	for (int i = APP_ECHO; i <= APP_REFUSE; i++)
		if (strcmp(w, app_name((enum app_kind)i)) == 0)
			return (enum app_kind)i;
	fail("unknown app '%s'", w);
	return APP_SINK;
}

/* ------------------------------------------------------------------ */
/* Segment notation                                                    */

static const struct {
	char ch;
	uint8_t bit;
} flag_chars[] = {
	{ 'S', RTE_TCP_SYN_FLAG }, { 'F', RTE_TCP_FIN_FLAG },
	{ 'R', RTE_TCP_RST_FLAG }, { 'P', RTE_TCP_PSH_FLAG },
	{ 'U', RTE_TCP_URG_FLAG }, { '.', RTE_TCP_ACK_FLAG },
};

static uint8_t parse_flags(const char *w)
{
	uint8_t f = 0;

	for (; *w; w++) {
		size_t i;
		for (i = 0; i < sizeof(flag_chars) / sizeof(flag_chars[0]); i++)
			if (flag_chars[i].ch == *w)
				break;
		if (i == sizeof(flag_chars) / sizeof(flag_chars[0]))
			fail("bad flag '%c'", *w);
		f |= flag_chars[i].bit;
	}
	return f;
}

static void fmt_num(char *b, size_t cap, uint64_t v)
{
	if (v == TS_ANY)
		snprintf(b, cap, "*");
	else
		snprintf(b, cap, "%llu", (unsigned long long)v);
}

static int fmt_opts(char *b, size_t cap, const struct sseg *g)
{
	int n = snprintf(b, cap, " <");

	for (int i = 0; i < g->nopt && (size_t)n < cap; i++) {
		const struct opt *o = &g->o[i];
		char v1[24], v2[24];

		fmt_num(v1, sizeof(v1), o->v1);
		fmt_num(v2, sizeof(v2), o->v2);
		if (i > 0)
			n += snprintf(b + n, cap - (size_t)n, ",");
		switch (o->kind) {
		case 0: n += snprintf(b + n, cap - (size_t)n, "eol"); break;
		case 1: n += snprintf(b + n, cap - (size_t)n, "nop"); break;
		case 2: n += snprintf(b + n, cap - (size_t)n, "mss %s", v1); break;
		case 3: n += snprintf(b + n, cap - (size_t)n, "wscale %s", v1); break;
		case 4: n += snprintf(b + n, cap - (size_t)n, "sackOK"); break;
		case 8:
			n += snprintf(b + n, cap - (size_t)n, "TS val %s ecr %s",
				      v1, v2);
			break;
		case 5:
			n += snprintf(b + n, cap - (size_t)n, "sack");
			for (int k = 0; k < o->nblk; k++) {
				char x[24], y[24];
				fmt_num(x, sizeof(x), o->blk[k][0]);
				fmt_num(y, sizeof(y), o->blk[k][1]);
				n += snprintf(b + n, cap - (size_t)n, " %s:%s",
					      x, y);
			}
			break;
		default:
			n += snprintf(b + n, cap - (size_t)n, "kind%u len%llu",
				      o->kind, (unsigned long long)o->v1);
			break;
		}
	}
	if ((size_t)n < cap)
		n += snprintf(b + n, cap - (size_t)n, ">");
	return n;
}

static void fmt_seg(char *b, size_t cap, const struct sseg *g)
{
	char fl[8], s[24], e[24], l[24], a[24], w[24];
	int n = 0, k = 0;

	for (size_t i = 0; i < sizeof(flag_chars) / sizeof(flag_chars[0]); i++)
		if (g->flags & flag_chars[i].bit)
			fl[k++] = flag_chars[i].ch;
	fl[k] = '\0';
	fmt_num(s, sizeof(s), g->seq);
	fmt_num(e, sizeof(e), g->end);
	fmt_num(l, sizeof(l), g->len);
	fmt_num(a, sizeof(a), g->ack);
	fmt_num(w, sizeof(w), g->win);
	n = snprintf(b, cap, "> %s %s:%s(%s)", fl, s, e, l);
	if (g->flags & RTE_TCP_ACK_FLAG || g->ack != 0)
		n += snprintf(b + n, cap - (size_t)n, " ack %s", a);
	n += snprintf(b + n, cap - (size_t)n, " win %s", w);
	if ((size_t)n < cap)
		fmt_opts(b + n, cap - (size_t)n, g);
}

/* Option list between < and >, p just past '<'; returns past '>'. */
static const char *parse_opts(const char *p, struct sseg *g, bool inbound)
{
	char w[64];

	g->check_opts = true;
	g->nopt = 0;
	p = skip_ws(p);
	if (*p == '>')
		return p + 1;
	for (;;) {
		struct opt *o;

		if (g->nopt == TS_MAXOPT)
			fail("too many options");
		o = &g->o[g->nopt++];
		memset(o, 0, sizeof(*o));
		p = skip_ws(p);
		{
			size_t n = 0;
			while (*p && *p != ' ' && *p != ',' && *p != '>') {
				if (n + 1 < sizeof(w))
					w[n++] = *p;
				p++;
			}
			w[n] = '\0';
		}
		if (strcmp(w, "nop") == 0) {
			o->kind = 1;
		} else if (strcmp(w, "eol") == 0) {
			o->kind = 0;
		} else if (strcmp(w, "sackOK") == 0) {
			o->kind = 4;
		} else if (strcmp(w, "mss") == 0 || strcmp(w, "wscale") == 0) {
			o->kind = w[0] == 'm' ? 2 : 3;
			p = skip_ws(p);
			size_t n = 0;
			while (*p && *p != ' ' && *p != ',' && *p != '>')
				w[n++] = *p++;
			w[n] = '\0';
			o->v1 = num(w, "option value");
		} else if (strcmp(w, "TS") == 0) {
			char k1[16], v1[24], k2[16], v2[24];
			o->kind = 8;
			p = word(p, k1, sizeof(k1));
			p = word(p, v1, sizeof(v1));
			p = word(p, k2, sizeof(k2));
			p = skip_ws(p);
			size_t n = 0;
			while (*p && *p != ' ' && *p != ',' && *p != '>' &&
			       n + 1 < sizeof(v2))
				v2[n++] = *p++;
			v2[n] = '\0';
			if (strcmp(k1, "val") != 0 || strcmp(k2, "ecr") != 0)
				fail("TS wants 'val N ecr N'");
			o->v1 = num(v1, "TS val");
			o->v2 = num(v2, "TS ecr");
		} else if (strcmp(w, "sack") == 0) {
			o->kind = 5;
			for (;;) {
				char *colon;
				p = skip_ws(p);
				if (*p == ',' || *p == '>' || *p == '\0')
					break;
				size_t n = 0;
				while (*p && *p != ' ' && *p != ',' && *p != '>' &&
				       n + 1 < sizeof(w))
					w[n++] = *p++;
				w[n] = '\0';
				colon = strchr(w, ':');
				if (colon == NULL || o->nblk == 4)
					fail("sack wants up to 4 blocks A:B");
				*colon = '\0';
				o->blk[o->nblk][0] = num(w, "sack left edge");
				o->blk[o->nblk][1] = num(colon + 1, "sack right edge");
				o->nblk++;
			}
		} else if (strcmp(w, "raw") == 0 && inbound) {
			o->kind = 255;
			for (;;) {
				p = skip_ws(p);
				if (*p == ',' || *p == '>' || *p == '\0')
					break;
				size_t n = 0;
				while (*p && *p != ' ' && *p != ',' && *p != '>')
					w[n++] = *p++;
				w[n] = '\0';
				if (o->rawlen == sizeof(o->raw))
					fail("raw option too long");
				o->raw[o->rawlen++] =
					(uint8_t)strtoul(w, NULL, 16);
			}
		} else {
			fail("unknown option '%s'", w);
		}
		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '>')
			return p + 1;
		fail("option list: expected ',' or '>'");
	}
}

/* FLAGS SEQ:END(LEN) [ack N] [win N] [<opts>] [badsum] [doff N] [...] */
static void parse_seg(const char *p, struct sseg *g, bool inbound)
{
	char w[64], *e;
	const char *q;

	memset(g, 0, sizeof(*g));
	g->doff = -1;
	g->win = inbound ? 65535 : TS_ANY;
	p = word(p, w, sizeof(w));
	{
		/* a trailing '~' (outbound): PSH may or may not be set */
		size_t wl = strlen(w);
		if (!inbound && wl > 1 && w[wl - 1] == '~') {
			g->psh_any = true;
			w[wl - 1] = '\0';
		}
	}
	g->flags = parse_flags(w);
	p = word(p, w, sizeof(w));
	/* SEQ:END(LEN) */
	e = strchr(w, ':');
	q = e != NULL ? strchr(e, '(') : NULL;
	if (e == NULL || q == NULL || w[strlen(w) - 1] != ')')
		fail("want SEQ:END(LEN), got '%s'", w);
	*e = '\0';
	*(char *)q = '\0';
	{
		char *lenp = (char *)q + 1;
		lenp[strlen(lenp) - 1] = '\0';
		g->seq = num(w, "seq");
		g->end = num(e + 1, "end");
		g->len = num(lenp, "len");
	}
	if (inbound && (g->seq == TS_ANY || g->len == TS_ANY))
		fail("inbound segments need numbers");
	if (g->seq != TS_ANY && g->end != TS_ANY && g->len != TS_ANY &&
	    (uint32_t)(g->end - g->seq) != g->len)
		fail("END - SEQ != LEN");
	g->ack = (g->flags & RTE_TCP_ACK_FLAG) ? TS_ANY : 0;
	for (;;) {
		p = skip_ws(p);
		if (*p == '\0')
			break;
		if (*p == '<') {
			p = parse_opts(p + 1, g, inbound);
			continue;
		}
		p = word(p, w, sizeof(w));
		if (strcmp(w, "ack") == 0) {
			p = word(p, w, sizeof(w));
			g->ack = num(w, "ack");
			g->has_ack_field = true;
		} else if (strcmp(w, "win") == 0) {
			p = word(p, w, sizeof(w));
			g->win = num(w, "win");
			g->has_win = true;
		} else if (strcmp(w, "badsum") == 0 && inbound) {
			g->badsum = true;
		} else if (strcmp(w, "doff") == 0 && inbound) {
			p = word(p, w, sizeof(w));
			g->doff = (int)num(w, "doff");
		} else if (strcmp(w, "abs") == 0 && !inbound) {
			g->abs = true;
		} else if (strcmp(w, "...") == 0) {
			/* the rest is not checked */
		} else {
			fail("unexpected '%s'", w);
		}
	}
	if (inbound && g->ack == TS_ANY)
		fail("inbound ACK needs 'ack N'");
}

/* ------------------------------------------------------------------ */
/* Inbound                                                             */

static void inject(struct sseg *g)
{
	uint8_t tcp[UT_FRAME_MAX], pseudo[12], f[UT_FRAME_MAX];
	uint32_t seq = (uint32_t)g->seq, optlen = 0, hl, sum;
	struct ut_ip_spec sp;
	size_t len;
	uint8_t *o = tcp + 20;

	memset(tcp, 0, sizeof(tcp));
	/* the peer's ISN: from its SYN while ours is not synchronized yet */
	if ((g->flags & RTE_TCP_SYN_FLAG) &&
	    (T.c == NULL || !tcps_synced(T.c->state)))
		T.irs = seq;
	for (int i = 0; i < g->nopt; i++) {
		const struct opt *op = &g->o[i];
		uint8_t *s = o + optlen;
		switch (op->kind) {
		case 0: s[0] = 0; optlen += 1; break;
		case 1: s[0] = 1; optlen += 1; break;
		case 2:
			s[0] = 2; s[1] = 4;
			ut_put16(s + 2, (uint16_t)op->v1);
			optlen += 4;
			break;
		case 3:
			s[0] = 3; s[1] = 3; s[2] = (uint8_t)op->v1;
			optlen += 3;
			break;
		case 4: s[0] = 4; s[1] = 2; optlen += 2; break;
		case 5:
			/* inbound SACK blocks are in our sequence space,
			 * relative to our ISN like 'ack' */
			s[0] = 5;
			s[1] = (uint8_t)(2 + 8 * op->nblk);
			for (int k = 0; k < op->nblk; k++) {
				uint32_t base = T.have_iss ? T.iss : 0;
				ut_put32(s + 2 + 8 * k, rte_cpu_to_be_32(
					(uint32_t)op->blk[k][0] + base));
				ut_put32(s + 6 + 8 * k, rte_cpu_to_be_32(
					(uint32_t)op->blk[k][1] + base));
			}
			optlen += s[1];
			break;
		case 8: {
			uint32_t ecr = op->v2 == TS_ANY ? T.last_tsval :
							  (uint32_t)op->v2;
			s[0] = 8; s[1] = 10;
			ut_put32(s + 2, rte_cpu_to_be_32((uint32_t)op->v1));
			ut_put32(s + 6, rte_cpu_to_be_32(ecr));
			optlen += 10;
			break;
		}
		default:
			memcpy(s, op->raw, op->rawlen);
			optlen += op->rawlen;
			break;
		}
		if (optlen > 40)
			fail("options longer than 40 bytes");
	}
	while (optlen % 4 != 0)
		o[optlen++] = 0; /* EOL padding */
	hl = 20 + optlen;
	ut_put16(tcp, T.rport);
	ut_put16(tcp + 2, T.lport);
	ut_put32(tcp + 4, rte_cpu_to_be_32(seq));
	if (g->flags & RTE_TCP_ACK_FLAG)
		ut_put32(tcp + 8, rte_cpu_to_be_32((uint32_t)g->ack +
						   (T.have_iss ? T.iss : 0)));
	tcp[12] = (uint8_t)((g->doff >= 0 ? (unsigned)g->doff : hl / 4) << 4);
	tcp[13] = g->flags;
	ut_put16(tcp + 14, (uint16_t)g->win);
	for (uint32_t i = 0; i < g->len; i++)
		tcp[hl + i] = ts_peer_byte(seq + (g->flags & RTE_TCP_SYN_FLAG ?
						  1 : 0) + i);
	/* RFC 9293 3.1 pseudo-header: src, dst, zero, proto, TCP length */
	ut_put32(pseudo, UT_PEER_IP);
	ut_put32(pseudo + 4, UT_OUR_IP);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	ut_put16(pseudo + 10, (uint16_t)(hl + g->len));
	sum = (uint16_t)~ut_cksum(pseudo, sizeof(pseudo));
	sum += (uint16_t)~ut_cksum(tcp, hl + g->len);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ut_put16(tcp + 16, (uint16_t)~sum);
	if (g->badsum)
		tcp[16] ^= 0x5a;
	ut_ip_spec_default(&sp);
	sp.proto = IPPROTO_TCP;
	len = ut_build_ipv4(f, &sp, tcp, hl + g->len);
	ut_input(f, len);
}

/* ------------------------------------------------------------------ */
/* Outbound                                                            */

/* Parses a frame we sent into g (seq relative to our ISN). */
static void parse_frame(const uint8_t *f, int n, struct sseg *g)
{
	const uint8_t *ip, *th, *o;
	unsigned tot, hl, dlen;
	uint32_t sum;
	uint8_t pseudo[12];

	memset(g, 0, sizeof(*g));
	if (n < UT_L4_OFF + 20 || ut_get16(f + 12) != RTE_ETHER_TYPE_IPV4 ||
	    f[UT_IP_OFF + 9] != IPPROTO_TCP)
		fail("sent a frame that is not TCP/IPv4 (ethertype 0x%04x, "
		     "%d bytes)", ut_get16(f + 12), n);
	tot = ut_check_ipv4(f, n, &ut_peer_mac, UT_PEER_IP, IPPROTO_TCP);
	cr_assert(ut_get16(f + UT_IP_OFF + 6) & 0x4000, "DF not set");
	ip = f + UT_IP_OFF;
	th = f + UT_L4_OFF;
	hl = (unsigned)(th[12] >> 4) * 4;
	if (hl < 20 || hl > tot - 20)
		fail("sent a bad data offset %u", hl);
	dlen = tot - 20 - hl;
	ut_put32(pseudo, ut_get32(ip + 12));
	ut_put32(pseudo + 4, ut_get32(ip + 16));
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	ut_put16(pseudo + 10, (uint16_t)(tot - 20));
	sum = (uint16_t)~ut_cksum(pseudo, sizeof(pseudo));
	sum += (uint16_t)~ut_cksum(th, tot - 20);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	if (sum != 0xffff)
		fail("sent a segment with a bad TCP checksum");
	if (ut_get16(th) != T.lport || ut_get16(th + 2) != T.rport)
		fail("ports %u -> %u, want %u -> %u", ut_get16(th),
		     ut_get16(th + 2), T.lport, T.rport);
	g->flags = th[13];
	if ((g->flags & RTE_TCP_SYN_FLAG) && !T.have_iss) {
		T.have_iss = true;
		T.iss = rte_be_to_cpu_32(ut_get32(th + 4));
	}
	g->seq = (uint32_t)(rte_be_to_cpu_32(ut_get32(th + 4)) -
			    (T.have_iss ? T.iss : 0));
	g->len = dlen;
	g->end = (uint32_t)(g->seq + dlen);
	g->ack = rte_be_to_cpu_32(ut_get32(th + 8));
	g->win = ut_get16(th + 14);
	g->payload = th + hl;
	if (ut_get16(th + 18) != 0)
		fail("urgent pointer %u", ut_get16(th + 18));
	o = th + 20;
	for (unsigned i = 0; i < hl - 20 && g->nopt < TS_MAXOPT;) {
		struct opt *op = &g->o[g->nopt++];
		memset(op, 0, sizeof(*op));
		op->kind = o[i];
		if (o[i] <= 1) {
			i++;
			continue;
		}
		if (i + 1 >= hl - 20 || o[i + 1] < 2 || i + o[i + 1] > hl - 20)
			fail("sent a malformed option list");
		switch (o[i]) {
		case 2: op->v1 = ut_get16(o + i + 2); break;
		case 3: op->v1 = o[i + 2]; break;
		case 8:
			op->v1 = rte_be_to_cpu_32(ut_get32(o + i + 2));
			op->v2 = rte_be_to_cpu_32(ut_get32(o + i + 6));
			break;
		case 5:
			for (unsigned k = 0; k + 8 <= (unsigned)o[i + 1] - 2u &&
			     op->nblk < 4; k += 8, op->nblk++) {
				op->blk[op->nblk][0] =
					rte_be_to_cpu_32(ut_get32(o + i + 2 + k));
				op->blk[op->nblk][1] =
					rte_be_to_cpu_32(ut_get32(o + i + 6 + k));
			}
			break;
		default: op->v1 = o[i + 1]; break;
		}
		i += o[i + 1];
	}
}

static bool num_ok(uint64_t want, uint64_t got)
{
	return want == TS_ANY || want == got;
}

static bool opts_match(const struct sseg *w, const struct sseg *a)
{
	if (!w->check_opts)
		return true;
	if (w->nopt != a->nopt)
		return false;
	for (int i = 0; i < w->nopt; i++) {
		if (w->o[i].kind != a->o[i].kind)
			return false;
		if (w->o[i].kind == 5) {
			if (w->o[i].nblk != a->o[i].nblk)
				return false;
			for (int k = 0; k < w->o[i].nblk; k++)
				if (!num_ok(w->o[i].blk[k][0], a->o[i].blk[k][0]) ||
				    !num_ok(w->o[i].blk[k][1], a->o[i].blk[k][1]))
					return false;
		}
		if (w->o[i].kind == 2 || w->o[i].kind == 3 ||
		    w->o[i].kind == 8)
			if (!num_ok(w->o[i].v1, a->o[i].v1) ||
			    (w->o[i].kind == 8 && !num_ok(w->o[i].v2, a->o[i].v2)))
				return false;
	}
	return true;
}

static void expect_seg(const struct sseg *w)
{
	uint8_t f[UT_FRAME_MAX];
	char actual[512], why[128] = "";
	struct sseg a;
	int n = ut_take(f, sizeof(f));

	if (n < 0)
		fail("expected a segment, nothing was sent");
	parse_frame(f, n, &a);
	if (w->abs && T.have_iss) {
		a.seq = (uint32_t)(a.seq + T.iss);
		a.end = (uint32_t)(a.end + T.iss);
	}
	fmt_seg(actual, sizeof(actual), &a);
	if ((w->flags | (w->psh_any ? RTE_TCP_PSH_FLAG : 0)) !=
	    (a.flags | (w->psh_any ? RTE_TCP_PSH_FLAG : 0)))
		snprintf(why, sizeof(why), "flags");
	else if (!num_ok(w->seq, a.seq) || !num_ok(w->end, a.end) ||
		 !num_ok(w->len, a.len))
		snprintf(why, sizeof(why), "seq/len");
	else if (!num_ok(w->ack, a.ack))
		snprintf(why, sizeof(why), "ack");
	else if (!num_ok(w->win, a.win))
		snprintf(why, sizeof(why), "window");
	else if (!opts_match(w, &a))
		snprintf(why, sizeof(why), "options");
	if (why[0] != '\0')
		fail("%s differ\n    actual: %s", why, actual);
	/* the payload is what the app wrote at that offset */
	if (a.len > 0) {
		uint32_t off = (uint32_t)a.seq - 1;
		if ((uint64_t)off + a.len > T.sent_len ||
		    memcmp(T.sent + off, a.payload, a.len) != 0)
			fail("payload differs from what the app wrote at "
			     "offset %u (app wrote %zu bytes)\n    actual: %s",
			     off, T.sent_len, actual);
	}
	/* timestamps: TSval is our clock in ms plus a per-connection offset */
	for (int i = 0; i < a.nopt; i++) {
		uint32_t now = (uint32_t)(UT_T0 + T.now);
		if (a.o[i].kind != 8)
			continue;
		T.have_tsval = true;
		T.last_tsval = (uint32_t)a.o[i].v1;
		if (!T.have_tsbase) {
			T.have_tsbase = true;
			T.tsbase = T.last_tsval - now;
		} else if (T.last_tsval - now != T.tsbase) {
			fail("TSval %u does not follow a 1 ms clock "
			     "(want %u)\n    actual: %s", T.last_tsval,
			     now + T.tsbase, actual);
		}
	}
}

static void check_quiet(const char *when)
{
	if (ut_tx_pending() > 0) {
		uint8_t f[UT_FRAME_MAX];
		char actual[512];
		struct sseg a;
		int n = ut_take(f, sizeof(f));

		parse_frame(f, n, &a);
		fmt_seg(actual, sizeof(actual), &a);
		fail("unexpected segment %s\n    actual: %s", when, actual);
	}
}

/* Ticks 1 ms at a time up to script time t; nothing may be sent before t,
 * and at t only what an outbound line (outbound) expects. */
static void advance(uint64_t t, bool outbound)
{
	if (T.now < t || !outbound)
		check_quiet("before this line");
	while (T.now < t) {
		T.now++;
		ut_tick(UT_T0 + T.now);
		if (T.now < t)
			check_quiet("before this line's time");
	}
	if (!outbound)
		check_quiet("before this line");
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

static struct tcp_conn *need_conn(void)
{
	if (T.c == NULL)
		fail("no current connection");
	return T.c;
}

static int reason_of(const char *w)
{
	static const char *const n[] = { "none", "RESET", "TIMEOUT", "REFUSED",
					 "UNREACHABLE", "SHUTDOWN", "DONE" };
	for (int i = 0; i < 7; i++)
		if (strcmp(w, n[i]) == 0)
			return i;
	fail("unknown close reason '%s'", w);
	return -1;
}

static void cmd_expect(const char *p)
{
	char k[64], v[64], v2[64];
	uint64_t got = 0, want;

	p = word(p, k, sizeof(k));
	p = word(p, v, sizeof(v));
	if (strcmp(k, "closed") == 0) {
		int r = reason_of(v);
		if (T.closed != r)
			fail("on_closed reason %d (%s), want %s", T.closed,
			     T.closed ? tcp_close_reason_str(T.closed) : "none",
			     v);
		return;
	}
	if (strcmp(k, "state") == 0) {
		struct tcp_conn_info i;
		tcp_conn_get_info(need_conn(), &i);
		if (strcmp(i.state, v) != 0)
			fail("state %s, want %s", i.state, v);
		return;
	}
	if (strcmp(k, "nstate") == 0) {
		uint32_t n[TCP_NSTATES];
		unsigned st = 0;
		while (st < TCP_NSTATES && strcmp(tcp_state_names[st], v) != 0)
			st++;
		if (st == TCP_NSTATES)
			fail("nstate: no state '%s'", v);
		p = word(p, v2, sizeof(v2));
		want = num(v2, "count");
		tcp_state_counts(&ut.s, n);
		if (n[st] != want)
			fail("%llu connections in %s, want %llu",
			     (unsigned long long)n[st], v,
			     (unsigned long long)want);
		return;
	}
	if (strcmp(k, "listener") == 0) {
		struct tcp_listener_stats ls = { 0 };
		uint16_t port = (uint16_t)num(v, "port");
		char f[64];
		unsigned i = 0;
		while (tcp_listener_get_stats(&ut.s, i, &ls) && ls.port != port)
			i++;
		if (ls.port != port)
			fail("listener %u: no stats slot", port);
		p = word(p, f, sizeof(f));
		p = word(p, v2, sizeof(v2));
		want = num(v2, f);
		if (strcmp(f, "listening") == 0) got = ls.listening;
		else if (strcmp(f, "open") == 0) got = ls.open;
		else if (strcmp(f, "syn_pending") == 0) got = ls.syn_pending;
		else if (strcmp(f, "accepted") == 0) got = ls.accepted;
		else if (strcmp(f, "refused") == 0) got = ls.refused;
		else if (strcmp(f, "over_limit") == 0) got = ls.over_limit;
		else if (strcmp(f, "syncookies") == 0) got = ls.syncookies;
		else fail("listener: no figure '%s'", f);
		if (got != want)
			fail("listener %u %s is %llu, want %llu", port, f,
			     (unsigned long long)got, (unsigned long long)want);
		return;
	}
	if (strcmp(k, "ctr") == 0) {
		p = word(p, v2, sizeof(v2));
		want = num(v2, "counter");
		got = ut_ctr(v);
		if (got != want)
			fail("counter %s is %llu, want %llu", v,
			     (unsigned long long)got, (unsigned long long)want);
		return;
	}
	want = num(v, k);
	if (strcmp(k, "rcvd") == 0) {
		got = T.rcvd;
		if (T.rcvd_bad >= 0)
			fail("received byte %lld differs from what the peer sent",
			     (long long)T.rcvd_bad);
	} else if (strcmp(k, "conns") == 0) {
		got = tcp_live_conns(&ut.s);
	} else if (strcmp(k, "peer_closed") == 0) {
		got = (uint64_t)T.peer_closed;
	} else if (strcmp(k, "writable") == 0) {
		got = (uint64_t)T.writable;
	} else if (strcmp(k, "connected") == 0) {
		got = (uint64_t)T.connected;
	} else if (strcmp(k, "sendq") == 0) {
		got = tcp_send_queued(need_conn());
	} else if (strcmp(k, "rto") == 0) {
		struct tcp_conn_info i;
		tcp_conn_get_info(need_conn(), &i);
		got = i.rto_ms;
	} else {
		fail("unknown expectation '%s'", k);
	}
	if (got != want)
		fail("%s is %llu, want %llu", k, (unsigned long long)got,
		     (unsigned long long)want);
}

static void cmd_send(const char *p)
{
	char w[64];
	uint8_t *buf;
	uint64_t n, want = TS_ANY;
	ssize_t r;

	p = word(p, w, sizeof(w));
	n = num(w, "send");
	p = word(p, w, sizeof(w));
	if (strcmp(w, "->") == 0) {
		p = word(p, w, sizeof(w));
		want = (uint64_t)(int64_t)strtoll(w, NULL, 0);
	}
	buf = malloc(n ? n : 1);
	cr_assert_not_null(buf);
	for (uint64_t i = 0; i < n; i++)
		buf[i] = ts_app_byte(T.app_off + i);
	r = tcp_send(need_conn(), buf, n);
	if (r > 0) {
		app_record_sent(buf, (size_t)r);
		T.app_off += (uint64_t)r;
	}
	free(buf);
	if (want != TS_ANY && (uint64_t)(int64_t)r != want)
		fail("tcp_send returned %zd, want %lld", r, (long long)want);
	if (want == TS_ANY && r != (ssize_t)n)
		fail("tcp_send returned %zd, want %llu", r,
		     (unsigned long long)n);
}

/* icmp TYPE CODE SEQ [mtu N]: the gateway reports trouble with a segment
 * we sent on the current ports, quoting its IP header and the first 8
 * bytes of TCP (RFC 792); SEQ is relative to our ISN. */
static void cmd_icmp(const char *p)
{
	uint8_t icmp[8 + 20 + 8], f[UT_FRAME_MAX];
	uint8_t *in = icmp + 8, *th = icmp + 28;
	struct ut_ip_spec sp;
	char w[64];
	uint64_t type, code, seq, mtu = 0;
	size_t len;

	p = word(p, w, sizeof(w));
	type = num(w, "icmp type");
	p = word(p, w, sizeof(w));
	code = num(w, "icmp code");
	p = word(p, w, sizeof(w));
	seq = num(w, "icmp seq");
	p = word(p, w, sizeof(w));
	if (strcmp(w, "mtu") == 0) {
		p = word(p, w, sizeof(w));
		mtu = num(w, "mtu");
	} else if (w[0] != '\0') {
		fail("icmp: unexpected '%s'", w);
	}
	memset(icmp, 0, sizeof(icmp));
	icmp[0] = (uint8_t)type;
	icmp[1] = (uint8_t)code;
	ut_put16(icmp + 6, (uint16_t)mtu);
	/* the quoted datagram: us -> peer, TCP, DF */
	in[0] = 0x45;
	ut_put16(in + 2, 40);
	ut_put16(in + 6, 0x4000);
	in[8] = 64;
	in[9] = IPPROTO_TCP;
	ut_put32(in + 12, UT_OUR_IP);
	ut_put32(in + 16, UT_PEER_IP);
	ut_put16(in + 10, ut_cksum(in, 20));
	ut_put16(th, T.lport);
	ut_put16(th + 2, T.rport);
	ut_put32(th + 4, rte_cpu_to_be_32((uint32_t)seq +
					  (T.have_iss ? T.iss : 0)));
	ut_put16(icmp + 2, ut_cksum(icmp, sizeof(icmp)));
	ut_ip_spec_default(&sp);
	len = ut_build_ipv4(f, &sp, icmp, sizeof(icmp));
	ut_input(f, len);
}

/* The per-state gauges and the listener slots against a recount of the
 * connection pool, after every line of every script. */
static void check_state_counts(void)
{
	const struct tcp_stack *t = ut.s.tcp;
	uint32_t n[TCP_NSTATES], cnt[TCP_NSTATES] = { 0 }, sum = 0;
	uint32_t open[TCP_LISTENER_SLOTS] = { 0 };
	uint32_t half[TCP_LISTENER_SLOTS] = { 0 };
	struct tcp_listener_stats ls;

	if (t == NULL)
		return;
	tcp_state_counts(&ut.s, n);
	for (const struct tcp_listener *l = t->listeners; l; l = l->next)
		cnt[TCPS_LISTEN]++;
	for (uint32_t i = 0; i < t->pool_used; i++) {
		const struct tcp_conn *c = &t->pool[i];
		if (c->flags & TF_ZOMBIE)
			continue;
		cnt[c->state]++;
		if (c->listener == NULL || c->listener->st == &t->lst_spare)
			continue;
		if (c->state == TCPS_SYN_RECEIVED)
			half[c->listener->st - t->lst]++;
		else if (c->flags & TF_APP_OWNED)
			open[c->listener->st - t->lst]++;
	}
	for (unsigned st = 0; st < TCP_NSTATES; st++) {
		if (st != TCPS_LISTEN)
			sum += n[st];
		if (st != TCPS_CLOSED && n[st] != cnt[st])
			fail("gauge says %u connections in %s, the pool %u",
			     n[st], tcp_state_names[st], cnt[st]);
	}
	if (sum != tcp_live_conns(&ut.s))
		fail("states add up to %u connections, live %u", sum,
		     tcp_live_conns(&ut.s));
	for (unsigned i = 0; tcp_listener_get_stats(&ut.s, i, &ls); i++)
		if (ls.open != open[i] || ls.syn_pending != half[i])
			fail("listener %u: open %u half-open %u, the pool "
			     "%u and %u", ls.port, ls.open, ls.syn_pending,
			     open[i], half[i]);
}

static void start_stack(void)
{
	if (T.started)
		return;
	T.started = true;
	ut_stack_start(&T.conf, false);
	ut_learn_peer();
	T.now = 0;
}

static void command(const char *cmd, const char *p)
{
	char w[64];

	if (strcmp(cmd, "listen") == 0) {
		struct tcp_listen_opts o = { 0 };
		int rc;

		p = word(p, w, sizeof(w));
		o.port = (uint16_t)num(w, "port");
		p = word(p, w, sizeof(w));
		T.app = parse_app(w);
		for (;;) {
			p = word(p, w, sizeof(w));
			if (w[0] == '\0')
				break;
			if (strcmp(w, "backlog") == 0) {
				p = word(p, w, sizeof(w));
				o.syn_backlog = (uint32_t)num(w, "backlog");
			} else if (strcmp(w, "cc") == 0) {
				p = word(p, w, sizeof(w));
				if (strcmp(w, "newreno") == 0)
					o.cc = TCP_CC_NEWRENO;
				else if (strcmp(w, "cubic") == 0)
					o.cc = TCP_CC_CUBIC;
				else
					fail("cc: newreno or cubic");
			} else if (strcmp(w, "max") == 0) {
				p = word(p, w, sizeof(w));
				o.max_conns = (uint32_t)num(w, "max");
			} else {
				fail("listen: unexpected '%s'", w);
			}
		}
		rc = tcp_listen(&ut.s, &o, app_accept, &T, &T.l);
		if (rc != 0)
			fail("tcp_listen: %d", rc);
		T.lport = o.port;
		T.rport = 40000;
		T.have_iss = false;
		T.have_tsbase = false;
	} else if (strcmp(cmd, "unlisten") == 0) {
		tcp_unlisten(&ut.s, T.l);
		T.l = NULL;
	} else if (strcmp(cmd, "connect") == 0) {
		struct tcp_conn *c = NULL;
		uint8_t f[UT_FRAME_MAX];
		int rc, n;

		p = word(p, w, sizeof(w)); /* the IP: always the peer */
		if (strcmp(w, "198.18.0.1") != 0)
			fail("connect: only to 198.18.0.1");
		p = word(p, w, sizeof(w));
		T.rport = (uint16_t)num(w, "port");
		p = word(p, w, sizeof(w));
		T.app = w[0] ? parse_app(w) : APP_SINK;
		new_conn_state();
		T.have_iss = false;
		T.have_tsbase = false;
		rc = tcp_connect(&ut.s, UT_PEER_IP, T.rport, &app_cb, &T, &c);
		if (rc != 0)
			fail("tcp_connect: %d", rc);
		T.c = c;
		stack_flush(&ut.s);
		/* learn the ephemeral port from the SYN, leave it queued */
		if (ut_tx_pending() == 0)
			fail("connect sent nothing");
		{
			struct rte_mbuf *m = ut.fp.txq[ut.fp.tx_head % DP_FAKE_QLEN];
			n = (int)rte_pktmbuf_pkt_len(m);
			if (n < UT_L4_OFF + 4)
				fail("short SYN");
			memcpy(f, rte_pktmbuf_mtod(m, uint8_t *), UT_L4_OFF + 4);
			T.lport = ut_get16(f + UT_L4_OFF);
		}
	} else if (strcmp(cmd, "port") == 0) {
		p = word(p, w, sizeof(w));
		T.lport = (uint16_t)num(w, "port");
	} else if (strcmp(cmd, "rport") == 0) {
		p = word(p, w, sizeof(w));
		T.rport = (uint16_t)num(w, "rport");
	} else if (strcmp(cmd, "send") == 0) {
		cmd_send(p);
	} else if (strcmp(cmd, "forget_isn") == 0) {
		/* the next SYN or SYN-ACK we send starts a new connection */
		T.have_iss = false;
		T.have_tsbase = false;
	} else if (strcmp(cmd, "icmp") == 0) {
		cmd_icmp(p);
	} else if (strcmp(cmd, "shutdown") == 0) {
		int rc = tcp_shutdown(need_conn());
		if (rc != 0)
			fail("tcp_shutdown: %d", rc);
	} else if (strcmp(cmd, "close") == 0) {
		tcp_close(need_conn());
		T.c = NULL;
	} else if (strcmp(cmd, "abort") == 0) {
		tcp_abort(need_conn());
		T.c = NULL;
	} else if (strcmp(cmd, "pause") == 0) {
		tcp_recv_pause(need_conn(), true);
	} else if (strcmp(cmd, "resume") == 0) {
		tcp_recv_pause(need_conn(), false);
	} else if (strcmp(cmd, "expect") == 0) {
		cmd_expect(p);
		return;
	} else {
		fail("unknown command '%s'", cmd);
	}
	/* as at the end of an event in the worker loop */
	stack_flush(&ut.s);
}

static void conf_line(const char *p)
{
	char k[64], v[64];
	uint32_t val;

	if (T.started)
		fail("conf after the first timed line");
	p = word(p, k, sizeof(k));
	p = word(p, v, sizeof(v));
	val = (uint32_t)num(v, k);
#define C(field)                                                              \
	if (strcmp(k, #field) == 0) {                                         \
		T.conf.field = val;                                           \
		return;                                                       \
	}
	C(tcp_retries) C(tcp_syn_retries) C(tcp_rcvbuf) C(tcp_sndbuf)
	C(tcp_msl_ms) C(tcp_delack_ms) C(tcp_rto_min_ms) C(tcp_rto_max_ms)
	C(tcp_rto_init_ms) C(tcp_fin_timeout_ms) C(tcp_syn_backlog)
	C(tcp_max_conns) C(tcp_keepalive_idle_ms) C(tcp_keepalive_intvl_ms)
	C(tcp_keepalive_probes) C(tcp_max_timewait) C(tcp_challenge_ack_limit)
#undef C
	if (strcmp(k, "tcp_timestamps") == 0)
		T.conf.tcp_timestamps = val != 0;
	else if (strcmp(k, "tcp_sack") == 0)
		T.conf.tcp_sack = val != 0;
	else if (strcmp(k, "tcp_wscale") == 0)
		T.conf.tcp_wscale = val != 0;
	else if (strcmp(k, "tcp_keepalive") == 0)
		T.conf.tcp_keepalive = val != 0;
	else
		fail("unknown conf key '%s'", k);
}

/* ------------------------------------------------------------------ */
/* The driver                                                          */

static uint64_t parse_time(const char *w)
{
	bool rel = w[0] == '+';
	char *e;
	double v = strtod(w + rel, &e);

	if (e == w + rel || *e != '\0' || v < 0)
		fail("bad time '%s'", w);
	uint64_t ms = (uint64_t)(v * 1000.0 + 0.5);
	return rel ? T.last_t + ms : ms;
}

static void run_line(const char *p)
{
	char w[64];
	uint64_t t;

	p = word(p, w, sizeof(w));
	if (w[0] == '\0')
		return;
	if (strcmp(w, "conf") == 0) {
		conf_line(p);
		return;
	}
	start_stack();
	t = parse_time(w);
	if (t < T.last_t)
		fail("time goes back");
	T.last_t = t;
	{
		char d[8];
		word(p, d, sizeof(d));
		advance(t, strcmp(d, ">") == 0);
	}
	p = word(p, w, sizeof(w));
	if (strcmp(w, "<") == 0) {
		struct sseg g;
		parse_seg(p, &g, true);
		inject(&g);
	} else if (strcmp(w, ">") == 0) {
		struct sseg g;
		char n[16];
		word(p, n, sizeof(n));
		if (strcmp(n, "none") == 0) {
			check_quiet("(expected none)");
			return;
		}
		parse_seg(p, &g, false);
		expect_seg(&g);
	} else {
		command(w, p);
	}
}

void ts_run(const char *name, const char *script)
{
	const char *p = script;

	memset(&T, 0, sizeof(T));
	T.name = name;
	T.rcvd_bad = -1;
	T.sent = malloc(TS_SENT_MAX);
	cr_assert_not_null(T.sent);
	ut_default_conf(&T.conf);
	/* the peer's ARP entry outlives every script */
	T.conf.arp_timeout_ms = 24u * 3600 * 1000;
	T.conf.tcp_max_conns = 64;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		char *hash;

		T.lineno++;
		if (n >= sizeof(T.line))
			n = sizeof(T.line) - 1;
		memcpy(T.line, p, n);
		T.line[n] = '\0';
		p += n + (nl != NULL);
		hash = strchr(T.line, '#');
		{
			char buf[sizeof(T.line)];
			memcpy(buf, T.line, sizeof(buf));
			if (hash != NULL)
				buf[hash - T.line] = '\0';
			run_line(buf);
		}
		if (T.started)
			check_state_counts();
	}
	start_stack();
	T.lineno++;
	snprintf(T.line, sizeof(T.line), "(end of script)");
	check_quiet("at the end of the script");
	/* stop the stack: a connection the app still holds is closed with
	 * SHUTDOWN, and every mbuf must be back */
	{
		bool held = T.c != NULL;
		ut_end();
		if (held)
			cr_assert_eq(T.closed, TCP_CLOSE_SHUTDOWN,
				     "script %s: connection still held at the "
				     "end was not closed with SHUTDOWN (%d)",
				     name, T.closed);
	}
	free(T.sent);
	T.sent = NULL;
}
