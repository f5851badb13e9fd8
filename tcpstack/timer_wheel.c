/*
 * timer_wheel.c: a hierarchical timing wheel (Varghese & Lauck, scheme 7;
 * the shape of the kernel's old cascading timer wheel).
 *
 * Level L (0..TW_LEVELS-1) has TW_SLOTS slots of 2^(8L) ms each. A timer
 * due delta = expires - now ms ahead sits at the level whose range holds
 * delta (level 0: 0..255, level 1: 256..65535, ..., level 3: up to
 * 2^32 - 1), in slot (expires >> 8L) & 255. Level 0 is exact to the ms.
 * When the clock reaches a multiple of 2^(8L), slot (now >> 8L) & 255 of
 * level L is cascaded: its timers are placed again relative to the new
 * now, at finer levels, the ones due exactly then in level 0, whose slot
 * for that ms is fired right after.
 *
 * Why a slot is cascaded exactly once, at the right time: a timer placed
 * at level L >= 1 when the clock read n has delta in [2^8L, 2^8(L+1)), so
 * b = expires >> 8L lies in [(n >> 8L) + 1, (n >> 8L) + 256]; of the
 * multiples of 2^8L after n, the first whose level-L slot index is
 * b & 255 is b << 8L, which is <= expires. Level 0 holds expiries in
 * (now, now + 255], one ms per slot.
 *
 * Skipping: a bitmap of non-empty slots per level gives the next ms at
 * which anything happens (a level-0 slot to fire, or a non-empty slot of a
 * coarser level to cascade); tw_advance() jumps straight there. Idle time
 * costs nothing, and a jump of hours costs O(timers + cascades), never
 * O(ms). Jumping over ms where nothing happens keeps the invariant above
 * because no non-empty slot's cascade time was skipped.
 *
 * Timers armed at or before now go on a separate due list, fired (sorted
 * by expires) at the start of the next tw_advance(): a callback that
 * re-arms its timer for "now" cannot loop within one advance.
 *
 * Lists are intrusive and doubly linked (next, pprev), so arm and cancel
 * are O(1). A slot list is detached before its timers fire; its head then
 * lives on the stack of tw_fire(), and a callback that cancels or re-arms
 * a timer still on it unlinks it from there.
 */
#include "tcpstack/timer_wheel.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#define TW_MASK (TW_SLOTS - 1)
#define TW_WORDS (TW_SLOTS / 64)

static void tw_link(struct tw_timer **head, struct tw_timer *t)
{
	t->next = *head;
	if (t->next != NULL)
		t->next->pprev = &t->next;
	*head = t;
	t->pprev = head;
}

static void tw_unlink(struct tw_timer *t)
{
	*t->pprev = t->next;
	if (t->next != NULL)
		t->next->pprev = t->pprev;
	t->next = NULL;
	t->pprev = NULL;
}

static void tw_bit_set(struct timer_wheel *tw, unsigned level, unsigned slot)
{
	tw->used[level][slot / 64] |= 1ULL << (slot % 64);
}

static void tw_bit_clear(struct timer_wheel *tw, unsigned level, unsigned slot)
{
	tw->used[level][slot / 64] &= ~(1ULL << (slot % 64));
}

static unsigned tw_level_of(uint64_t delta)
{
	if (delta < TW_SLOTS)
		return 0;
	return (unsigned)(63 - __builtin_clzll(delta)) / TW_SLOTS_BITS;
}

/* Puts t (not linked, tw->now <= expires <= tw->now + max) in its slot. */
static void tw_place(struct timer_wheel *tw, struct tw_timer *t)
{
	uint64_t delta = t->expires - tw->now;
	unsigned level = tw_level_of(delta);
	unsigned slot;

	assert(t->expires >= tw->now && level < TW_LEVELS);
	slot = (unsigned)(t->expires >> (TW_SLOTS_BITS * level)) & TW_MASK;
	tw_link(&tw->slot[level][slot], t);
	tw_bit_set(tw, level, slot);
}

void tw_init(struct timer_wheel *tw, uint64_t now_ms, void *ctx)
{
	memset(tw, 0, sizeof(*tw));
	tw->now = now_ms;
	tw->ctx = ctx;
}

void tw_timer_init(struct tw_timer *t, tw_fn fn)
{
	t->next = NULL;
	t->pprev = NULL;
	t->expires = 0;
	t->fn = fn;
}

void tw_cancel(struct timer_wheel *tw, struct tw_timer *t)
{
	struct tw_timer **pp = t->pprev;
	uintptr_t off;

	if (pp == NULL)
		return;
	tw_unlink(t);
	assert(tw->armed > 0);
	tw->armed--;
	/* Was t the last timer of a wheel slot? (pp may also be a timer's
	 * next field, the due list's head or a detached list's head.) */
	off = (uintptr_t)pp - (uintptr_t)&tw->slot[0][0];
	if (off < sizeof(tw->slot) && *pp == NULL) {
		size_t i = off / sizeof(*pp);

		tw_bit_clear(tw, (unsigned)(i / TW_SLOTS), (unsigned)(i % TW_SLOTS));
	}
}

