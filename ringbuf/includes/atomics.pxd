# The single-producer / single-consumer handoff of the packet ring (ring.pyx):
# the capture thread writes records and publishes the write pointer; the
# engine thread reads them and publishes the acknowledged pointer.  GCC's
# __atomic builtins (the C11 memory model) give each pointer the ordering it
# needs:
#
# - the producer fills a record (header and bytes), then stores write_index
#   with RELEASE; the consumer loads write_index with ACQUIRE before it reads
#   any record below it, so it sees the record complete;
# - the consumer finishes reading (and copying out) records, then stores
#   acknowledged_index with RELEASE; the producer loads it with ACQUIRE
#   before it reuses a slot or arena byte below it, so its writes cannot
#   overtake the consumer's reads.
#
# Counters written by one thread and read by the other for statistics use
# RELAXED loads and stores: no ordering, but never a torn value.
#
# The C text sits in this .pxd (a "header" Cython pastes into every module
# that cimports it) rather than in a .h file, so no include path is needed;
# the guard keeps it to one copy per module.
from libc.stdint cimport uint64_t, int64_t

cdef extern from *:
    """
    #ifndef RINGBUF_ATOMICS_H
    #define RINGBUF_ATOMICS_H
    #include <stdint.h>
    static inline uint64_t rb_load_acquire(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void rb_store_release(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint64_t rb_load_relaxed(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline void rb_store_relaxed(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    static inline int64_t rb_load_relaxed_i64(const int64_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline void rb_store_relaxed_i64(int64_t *p, int64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    /* A counter only its own thread increments: a plain read, an atomic store. */
    static inline void rb_count(uint64_t *p, uint64_t n) {
        __atomic_store_n(p, *p + n, __ATOMIC_RELAXED);
    }
    /* Flags between threads (stop requests, "the thread has ended"). */
    static inline int rb_flag_get(const int *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void rb_flag_set(int *p, int v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    #endif
    """
    uint64_t rb_load_acquire(const uint64_t* p) noexcept nogil
    void rb_store_release(uint64_t* p, uint64_t v) noexcept nogil
    uint64_t rb_load_relaxed(const uint64_t* p) noexcept nogil
    void rb_store_relaxed(uint64_t* p, uint64_t v) noexcept nogil
    int64_t rb_load_relaxed_i64(const int64_t* p) noexcept nogil
    void rb_store_relaxed_i64(int64_t* p, int64_t v) noexcept nogil
    void rb_count(uint64_t* p, uint64_t n) noexcept nogil
    int rb_flag_get(const int* p) noexcept nogil
    void rb_flag_set(int* p, int v) noexcept nogil
