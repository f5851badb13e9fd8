/*
 * stack_counters.c: names and lookup for the per-worker stack counters.
 */
#include "tcpstack/stack_counters.h"

#include <string.h>

static const char *const counter_names[STACK_CTR_COUNT] = {
#define STACK_COUNTER_NAME(layer, name) #layer "." #name,
	STACK_COUNTERS(STACK_COUNTER_NAME)
#undef STACK_COUNTER_NAME
};

const char *stack_counter_name(unsigned i)
{
	return i < STACK_CTR_COUNT ? counter_names[i] : NULL;
}

uint64_t stack_counter_get(const struct stack_counters *c, unsigned i)
{
	/* the struct is STACK_CTR_COUNT uint64_t in list order */
	const uint64_t *v = (const uint64_t *)c;

	return i < STACK_CTR_COUNT ? v[i] : 0;
}

int stack_counter_index(const char *name)
{
	for (unsigned i = 0; i < STACK_CTR_COUNT; i++)
		if (strcmp(counter_names[i], name) == 0)
			return (int)i;
	return -1;
}

_Static_assert(sizeof(struct stack_counters) ==
		       STACK_CTR_COUNT * sizeof(uint64_t),
	       "stack_counters must be a flat array of uint64_t");
