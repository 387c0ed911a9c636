/* SPDX-License-Identifier: MIT */
/*
 * Hand-offs between the agent's threads, told to ThreadSanitizer.
 *
 * ck_ring (Concurrency Kit) and liburcu 0.13 order their operations with
 * atomics written in inline assembly, which are correct but invisible to
 * ThreadSanitizer: without these marks, every buffer, command and peer entry
 * passed through them reads as a race.  HANDOFF_RELEASE(p) goes right before
 * p is published (enqueued, inserted), HANDOFF_ACQUIRE(p) right after it is
 * taken (dequeued, looked up).  Without TSan they are nothing.  The data
 * structures' own insides are in tsan.supp.
 */
#ifndef SHMGROUPD_HANDOFF_H
#define SHMGROUPD_HANDOFF_H

#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDOFF_RELEASE(p) __tsan_release((void *)(p))
#define HANDOFF_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))
#endif

#endif
