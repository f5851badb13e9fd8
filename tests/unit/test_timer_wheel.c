/*
 * test_timer_wheel.c: tcpstack/timer_wheel, the per-worker hierarchical
 * timing wheel. Exact firing at every level boundary, never early,
 * cancel and re-arm, callbacks that re-arm, cancel, arm or free, big
 * jumps, idle time, and 100k random timers checked against a per-timer
 * model. No DPDK EAL needed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tcpstack/timer_wheel.h"

#define DAY_MS (24ULL * 3600 * 1000)
#define HOUR_MS (3600ULL * 1000)

static struct timer_wheel tw;

/* Cheap checks for hot loops (a Criterion assertion costs a message). */
static unsigned nfail;
static char first_fail[256];
#define CHECK(cond, ...) do { \
	if (!(cond) && nfail++ == 0) \
		snprintf(first_fail, sizeof(first_fail), __VA_ARGS__); \
} while (0)
#define CHECKS_PASSED() cr_assert_eq(nfail, 0, "%u failures, first: %s", \
				     nfail, first_fail)

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
	return n == 0 ? 0 : rnd() % n;
}

/* ------------------------------------------------------------------ */
/* A recording timer                                                   */

struct ev {
	struct tw_timer t;
	unsigned fires;
	uint64_t fired_now;       /* tw.now during the last callback */
	int period;               /* > 0: re-arm at expires + period; 0: at now */
	struct ev *victim;        /* cancelled by this one's callback */
	struct ev *spawn;         /* armed by this one's callback ... */
	uint64_t spawn_at;        /* ... at this time */
};

#define EV_OF(tp) ((struct ev *)((char *)(tp) - offsetof(struct ev, t)))

static uint64_t fire_log[4096];
static unsigned nlog;

static void ev_fn(struct tw_timer *t, void *ctx)
{
	struct ev *e = EV_OF(t);
	struct timer_wheel *w = ctx;

	CHECK(w == &tw, "ctx");
	CHECK(!tw_armed(t), "fired timer still armed");
	CHECK(w->now >= t->expires, "early: now %llu < expires %llu",
	      (unsigned long long)w->now, (unsigned long long)t->expires);
	e->fires++;
	e->fired_now = w->now;
	if (nlog < 4096)
		fire_log[nlog++] = t->expires;
	if (e->victim != NULL)
		tw_cancel(w, &e->victim->t);
	if (e->spawn != NULL)
		tw_arm(w, &e->spawn->t, e->spawn_at);
	if (e->period > 0)
		tw_arm(w, t, t->expires + (uint64_t)e->period);
	else if (e->period == 0)
		tw_arm(w, t, w->now);
}

static void ev_init(struct ev *e)
{
	memset(e, 0, sizeof(*e));
	e->period = -1;
	tw_timer_init(&e->t, ev_fn);
}

static void check_log_sorted(void)
{
	for (unsigned i = 1; i < nlog; i++)
		cr_assert_geq(fire_log[i], fire_log[i - 1],
			      "fire %u: expires %llu after %llu", i,
			      (unsigned long long)fire_log[i],
			      (unsigned long long)fire_log[i - 1]);
}

/* ------------------------------------------------------------------ */
/* Exact expiry at every level boundary                                */

static const uint64_t delays[] = {
	1, 2, 255, 256, 257, 511, 512, 65535, 65536, 65537,
	2 * HOUR_MS, (1ULL << 24) - 1, 1ULL << 24, (1ULL << 24) + 1,
	49 * DAY_MS, TW_MAX_DELAY_MS - 1, TW_MAX_DELAY_MS,
};
static const uint64_t bases[] = {
	0, 1, 255, 256, 65535, 123456789, (1ULL << 32) - 7, (1ULL << 40) + 3,
};

