/*
 * The physical limit of a vhost-user sound daemon on this machine: per
 * period, the work a minimal C daemon must do and nothing else.
 *
 *   minimal-daemon PERIOD_MS SECONDS KICKS
 *
 * Two processes share a memfd (guest RAM: a 4-period buffer and a tiny ring)
 * and two eventfds (kick, call), as QEMU, the guest and a daemon do. The
 * daemon (child) waits in epoll on the kick eventfd and a timerfd armed at
 * the period; on each timer expiry it copies one period out of shared memory,
 * writes a used-ring element and the used index, and signals the call
 * eventfd. The guest (parent) waits on the call eventfd and makes the buffer
 * available again, kicking after each requeue when KICKS is 1, or only when
 * the daemon has not set its no-notify flag when KICKS is 0 (the daemon sets
 * it while the stream runs, as a daemon suppressing TX kicks does).
 *
 * The daemon prints one line of JSON: its CPU between its first and last
 * period (user, system, total from CLOCK_PROCESS_CPUTIME_ID), epoll wake-ups,
 * kicks seen, voluntary context switches and minor page faults.
 * bench/daemon-cpu.ts builds this with cc and runs it in the same run as the
 * Node daemon, so the two figures share the machine's load.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PERIODS_QUEUED 4
#define RING_BYTES 4096

struct ring {
  _Atomic uint32_t avail_idx; /* driver: buffers made available */
  _Atomic uint32_t used_idx;  /* device: buffers used */
  _Atomic uint32_t no_notify; /* device: do not kick */
  uint32_t pad;
  struct { uint32_t id, len; } used[PERIODS_QUEUED];
};

static double ts(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }
static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static void die(const char* what) {
  perror(what);
  exit(1);
}

static int daemon_main(uint8_t* mem, size_t period, long total, int kickfd, int callfd, int suppress,
                       long period_ns) {
  struct ring* r = (struct ring*)mem;
  uint8_t* bufs = mem + RING_BYTES;
  uint8_t* scratch = malloc(period);
  if (scratch == NULL) die("malloc");
  memset(scratch, 0, period);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (ep < 0 || tfd < 0) die("epoll/timerfd");
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, kickfd, &ev) < 0) die("epoll_ctl");
  ev.data.u32 = 1;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0) die("epoll_ctl");
  if (suppress) atomic_store(&r->no_notify, 1);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  struct itimerspec its = {
      .it_interval = {.tv_sec = period_ns / 1000000000L, .tv_nsec = period_ns % 1000000000L},
      .it_value = now,
  };
  its.it_value.tv_nsec += period_ns;
  its.it_value.tv_sec += its.it_value.tv_nsec / 1000000000L;
  its.it_value.tv_nsec %= 1000000000L;
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");

  uint32_t last_avail = 0, used = 0;
  long done = 0, wakeups = 0, kicks = 0, xruns = 0;
  struct timespec c0 = {0}, c1;
  struct rusage u0 = {0}, u1;
  while (done < total) {
    struct epoll_event evs[2];
    int n = epoll_wait(ep, evs, 2, -1);
    if (n < 0) continue;
    wakeups++;
    for (int i = 0; i < n; i++) {
      uint64_t v;
      if (evs[i].data.u32 == 0) {
        if (read(kickfd, &v, 8) == 8) kicks++;
        continue;
      }
      if (read(tfd, &v, 8) != 8) continue;
      for (uint64_t k = 0; k < v && done < total; k++) {
        uint32_t avail = atomic_load_explicit(&r->avail_idx, memory_order_acquire);
        if (avail == last_avail) {
          xruns++;
          continue;
        }
        uint32_t slot = last_avail % PERIODS_QUEUED;
        memcpy(scratch, bufs + (size_t)slot * period, period);
        last_avail++;
        r->used[used % PERIODS_QUEUED].id = slot;
        r->used[used % PERIODS_QUEUED].len = 8;
        used++;
        atomic_store_explicit(&r->used_idx, used, memory_order_release);
        uint64_t one = 1;
        if (write(callfd, &one, 8) != 8) die("write call");
        done++;
        if (done == 1) {
          clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
          getrusage(RUSAGE_SELF, &u0);
          wakeups = 0;
          kicks = 0;
        }
      }
    }
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  getrusage(RUSAGE_SELF, &u1);
  atomic_store(&r->no_notify, 0);
  /* Keep the copies from being optimised away. */
  volatile uint8_t sink = scratch[period / 2];
  (void)sink;
  printf(
      "{\"periods\":%ld,\"cpu\":%.9f,\"user\":%.6f,\"sys\":%.6f,\"wakeups\":%ld,\"kicks\":%ld,"
      "\"voluntarySwitches\":%ld,\"minorFaults\":%ld,\"xruns\":%ld}\n",
      done - 1, ts(c1) - ts(c0), tv(u1.ru_utime) - tv(u0.ru_utime), tv(u1.ru_stime) - tv(u0.ru_stime),
      wakeups, kicks, u1.ru_nvcsw - u0.ru_nvcsw, u1.ru_minflt - u0.ru_minflt, xruns);
  fflush(stdout);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PERIOD_MS SECONDS KICKS(0|1)\n", argv[0]);
    return 2;
  }
  double period_ms = atof(argv[1]);
  double seconds = atof(argv[2]);
  int always_kick = atoi(argv[3]) != 0;
  if (period_ms <= 0 || seconds <= 0) return 2;
  long period_ns = (long)(period_ms * 1e6);
  size_t period = (size_t)(48.0 * period_ms) * 4; /* 48 kHz S16 stereo */
  long total = (long)(seconds * 1000.0 / period_ms + 0.5);
  size_t size = RING_BYTES + period * PERIODS_QUEUED;
  int memfd = memfd_create("guest-ram", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, (off_t)size) < 0) die("memfd");
  uint8_t* mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mem == MAP_FAILED) die("mmap");
  for (size_t i = RING_BYTES; i < size; i += 2) mem[i] = (uint8_t)i;
  int kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int callfd = eventfd(0, EFD_CLOEXEC);
  if (kickfd < 0 || callfd < 0) die("eventfd");
  struct ring* r = (struct ring*)mem;
  atomic_store(&r->avail_idx, PERIODS_QUEUED);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    /* The daemon maps guest RAM itself, as a vhost-user back-end does. */
    uint8_t* dmem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (dmem == MAP_FAILED) die("mmap");
    munmap(mem, size);
    _exit(daemon_main(dmem, period, total + 1, kickfd, callfd, !always_kick, period_ns));
  }
  /* The guest: requeue each completed period, kick unless told not to. */
  uint32_t seen = 0;
  long requeued = 0;
  while (seen < (uint32_t)(total + 1)) {
    uint64_t v;
    if (read(callfd, &v, 8) != 8) die("read call");
    uint32_t used = atomic_load_explicit(&r->used_idx, memory_order_acquire);
    while (seen != used) {
      seen++;
      if (requeued < total) {
        atomic_fetch_add_explicit(&r->avail_idx, 1, memory_order_release);
        requeued++;
        if (always_kick || !atomic_load(&r->no_notify)) {
          uint64_t one = 1;
          if (write(kickfd, &one, 8) != 8) die("write kick");
        }
      }
    }
  }
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