void tw_arm(struct timer_wheel *tw, struct tw_timer *t, uint64_t expires_ms)
{
	assert(t->fn != NULL);
	tw_cancel(tw, t);
	tw->armed++;
	if (expires_ms <= tw->now) {
		t->expires = expires_ms;
		tw_link(&tw->due, t);
		return;
	}
	if (expires_ms - tw->now > TW_MAX_DELAY_MS)
		expires_ms = tw->now + TW_MAX_DELAY_MS;
	t->expires = expires_ms;
	tw_place(tw, t);
}

/*
 * Distance (0..255) from slot 'from', going up and wrapping, to the first
 * non-empty slot of a level's bitmap; -1 if the level is empty.
 */
static int tw_next_used(const uint64_t *words, unsigned from)
{
	unsigned shift = from % 64;

	for (unsigned k = 0; k <= TW_WORDS; k++) {
		unsigned w = (from / 64 + k) % TW_WORDS;
		uint64_t bits = words[w];

		if (k == 0)
			bits &= ~0ULL << shift;
		else if (k == TW_WORDS)
			bits &= shift != 0 ? (1ULL << shift) - 1 : 0;
		if (bits != 0) {
			unsigned idx = w * 64 + (unsigned)__builtin_ctzll(bits);

			return (int)((idx - from) & TW_MASK);
		}
	}
	return -1;
}

/* The first ms after tw->now at which a slot fires or cascades. */
static uint64_t tw_next_event(const struct timer_wheel *tw)
{
	uint64_t best = UINT64_MAX;
	int d = tw_next_used(tw->used[0], (unsigned)(tw->now + 1) & TW_MASK);

	if (d >= 0)
		best = tw->now + 1 + (uint64_t)d;
	for (unsigned level = 1; level < TW_LEVELS; level++) {
		unsigned bits = TW_SLOTS_BITS * level;
		uint64_t c = (tw->now >> bits) + 1;

		d = tw_next_used(tw->used[level], (unsigned)c & TW_MASK);
		if (d < 0)
			continue;
		c += (uint64_t)d;
		if (c <= (UINT64_MAX >> bits) && c << bits < best)
			best = c << bits;
	}
	return best;
}

/* At ms t (== tw->now): re-places every slot whose time has come. */
static void tw_cascade(struct timer_wheel *tw, uint64_t t)
{
	for (unsigned level = 1; level < TW_LEVELS; level++) {
		unsigned bits = TW_SLOTS_BITS * level;
		unsigned slot = (unsigned)(t >> bits) & TW_MASK;
		struct tw_timer *list;

		if ((t & ((1ULL << bits) - 1)) != 0)
			break;
		list = tw->slot[level][slot];
		if (list == NULL)
			continue;
		tw->slot[level][slot] = NULL;
		tw_bit_clear(tw, level, slot);
		while (list != NULL) {
			struct tw_timer *x = list;

			list = x->next;
			tw_place(tw, x);
		}
	}
}

/* Fires a detached list; callbacks may change it through the pprevs. */
static void tw_fire(struct timer_wheel *tw, struct tw_timer *head)
{
	if (head != NULL)
		head->pprev = &head;
	while (head != NULL) {
		struct tw_timer *t = head;

		tw_unlink(t);
		tw->armed--;
		t->fn(t, tw->ctx);
	}
}

static struct tw_timer *tw_merge(struct tw_timer *a, struct tw_timer *b)
{
	struct tw_timer *head = NULL, **tail = &head;

	while (a != NULL && b != NULL) {
		if (b->expires < a->expires) {
			*tail = b;
			b = b->next;
		} else {
			*tail = a;
			a = a->next;
		}
		tail = &(*tail)->next;
	}
	*tail = a != NULL ? a : b;
	return head;
}

/* Stable merge sort by expires, on next pointers only. */
static struct tw_timer *tw_sort(struct tw_timer *list)
{
	struct tw_timer *slow = list, *fast, *second;

	if (list == NULL || list->next == NULL)
		return list;
	for (fast = list->next; fast != NULL && fast->next != NULL;
	     fast = fast->next->next)
		slow = slow->next;
	second = slow->next;
	slow->next = NULL;
	return tw_merge(tw_sort(list), tw_sort(second));
}

static void tw_fire_due(struct timer_wheel *tw)
{
	struct tw_timer *list = tw_sort(tw->due);

	tw->due = NULL;
	for (struct tw_timer *x = list; x != NULL && x->next != NULL; x = x->next)
		x->next->pprev = &x->next;
	tw_fire(tw, list);
}

void tw_advance(struct timer_wheel *tw, uint64_t now_ms)
{
	assert(now_ms >= tw->now);
	if (tw->due != NULL)
		tw_fire_due(tw);
	while (tw->now < now_ms) {
		uint64_t t = tw_next_event(tw);
		unsigned slot = (unsigned)t & TW_MASK;
		struct tw_timer *list;

		if (t > now_ms)
			break;
		tw->now = t;
		tw->steps++;
		tw_cascade(tw, t);
		list = tw->slot[0][slot];
		if (list == NULL)
			continue;
		tw->slot[0][slot] = NULL;
		tw_bit_clear(tw, 0, slot);
		tw_fire(tw, list);
	}
	if (tw->now < now_ms)
		tw->now = now_ms;
}