Test(timer_wheel, fires_exactly_at_expiry_all_levels)
{
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		for (size_t d = 0; d < sizeof(delays) / sizeof(delays[0]); d++) {
			uint64_t base = bases[b], exp = base + delays[d];
			struct ev e;

			tw_init(&tw, base, &tw);
			ev_init(&e);
			tw_arm(&tw, &e.t, exp);
			cr_assert(tw_armed(&e.t));
			cr_assert_eq(e.t.expires, exp);
			cr_assert_eq(tw.armed, 1);
			/* two jumps up to one ms before: never early */
			tw_advance(&tw, base + delays[d] / 2);
			tw_advance(&tw, exp - 1);
			cr_assert_eq(e.fires, 0, "base %llu delay %llu: early",
				     (unsigned long long)base,
				     (unsigned long long)delays[d]);
			cr_assert_eq(tw.armed, 1);
			tw_advance(&tw, exp);
			cr_assert_eq(e.fires, 1, "base %llu delay %llu: not fired",
				     (unsigned long long)base,
				     (unsigned long long)delays[d]);
			cr_assert_eq(e.fired_now, exp);
			cr_assert_eq(tw.armed, 0);
			cr_assert(!tw_armed(&e.t));
			tw_advance(&tw, exp + 3 * (1ULL << 32));
			cr_assert_eq(e.fires, 1);
		}
	}
	CHECKS_PASSED();
}

/* One jump straight past the expiry fires it, with tw.now == expires. */
Test(timer_wheel, jump_past_expiry_all_levels)
{
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		for (size_t d = 0; d < sizeof(delays) / sizeof(delays[0]); d++) {
			uint64_t base = bases[b], exp = base + delays[d];
			struct ev e;

			tw_init(&tw, base, &tw);
			ev_init(&e);
			tw_arm(&tw, &e.t, exp);
			tw_advance(&tw, exp + 12345);
			cr_assert_eq(e.fires, 1);
			cr_assert_eq(e.fired_now, exp);
			cr_assert_eq(tw.now, exp + 12345);
			cr_assert_eq(tw.armed, 0);
		}
	}
	CHECKS_PASSED();
}

/* Millisecond by millisecond, as a busy worker advances. */
Test(timer_wheel, ms_by_ms_across_cascades)
{
	static const uint64_t small[] = { 1, 255, 256, 257, 65535, 65536, 65537 };

	for (size_t d = 0; d < sizeof(small) / sizeof(small[0]); d++) {
		uint64_t base = 987654321, exp = base + small[d];
		struct ev e;

		tw_init(&tw, base, &tw);
		ev_init(&e);
		tw_arm(&tw, &e.t, exp);
		for (uint64_t now = base + 1; now < exp; now++) {
			tw_advance(&tw, now);
			CHECK(e.fires == 0, "delay %llu fired at %llu",
			      (unsigned long long)small[d],
			      (unsigned long long)now);
		}
		tw_advance(&tw, exp);
		cr_assert_eq(e.fires, 1);
		cr_assert_eq(e.fired_now, exp);
	}
	CHECKS_PASSED();
}

Test(timer_wheel, clamps_beyond_max_delay)
{
	static const uint64_t far[] = {
		TW_MAX_DELAY_MS + 1, TW_MAX_DELAY_MS + 1000, 1ULL << 40,
	};
	uint64_t base = 5000;

	for (size_t i = 0; i <= sizeof(far) / sizeof(far[0]); i++) {
		uint64_t exp = i < sizeof(far) / sizeof(far[0]) ?
			base + far[i] : UINT64_MAX;
		struct ev e;

		tw_init(&tw, base, &tw);
		ev_init(&e);
		tw_arm(&tw, &e.t, exp);
		cr_assert_eq(e.t.expires, base + TW_MAX_DELAY_MS);
		tw_advance(&tw, base + TW_MAX_DELAY_MS - 1);
		cr_assert_eq(e.fires, 0);
		tw_advance(&tw, base + TW_MAX_DELAY_MS);
		cr_assert_eq(e.fires, 1);
		cr_assert_eq(e.fired_now, base + TW_MAX_DELAY_MS);
	}
	CHECKS_PASSED();
}

/* ------------------------------------------------------------------ */
/* Cancel and re-arm                                                   */

Test(timer_wheel, cancel_before_fire)
{
	struct ev a, b, never;

	tw_init(&tw, 100, &tw);
	ev_init(&a);
	ev_init(&b);
	ev_init(&never);
	tw_cancel(&tw, &never.t);              /* never armed: harmless */
	tw_arm(&tw, &a.t, 300);
	tw_arm(&tw, &b.t, 100 + 70000);        /* level 2 */
	cr_assert_eq(tw.armed, 2);
	tw_advance(&tw, 250);
	tw_cancel(&tw, &a.t);
	tw_cancel(&tw, &a.t);                  /* twice: harmless */
	cr_assert(!tw_armed(&a.t));
	cr_assert_eq(tw.armed, 1);
	tw_advance(&tw, 1000);
	tw_cancel(&tw, &b.t);                  /* after its cascade */
	cr_assert_eq(tw.armed, 0);
	tw_advance(&tw, 10 * DAY_MS);
	cr_assert_eq(a.fires + b.fires + never.fires, 0);
	/* the emptied slots do not cost steps any more */
	tw.steps = 0;
	tw_advance(&tw, 20 * DAY_MS);
	cr_assert_eq(tw.steps, 0);
	CHECKS_PASSED();
}

