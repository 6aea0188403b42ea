/* base/clock — monotonic and wall clocks, RFC 3339 timestamps. Thread-safe. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Monotonic nanoseconds (CLOCK_MONOTONIC); only differences mean anything. */
uint64_t clock_mono_ns(void);
/* Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t clock_wall_ns(void);
/*
 * Writes wall time ns as RFC 3339 UTC with milliseconds
 * ("2026-01-14T08:44:08.123Z") into out (at least 25 bytes). Returns out.
 */
char *clock_rfc3339_ms(uint64_t wall_ns, char *out, size_t out_size);
