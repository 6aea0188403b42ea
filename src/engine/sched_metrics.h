/*
 * engine/sched_metrics — internal: the per-model metric series of a scheduler
 * (the families are declared in sched.h). Not for use outside engine/.
 */
#pragma once

#include "engine/sched.h"

enum { SCHED_REASON_STOP = 0, SCHED_REASON_LENGTH, SCHED_REASON_ABORT, SCHED_REASON_ERROR,
       SCHED_REASONS };

typedef struct sched_series {
    obs_series *ttft, *tpot, *e2e;
    obs_series *prompt, *gen, *hits, *queries, *preempt, *steps;
    obs_series *finished[SCHED_REASONS];
    obs_series *running, *waiting, *usage, *frag;
} sched_series;

/* Gets (creating) the series of model_name in m's families; all NULL when m is
 * NULL (updates on NULL series are no-ops). Scheduler start-up. */
void sched_series_init(sched_series *ss, sched_metrics *m, const char *model_name);