Test(timer_wheel, rearm_moves_timer)
{
	struct ev e;

	tw_init(&tw, 0, &tw);
	ev_init(&e);
	tw_arm(&tw, &e.t, 1000);
	tw_arm(&tw, &e.t, 500);                /* earlier */
	cr_assert_eq(tw.armed, 1);
	tw_advance(&tw, 499);
	cr_assert_eq(e.fires, 0);
	tw_advance(&tw, 500);
	cr_assert_eq(e.fires, 1);
	tw_advance(&tw, 1500);
	cr_assert_eq(e.fires, 1, "the old expiry must not fire");

	tw_arm(&tw, &e.t, 2000);
	tw_advance(&tw, 1900);
	tw_arm(&tw, &e.t, 2000 + 3 * HOUR_MS);  /* later, another level */
	cr_assert_eq(tw.armed, 1);
	tw_advance(&tw, 2000 + 3 * HOUR_MS - 1);
	cr_assert_eq(e.fires, 1);
	tw_advance(&tw, 2000 + 3 * HOUR_MS);
	cr_assert_eq(e.fires, 2);
	cr_assert_eq(e.fired_now, 2000 + 3 * HOUR_MS);
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

/* Expiries in the past or now fire on the next advance, in order. */
Test(timer_wheel, past_and_now_fire_on_next_advance)
{
	struct ev e[4];
	static const uint64_t at[4] = { 1000, 7, 999, 0 };

	tw_init(&tw, 1000, &tw);
	for (int i = 0; i < 4; i++) {
		ev_init(&e[i]);
		tw_arm(&tw, &e[i].t, at[i]);
		cr_assert_eq(e[i].t.expires, at[i]);
	}
	cr_assert_eq(tw.armed, 4);
	tw_advance(&tw, 1000);                 /* no time passes */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(e[i].fires, 1);
	cr_assert_eq(nlog, 4);
	check_log_sorted();
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

/* ------------------------------------------------------------------ */
/* Callbacks                                                           */

Test(timer_wheel, periodic_rearm_from_callback)
{
	struct ev e;

	tw_init(&tw, 0, &tw);
	ev_init(&e);
	e.period = 10;
	tw_arm(&tw, &e.t, 10);
	tw_advance(&tw, 1000);                 /* one call, 100 periods */
	cr_assert_eq(e.fires, 100);
	cr_assert_eq(nlog, 100);
	for (unsigned i = 0; i < nlog; i++)
		cr_assert_eq(fire_log[i], 10 * (i + 1));
	cr_assert(tw_armed(&e.t));
	cr_assert_eq(e.t.expires, 1010);
	cr_assert_eq(tw.armed, 1);
	tw_cancel(&tw, &e.t);
	tw_advance(&tw, 5000);
	cr_assert_eq(e.fires, 100);
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

/* Re-arming for "now" (or the past) from a callback must not loop. */
Test(timer_wheel, rearm_at_now_from_callback_waits_next_advance)
{
	struct ev e;

	tw_init(&tw, 0, &tw);
	ev_init(&e);
	e.period = 0;
	tw_arm(&tw, &e.t, 10);
	tw_advance(&tw, 100);
	cr_assert_eq(e.fires, 1);
	cr_assert_eq(e.fired_now, 10);
	cr_assert(tw_armed(&e.t));
	tw_advance(&tw, 100);
	cr_assert_eq(e.fires, 2);
	tw_advance(&tw, 101);
	cr_assert_eq(e.fires, 3);
	e.period = -1;
	tw_advance(&tw, 102);
	cr_assert_eq(e.fires, 4);
	tw_advance(&tw, 200);
	cr_assert_eq(e.fires, 4);
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

Test(timer_wheel, callback_cancels_timer_due_same_tick)
{
	struct ev a, b, c;

	tw_init(&tw, 0, &tw);
	ev_init(&a);
	ev_init(&b);
	ev_init(&c);
	a.victim = &b;
	b.victim = &a;
	tw_arm(&tw, &a.t, 300);                /* via level 1 */
	tw_arm(&tw, &b.t, 300);
	c.victim = &a;                         /* may find a fired or cancelled */
	tw_arm(&tw, &c.t, 300);
	tw_advance(&tw, 1000);
	cr_assert_eq(a.fires + b.fires, 1, "a %u b %u", a.fires, b.fires);
	cr_assert_eq(c.fires, 1);
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

Test(timer_wheel, callback_cancels_later_timer_same_advance)
{
	struct ev a, b;

	tw_init(&tw, 0, &tw);
	ev_init(&a);
	ev_init(&b);
	a.victim = &b;
	tw_arm(&tw, &a.t, 100);
	tw_arm(&tw, &b.t, 150);
	tw_advance(&tw, 200);
	cr_assert_eq(a.fires, 1);
	cr_assert_eq(b.fires, 0);
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

Test(timer_wheel, callback_arms_other_timers)
{
	struct ev a, later, past, same;

	tw_init(&tw, 0, &tw);
	ev_init(&a);
	ev_init(&later);
	ev_init(&past);
	ev_init(&same);
	/* a at 100 arms later for 150: fires in this advance */
	a.spawn = &later;
	a.spawn_at = 150;
	later.spawn = &past;                   /* later arms past for 50 */
	later.spawn_at = 50;
	tw_arm(&tw, &a.t, 100);
	tw_arm(&tw, &same.t, 150);
	tw_advance(&tw, 200);
	cr_assert_eq(a.fires, 1);
	cr_assert_eq(later.fires, 1);
	cr_assert_eq(later.fired_now, 150);
	cr_assert_eq(same.fires, 1);
	cr_assert_eq(past.fires, 0, "armed in the past: waits next advance");
	cr_assert_eq(tw.armed, 1);
	check_log_sorted();
	tw_advance(&tw, 200);
	cr_assert_eq(past.fires, 1);
	cr_assert_eq(tw.armed, 0);
	CHECKS_PASSED();
}

/* Owners that free themselves (or each other) from the callback: ASan. */
struct owner {
	int id;
	struct tw_timer t;
	struct owner *peer;        /* cancelled and freed by this one */
};

static unsigned owners_fired;

static void owner_fn(struct tw_timer *t, void *ctx)
{
	struct owner *o = (struct owner *)((char *)t - offsetof(struct owner, t));

	owners_fired++;
	if (o->peer != NULL) {
		tw_cancel(ctx, &o->peer->t);
		free(o->peer);
	}
	memset(o, 0xa5, sizeof(*o));
	free(o);
}

Test(timer_wheel, callback_frees_owner)
{
	enum { N = 64 };
	struct owner *o[N];

	tw_init(&tw, 0, &tw);
	for (int i = 0; i < N; i++) {
		o[i] = calloc(1, sizeof(*o[i]));
		cr_assert_not_null(o[i]);
		o[i]->id = i;
		tw_timer_init(&o[i]->t, owner_fn);
	}
	/* pairs in the same slot: the first to fire frees the other */
	for (int i = 0; i < N; i += 2) {
		o[i]->peer = o[i + 1];
		o[i + 1]->peer = o[i];
		tw_arm(&tw, &o[i]->t, 1000 + (uint64_t)(i % 8) * 70000);
		tw_arm(&tw, &o[i + 1]->t, 1000 + (uint64_t)(i % 8) * 70000);
	}
	cr_assert_eq(tw.armed, N);
	tw_advance(&tw, 10 * DAY_MS);
	cr_assert_eq(owners_fired, N / 2);
	cr_assert_eq(tw.armed, 0);

	/* and many that just free themselves, in one slot */
	for (int i = 0; i < N; i++) {
		struct owner *x = calloc(1, sizeof(*x));

		cr_assert_not_null(x);
		tw_timer_init(&x->t, owner_fn);
		tw_arm(&tw, &x->t, tw.now + 5);
	}
	tw_advance(&tw, tw.now + 5);
	cr_assert_eq(owners_fired, N / 2 + N);
	cr_assert_eq(tw.armed, 0);
}

/* ------------------------------------------------------------------ */
/* Big jumps and idle time                                             */

Test(timer_wheel, big_jump_fires_everything_in_order)
{
	enum { N = 4000 };
	static struct ev e[N];
	uint64_t base = 77777;

	rng_state = 42;
	tw_init(&tw, base, &tw);
	for (int i = 0; i < N; i++) {
		ev_init(&e[i]);
		tw_arm(&tw, &e[i].t, base + 1 + rnd_below(10 * HOUR_MS));
	}
	tw_advance(&tw, base + 10 * HOUR_MS);
	cr_assert_eq(nlog, N);
	check_log_sorted();
	for (int i = 0; i < N; i++) {
		cr_assert_eq(e[i].fires, 1);
		cr_assert_eq(e[i].fired_now, e[i].t.expires);
	}
	cr_assert_eq(tw.armed, 0);
	/* steps: at most one per timer per level, not one per ms */
	cr_assert_leq(tw.steps, N * TW_LEVELS, "%llu steps",
		      (unsigned long long)tw.steps);
	CHECKS_PASSED();
}

Test(timer_wheel, idle_time_is_free)
{
	struct ev e;

	tw_init(&tw, 3, &tw);
	tw_advance(&tw, 30 * DAY_MS);
	cr_assert_eq(tw.now, 30 * DAY_MS);
	cr_assert_eq(tw.steps, 0);

	/* one far timer: a cascade per level, then it fires */
	ev_init(&e);
	tw_arm(&tw, &e.t, 60 * DAY_MS + 12345);
	tw_advance(&tw, 100 * DAY_MS);
	cr_assert_eq(e.fires, 1);
	cr_assert_eq(e.fired_now, 60 * DAY_MS + 12345);
	cr_assert_leq(tw.steps, TW_LEVELS, "%llu steps",
		      (unsigned long long)tw.steps);
	CHECKS_PASSED();
}

/* ------------------------------------------------------------------ */
/* 100k random timers against a per-timer model                        */

struct rt {
	struct tw_timer t;
	bool armed;               /* model: armed */
	bool inside;              /* armed from a callback */
	uint64_t exp;             /* model: expiry after clamping */
	uint64_t arm_now;         /* tw.now when armed */
	uint32_t arm_calls;       /* tw_advance calls started when armed */
	uint32_t fires, want;
};

enum { NR = 100000 };
static struct rt *rts;
static uint32_t calls;        /* tw_advance calls started */
static bool in_advance, actions;
static uint64_t prev_T, cur_T, last_exp, model_armed;

static uint64_t rnd_delay(void)
{
	uint64_t p = rnd_below(100);

	if (p < 40)
		return rnd_below(5000);
	if (p < 70)
		return rnd_below(300000);
	if (p < 90)
		return rnd_below(10 * HOUR_MS);
	if (p < 98)
		return rnd_below(1ULL << 32);
	return TW_MAX_DELAY_MS + rnd_below(1ULL << 33);
}

static uint64_t rnd_expiry(void)
{
	if (rnd_below(50) == 0)
		return tw.now - rnd_below(1000);   /* in the past or now */
	return tw.now + rnd_delay();
}

static void rt_arm(struct rt *r, uint64_t exp)
{
	uint64_t want = exp;

	if (exp > tw.now && exp - tw.now > TW_MAX_DELAY_MS)
		want = tw.now + TW_MAX_DELAY_MS;
	if (!r->armed) {
		r->want++;
		model_armed++;
	}
	r->armed = true;
	r->inside = in_advance;
	r->exp = want;
	r->arm_now = tw.now;
	r->arm_calls = calls;
	tw_arm(&tw, &r->t, exp);
	CHECK(r->t.expires == want, "expires %llu want %llu",
	      (unsigned long long)r->t.expires, (unsigned long long)want);
}

static void rt_cancel(struct rt *r)
{
	if (r->armed) {
		r->armed = false;
		r->want--;
		model_armed--;
	}
	tw_cancel(&tw, &r->t);
	CHECK(!tw_armed(&r->t), "cancel left it armed");
}

static void rt_fn(struct tw_timer *t, void *ctx)
{
	struct rt *r = (struct rt *)((char *)t - offsetof(struct rt, t));
	uint32_t first = r->inside ? r->arm_calls : r->arm_calls + 1;

	(void)ctx;
	CHECK(r->armed, "timer %td fired unarmed", r - rts);
	CHECK(t->expires == r->exp, "timer %td expires changed", r - rts);
	CHECK(r->exp <= cur_T, "timer %td early: %llu > %llu", r - rts,
	      (unsigned long long)r->exp, (unsigned long long)cur_T);
	if (r->exp <= r->arm_now) {
		CHECK(calls == r->arm_calls + 1,
		      "timer %td armed due: fired in call %u, armed at %u",
		      r - rts, calls, r->arm_calls);
	} else {
		CHECK(calls >= first && (calls == first || prev_T < r->exp),
		      "timer %td late: exp %llu, previous advance to %llu",
		      r - rts, (unsigned long long)r->exp,
		      (unsigned long long)prev_T);
		CHECK(tw.now == r->exp, "timer %td: now %llu exp %llu", r - rts,
		      (unsigned long long)tw.now, (unsigned long long)r->exp);
	}
	CHECK(r->exp >= last_exp, "order: %llu after %llu",
	      (unsigned long long)r->exp, (unsigned long long)last_exp);
	last_exp = r->exp;
	r->armed = false;
	r->fires++;
	model_armed--;
	if (!actions)
		return;
	switch (rnd_below(20)) {
	case 0:
	case 1:                                /* periodic-ish */
		rt_arm(r, tw.now + rnd_below(3000));
		break;
	case 2:
		rt_cancel(&rts[rnd_below(NR)]);
		break;
	case 3:
		rt_arm(&rts[rnd_below(NR)], rnd_expiry());
		break;
	default:
		break;
	}
}

static void rt_advance(uint64_t to)
{
	calls++;
	in_advance = true;
	cur_T = to;
	last_exp = 0;
	tw_advance(&tw, to);
	in_advance = false;
	prev_T = to;
	CHECK(tw.now == to, "now %llu after advance to %llu",
	      (unsigned long long)tw.now, (unsigned long long)to);
	CHECK(tw.armed == model_armed, "armed %llu, model %llu",
	      (unsigned long long)tw.armed, (unsigned long long)model_armed);
}

/* Nothing due by now is still armed (except those armed due in a callback). */
static void rt_check_none_late(void)
{
	for (int i = 0; i < NR; i++) {
		struct rt *r = &rts[i];

		CHECK(!r->armed || r->exp > tw.now ||
		      (r->inside && r->arm_calls == calls &&
		       r->exp <= r->arm_now),
		      "timer %d late: exp %llu now %llu", i,
		      (unsigned long long)r->exp, (unsigned long long)tw.now);
	}
}

Test(timer_wheel, random_100k_against_model)
{
	uint64_t base = 1000000007;

	rng_state = 0x5eed;
	rts = calloc(NR, sizeof(*rts));
	cr_assert_not_null(rts);
	tw_init(&tw, base, &tw);
	prev_T = base;
	actions = true;
	for (int i = 0; i < NR; i++) {
		tw_timer_init(&rts[i].t, rt_fn);
		rt_arm(&rts[i], rnd_expiry());
	}
	cr_assert_eq(tw.armed, NR);

	for (int round = 0; round < 20000; round++) {
		for (int k = (int)rnd_below(6); k > 0; k--) {
			struct rt *r = &rts[rnd_below(NR)];

			if (rnd_below(3) == 0)
				rt_cancel(r);
			else
				rt_arm(r, rnd_expiry());
		}
		rt_advance(tw.now + rnd_below(5001));
		if (round % 2000 == 0)
			rt_check_none_late();
	}
	rt_check_none_late();

	/* big jumps, callbacks quiet, until everything has fired */
	actions = false;
	for (int i = 0; i < 1000 && model_armed > 0; i++) {
		rt_advance(tw.now + rnd_below(1ULL << 30));
		rt_check_none_late();
	}
	cr_assert_eq(model_armed, 0);
	cr_assert_eq(tw.armed, 0);
	for (int i = 0; i < NR; i++) {
		cr_assert(!tw_armed(&rts[i].t));
		CHECK(rts[i].fires == rts[i].want, "timer %d fired %u want %u",
		      i, rts[i].fires, rts[i].want);
	}
	CHECKS_PASSED();
	{
		uint64_t fires = 0;

		for (int i = 0; i < NR; i++)
			fires += rts[i].fires;
		cr_log_info("%llu fires in %u advances, %llu steps",
			    (unsigned long long)fires, calls,
			    (unsigned long long)tw.steps);
		cr_assert_gt(fires, NR);
	}
	free(rts);
}
