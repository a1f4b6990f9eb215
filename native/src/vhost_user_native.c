/*
 * vhost_user_native: the few Linux system calls a vhost-user back-end needs and
 * Node cannot make by itself (nodejs/node#53391): Unix sockets that pass file
 * descriptors (SCM_RIGHTS), mmap of a memfd as an ArrayBuffer, eventfd, and
 * uv_poll on any fd in the current event loop.
 *
 * Plain N-API C (NAPI_VERSION 8), so no npm dependency is needed to build it.
 * The JavaScript side is src/vhost-user/native.ts, which documents the API.
 *
 * Conventions:
 *  - Every argument is checked. A wrong type throws a TypeError with code
 *    ERR_INVALID_ARG_TYPE; a number that is not an integer or out of range
 *    (fds are 0..INT_MAX) throws a RangeError with code ERR_OUT_OF_RANGE.
 *  - A failed system call throws an Error whose .code is the errno name
 *    ("EBADF"), .errno the negated errno (as Node's own errors) and .syscall
 *    the call that failed.
 *  - Every socket and fd this file creates is CLOEXEC; sockets and eventfds are
 *    non-blocking; recvmsg/sendmsg also pass MSG_DONTWAIT, so they never block
 *    the event loop even on a blocking fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

/* The kernel's SCM_MAX_FD: at most this many fds in one message. */
#define MAX_FDS 253
/* Largest mapping mmap() accepts (the contract's 2^48). */
#define MAX_MAP_SIZE (UINT64_C(1) << 48)
/* Largest integer a JS number holds exactly. */
#define MAX_SAFE_INTEGER 9007199254740991.0

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void throw_type(napi_env env, const char* name, const char* expected) {
  char msg[256];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be %s", name, expected);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

static void throw_range(napi_env env, const char* name, const char* expected) {
  char msg[256];
  snprintf(msg, sizeof msg, "The value of \"%s\" is out of range. It must be %s", name, expected);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
}

/* Throws Error("<CODE>: <description>, <syscall> [detail]") with .code, .errno, .syscall. */
static void throw_errno(napi_env env, int err, const char* syscall_name, const char* detail) {
  char name[64], desc[128], msg[512];
  uv_err_name_r(-err, name, sizeof name);
  if (strncmp(name, "Unknown", 7) == 0) snprintf(name, sizeof name, "E%d", err);
  uv_strerror_r(-err, desc, sizeof desc);
  if (detail != NULL && detail[0] != '\0') {
    snprintf(msg, sizeof msg, "%s: %s, %s %s", name, desc, syscall_name, detail);
  } else {
    snprintf(msg, sizeof msg, "%s: %s, %s", name, desc, syscall_name);
  }
  napi_value code_v, msg_v, error, errno_v, syscall_v;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok ||
      napi_create_error(env, code_v, msg_v, &error) != napi_ok) {
    napi_throw_error(env, name, msg);
    return;
  }
  if (napi_create_int32(env, -err, &errno_v) == napi_ok) {
    napi_set_named_property(env, error, "errno", errno_v);
  }
  if (napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &syscall_v) == napi_ok) {
    napi_set_named_property(env, error, "syscall", syscall_v);
  }
  napi_throw(env, error);
}

/* After a failed system call on a new fd: closes the fd and throws the call's
 * errno (saved first). Returns NULL, for the caller to return. */
static napi_value close_and_throw(napi_env env, int fd, const char* syscall_name, const char* detail) {
  int err = errno;
  close(fd);
  throw_errno(env, err, syscall_name, detail);
  return NULL;
}

/* After a failed napi_* call that did not already throw, throw something. */
static void throw_napi_failure(napi_env env, const char* what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info* info = NULL;
  char msg[256];
  napi_get_last_error_info(env, &info);
  snprintf(msg, sizeof msg, "%s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "N-API error");
  napi_throw_error(env, "ERR_NATIVE", msg);
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

/* Fills argv[0..n) (missing arguments are undefined). */
static bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value* argv, void** data) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, data) != napi_ok) {
    throw_napi_failure(env, "napi_get_cb_info");
    return false;
  }
  return true;
}

/* An integer number in [min, max]. */
static bool get_integer(napi_env env, napi_value v, const char* name, double min, double max, int64_t* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    throw_type(env, name, "of type number");
    return false;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d != trunc(d) || d < min || d > max) {
    char expected[128];
    snprintf(expected, sizeof expected, "an integer >= %.0f and <= %.0f. Received %.17g", min, max, d);
    throw_range(env, name, expected);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool get_fd(napi_env env, napi_value v, const char* name, int* out) {
  int64_t fd;
  if (!get_integer(env, v, name, 0, INT_MAX, &fd)) return false;
  *out = (int)fd;
  return true;
}

/*
 * A string without NUL bytes, copied into buf (cap bytes including the NUL).
 * A string that does not fit throws ENAMETOOLONG (errno style, as the system
 * call would).
 */
static bool get_string(napi_env env, napi_value v, const char* name, char* buf, size_t cap, const char* syscall_name) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    throw_type(env, name, "of type string");
    return false;
  }
  size_t len = 0;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len + 1 > cap) {
    char detail[96];
    snprintf(detail, sizeof detail, "(%s is %zu bytes, at most %zu fit)", name, len, cap - 1);
    throw_errno(env, ENAMETOOLONG, syscall_name, detail);
    return false;
  }
  size_t copied = 0;
  napi_get_value_string_utf8(env, v, buf, cap, &copied);
  if (strlen(buf) != copied) {
    char msg[128];
    snprintf(msg, sizeof msg, "The argument '%s' must be a string without null bytes", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return false;
  }
  return true;
}

/* Any TypedArray or DataView: the bytes it views. */
static bool get_bytes(napi_env env, napi_value v, const char* name, void** data, size_t* len) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  if (is) {
    napi_typedarray_type type;
    size_t length;
    if (napi_get_typedarray_info(env, v, &type, &length, data, NULL, NULL) != napi_ok) {
      throw_napi_failure(env, "napi_get_typedarray_info");
      return false;
    }
    size_t size = 1;
    switch (type) {
      case napi_int8_array:
      case napi_uint8_array:
      case napi_uint8_clamped_array:
        size = 1;
        break;
      case napi_int16_array:
      case napi_uint16_array:
        size = 2;
        break;
      case napi_int32_array:
      case napi_uint32_array:
      case napi_float32_array:
        size = 4;
        break;
      default:
        size = 8;
        break;
    }
    *len = length * size;
    return true;
  }
  napi_is_dataview(env, v, &is);
  if (is) {
    if (napi_get_dataview_info(env, v, len, data, NULL, NULL) != napi_ok) {
      throw_napi_failure(env, "napi_get_dataview_info");
      return false;
    }
    return true;
  }
  throw_type(env, name, "an instance of Uint8Array (any TypedArray or DataView)");
  return false;
}

static napi_value make_int(napi_env env, int64_t n) {
  napi_value v = NULL;
  napi_create_int64(env, n, &v);
  return v;
}

static napi_value undefined(napi_env env) {
  napi_value v = NULL;
  napi_get_undefined(env, &v);
  return v;
}

/* ------------------------------------------------------------------------ */
/* Per-environment state: the active polls (close() stops those on its fd). */
/* ------------------------------------------------------------------------ */

typedef struct poll_s poll_t;

typedef struct {
  poll_t* polls;      /* active polls, doubly linked */
  size_t closing;     /* uv_close calls whose callback has not run yet */
  bool tearing_down;  /* the environment is going away */
  napi_async_cleanup_hook_handle cleanup;
} addon_t;

struct poll_s {
  uv_poll_t handle;
  napi_env env;
  addon_t* addon;
  napi_ref callback;         /* strong while active */
  napi_async_context async;  /* for napi_make_callback */
  poll_t* prev;
  poll_t* next;
  int fd;
  bool active;   /* started, not yet stopped */
  bool closed;   /* uv_close finished (or the handle was never initialised) */
  bool js_gone;  /* the stop function was garbage-collected */
};

static addon_t* get_addon(napi_env env) {
  void* data = NULL;
  napi_get_instance_data(env, &data);
  return (addon_t*)data;
}

static void poll_maybe_free(poll_t* p) {
  if (p->closed && p->js_gone) free(p);
}

static void addon_maybe_finish(addon_t* addon) {
  if (addon->tearing_down && addon->closing == 0 && addon->polls == NULL) {
    napi_remove_async_cleanup_hook(addon->cleanup);
    free(addon);
  }
}

static void on_poll_close(uv_handle_t* handle) {
  poll_t* p = (poll_t*)handle->data;
  addon_t* addon = p->addon;
  p->closed = true;
  poll_maybe_free(p);
  addon->closing--;
  addon_maybe_finish(addon);
}

/* uv_close, counted: the environment's teardown waits for the callback. */
static void poll_close_handle(poll_t* p) {
  p->addon->closing++;
  uv_close((uv_handle_t*)&p->handle, on_poll_close);
}

static void poll_unlink(poll_t* p) {
  if (p->prev != NULL) p->prev->next = p->next;
  else p->addon->polls = p->next;
  if (p->next != NULL) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

/* Stops and closes the uv handle. with_js: also release the JS references. */
static void poll_stop(poll_t* p, bool with_js) {
  if (!p->active) return;
  p->active = false;
  poll_unlink(p);
  uv_poll_stop(&p->handle);
  poll_close_handle(p);
  if (with_js) {
    if (p->callback != NULL) napi_delete_reference(p->env, p->callback);
    if (p->async != NULL) napi_async_destroy(p->env, p->async);
  }
  p->callback = NULL;
  p->async = NULL;
}

static void stop_polls_on_fd(napi_env env, int fd) {
  addon_t* addon = get_addon(env);
  if (addon == NULL) return;
  poll_t* p = addon->polls;
  while (p != NULL) {
    poll_t* next = p->next;
    if (p->fd == fd) poll_stop(p, true);
    p = next;
  }
}

/*
 * Environment teardown (process exit, worker termination): close the uv
 * handles still open. An async cleanup hook, because Node must keep running
 * the loop until their close callbacks ran: a worker unloads this library
 * after its teardown, and a close callback run later would jump into unmapped
 * code. No JavaScript runs after this, so nothing reads the instance data again.
 */
static void addon_cleanup(napi_async_cleanup_hook_handle handle, void* arg) {
  addon_t* addon = (addon_t*)arg;
  addon->cleanup = handle;
  addon->tearing_down = true;
  while (addon->polls != NULL) poll_stop(addon->polls, false);
  addon_maybe_finish(addon);
}

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

typedef char socket_path_t[sizeof(((struct sockaddr_un*)0)->sun_path)];

static void set_sockaddr(struct sockaddr_un* addr, const char* path) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path, strlen(path) + 1);
}

/* A non-blocking, cloexec Unix stream socket; -1 when it cannot be made (thrown). */
static int unix_socket(napi_env env) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw_errno(env, errno, "socket", NULL);
  return fd;
}

/* Room for the largest SCM_RIGHTS control message, aligned for struct cmsghdr. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  struct cmsghdr align;
} fd_control_t;

/* A msghdr for the one buffer [data, data + len), with no control data yet. */
static void init_msg(struct msghdr* msg, struct iovec* iov, void* data, size_t len) {
  iov->iov_base = data;
  iov->iov_len = len;
  memset(msg, 0, sizeof *msg);
  msg->msg_iov = iov;
  msg->msg_iovlen = 1;
}

/* listen(path, backlog): a non-blocking, cloexec listening socket. */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  socket_path_t path;
  int64_t backlog;
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  if (!get_string(env, argv[0], "path", path, sizeof path, "bind")) return NULL;
  if (!get_integer(env, argv[1], "backlog", 0, INT_MAX, &backlog)) return NULL;

  int fd = unix_socket(env);
  if (fd < 0) return NULL;
  /* A stale socket file from an earlier run would make bind fail: remove it,
   * but only if it is a socket (never a regular file someone mistyped). */
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) != 0 && errno != ENOENT) {
    return close_and_throw(env, fd, "unlink", path);
  }
  struct sockaddr_un addr;
  set_sockaddr(&addr, path);
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0) return close_and_throw(env, fd, "bind", path);
  if (listen(fd, (int)backlog) != 0) return close_and_throw(env, fd, "listen", path);
  return make_int(env, fd);
}

/* accept(listenFd): the connection's fd (non-blocking, cloexec), or -1. */
static napi_value js_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "listenFd", &fd)) return NULL;
  for (;;) {
    int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn >= 0) return make_int(env, conn);
    /* ECONNABORTED: that peer gave up before we took it; try the next one. */
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_int(env, -1);
    throw_errno(env, errno, "accept4", NULL);
    return NULL;
  }
}

/* connect(path): a connected non-blocking, cloexec socket. */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  socket_path_t path;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  if (!get_string(env, argv[0], "path", path, sizeof path, "connect")) return NULL;
  int fd = unix_socket(env);
  if (fd < 0) return NULL;
  struct sockaddr_un addr;
  set_sockaddr(&addr, path);
  /* A Unix stream connect completes at once or fails (EAGAIN: backlog full). */
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) return close_and_throw(env, fd, "connect", path);
  return make_int(env, fd);
}

/* recvmsg(fd, buf, maxFds): { bytes, fds }; bytes 0 = peer closed, -1 = would block. */
static napi_value js_recvmsg(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  void* data = NULL;
  size_t len = 0;
  int64_t max_fds;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_bytes(env, argv[1], "buf", &data, &len)) return NULL;
  if (!get_integer(env, argv[2], "maxFds", 0, MAX_FDS, &max_fds)) return NULL;
  if (len == 0) {
    /* 0 bytes read would be indistinguishable from "peer closed". */
    throw_range(env, "buf.byteLength", ">= 1 (an empty buffer cannot tell data from end of stream)");
    return NULL;
  }

  fd_control_t control;
  struct iovec iov;
  struct msghdr msg;
  init_msg(&msg, &iov, data, len);
  if (max_fds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds);
  }

  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    throw_errno(env, errno, "recvmsg", NULL);
    return NULL;
  }

  int fds[MAX_FDS];
  size_t nfds = 0;
  bool too_many = false;
  if (n >= 0 && msg.msg_controllen > 0) {
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* p = CMSG_DATA(c);
      for (size_t i = 0; i < count; i++) {
        int received;
        memcpy(&received, p + i * sizeof(int), sizeof(int));
        /* CMSG_SPACE rounds up, so the kernel may fit more fds than asked for. */
        if (nfds < (size_t)max_fds) {
          fds[nfds++] = received;
        } else {
          close(received);
          too_many = true;
        }
      }
    }
  }
  if (n >= 0 && ((msg.msg_flags & MSG_CTRUNC) != 0 || too_many)) {
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
    char detail[160];
    snprintf(detail, sizeof detail,
             "(control data truncated: the peer sent more than maxFds=%d file descriptors; "
             "the ones received were closed)",
             (int)max_fds);
    throw_errno(env, EMSGSIZE, "recvmsg", detail);
    return NULL;
  }

  napi_value result, fd_array;
  if (napi_create_object(env, &result) != napi_ok || napi_create_array_with_length(env, nfds, &fd_array) != napi_ok) {
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
    throw_napi_failure(env, "recvmsg result");
    return NULL;
  }
  for (size_t i = 0; i < nfds; i++) napi_set_element(env, fd_array, (uint32_t)i, make_int(env, fds[i]));
  napi_set_named_property(env, result, "bytes", make_int(env, n < 0 ? -1 : (int64_t)n));
  napi_set_named_property(env, result, "fds", fd_array);
  return result;
}

/* sendmsg(fd, data, fds?): bytes sent (maybe fewer than data.length), -1 = would block. */
static napi_value js_sendmsg(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  void* data = NULL;
  size_t len = 0;
  int fds[MAX_FDS];
  uint32_t nfds = 0;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_bytes(env, argv[1], "data", &data, &len)) return NULL;

  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_undefined && t != napi_null) {
    bool is_array = false;
    napi_is_array(env, argv[2], &is_array);
    if (!is_array) {
      throw_type(env, "fds", "an array of file descriptors");
      return NULL;
    }
    napi_get_array_length(env, argv[2], &nfds);
    if (nfds > MAX_FDS) {
      throw_range(env, "fds.length", "<= 253 (SCM_MAX_FD)");
      return NULL;
    }
    for (uint32_t i = 0; i < nfds; i++) {
      napi_value element;
      char name[32];
      if (napi_get_element(env, argv[2], i, &element) != napi_ok) {
        throw_napi_failure(env, "napi_get_element");
        return NULL;
      }
      snprintf(name, sizeof name, "fds[%u]", i);
      if (!get_fd(env, element, name, &fds[i])) return NULL;
    }
  }
  if (len == 0 && nfds > 0) {
    throw_range(env, "data.byteLength", ">= 1 when fds are sent (a stream socket sends fds with data)");
    return NULL;
  }

  fd_control_t control;
  struct iovec iov;
  struct msghdr msg;
  init_msg(&msg, &iov, data, len);
  if (nfds > 0) {
    memset(control.buf, 0, sizeof control.buf);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_int(env, -1);
    throw_errno(env, errno, "sendmsg", NULL);
    return NULL;
  }
  return make_int(env, (int64_t)n);
}

/* close(fd): stops any poll on fd first (libuv must not watch a closed fd). */
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  stop_polls_on_fd(env, fd);
  /* On Linux the fd is released even when close reports EINTR: never retry. */
  if (close(fd) != 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return undefined(env);
}

/* ------------------------------------------------------------------------ */
/* poll                                                                     */
/* ------------------------------------------------------------------------ */

static void on_poll(uv_poll_t* handle, int status, int events) {
  poll_t* p = (poll_t*)handle->data;
  if (!p->active || p->callback == NULL) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, recv, argv[2], result;
  /* recv: napi_make_callback needs an object; the callback gets globalThis. */
  if (napi_get_reference_value(env, p->callback, &callback) == napi_ok && callback != NULL &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, status, &argv[0]) == napi_ok &&
      napi_create_int32(env, status < 0 ? 0 : events, &argv[1]) == napi_ok) {
    /* napi_make_callback: async context, then nextTicks and microtasks run as
     * after any Node I/O callback. A throw becomes an ordinary uncaught
     * exception ('uncaughtException', or the process prints it and exits). */
    napi_status s = napi_make_callback(env, p->async, recv, callback, 2, argv, &result);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (s == napi_pending_exception || pending) {
      napi_value exception;
      if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
    }
  }
  napi_close_handle_scope(env, scope);
}

static napi_value js_poll_stop(napi_env env, napi_callback_info info) {
  void* data = NULL;
  size_t argc = 0;
  if (napi_get_cb_info(env, info, &argc, NULL, NULL, &data) != napi_ok) return NULL;
  poll_stop((poll_t*)data, true);
  return undefined(env);
}

static void on_stop_function_gc(napi_env env, void* data, void* hint) {
  poll_t* p = (poll_t*)data;
  p->js_gone = true;
  poll_maybe_free(p);
}

/* poll(fd, events, cb): { stop() }. */
static napi_value js_poll(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t events;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_integer(env, argv[1], "events", 1, UV_READABLE | UV_WRITABLE, &events)) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_function) {
    throw_type(env, "cb", "of type function");
    return NULL;
  }
  addon_t* addon = get_addon(env);
  uv_loop_t* loop = NULL;
  if (addon == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    throw_napi_failure(env, "napi_get_uv_event_loop");
    return NULL;
  }

  /* Build the JS side first, so a failure there leaves no uv handle behind. */
  poll_t* p = (poll_t*)calloc(1, sizeof *p);
  if (p == NULL) {
    throw_errno(env, ENOMEM, "poll", NULL);
    return NULL;
  }
  p->env = env;
  p->addon = addon;
  p->fd = fd;
  p->closed = true; /* until uv_poll_init succeeds */
  napi_value handle, stop, resource, resource_name;
  if (napi_create_function(env, "stop", NAPI_AUTO_LENGTH, js_poll_stop, p, &stop) != napi_ok) {
    free(p);
    throw_napi_failure(env, "napi_create_function");
    return NULL;
  }
  if (napi_add_finalizer(env, stop, p, on_stop_function_gc, NULL, NULL) != napi_ok) {
    free(p);
    throw_napi_failure(env, "napi_add_finalizer");
    return NULL;
  }
  /* From here on the stop function's finalizer owns p (with the uv handle). */
  if (napi_create_object(env, &handle) != napi_ok || napi_set_named_property(env, handle, "stop", stop) != napi_ok ||
      napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "VhostUserNativePoll", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_async_init(env, resource, resource_name, &p->async) != napi_ok) {
    throw_napi_failure(env, "poll handle");
    return NULL;
  }
  if (napi_create_reference(env, argv[2], 1, &p->callback) != napi_ok) {
    napi_async_destroy(env, p->async);
    p->async = NULL;
    throw_napi_failure(env, "napi_create_reference");
    return NULL;
  }
  /* uv_poll_init fails with EEXIST when the loop already watches fd (another
   * active poll, or a Node handle), EPERM for a regular file, EBADF. It makes
   * fd non-blocking (for a received fd, the sender's file description too). */
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r == 0) {
    p->handle.data = p;
    p->closed = false;
    r = uv_poll_start(&p->handle, (int)events, on_poll);
    if (r != 0) poll_close_handle(p);
  }
  if (r != 0) {
    napi_delete_reference(env, p->callback);
    napi_async_destroy(env, p->async);
    p->callback = NULL;
    p->async = NULL;
    throw_errno(env, -r, "uv_poll_start", NULL);
    return NULL;
  }
  p->active = true;
  p->next = addon->polls;
  if (p->next != NULL) p->next->prev = p;
  addon->polls = p;
  return handle;
}

/* ------------------------------------------------------------------------ */
/* mmap                                                                     */
/* ------------------------------------------------------------------------ */

/* Identifies ArrayBuffers made by mmap() (so munmap() never trusts another's wrap). */
static const napi_type_tag MAPPING_TAG = {0x76697274696f736eULL, 0x64766875736d6d70ULL};

typedef struct {
  void* addr;
  size_t length;
  bool unmapped;
  bool store_gone; /* the backing store's finalizer ran */
  bool wrap_gone;  /* the ArrayBuffer object was collected */
} mapping_t;

static void mapping_maybe_free(mapping_t* m) {
  if (m->store_gone && m->wrap_gone) free(m);
}

/* The backing store died: the ArrayBuffer was collected, or detached (munmap,
 * a transfer, environment teardown). Unmap unless munmap() already did. */
static void on_backing_store_free(napi_env env, void* data, void* hint) {
  mapping_t* m = (mapping_t*)hint;
  if (!m->unmapped) {
    munmap(m->addr, m->length);
    m->unmapped = true;
  }
  m->store_gone = true;
  mapping_maybe_free(m);
}

static void on_wrap_gone(napi_env env, void* data, void* hint) {
  mapping_t* m = (mapping_t*)data;
  m->wrap_gone = true;
  mapping_maybe_free(m);
}

/* mmap(fd, size, offset) from JavaScript arguments: checked, MAP_SHARED,
 * read-write. NULL (with an exception pending) on failure. */
static void* map_from_args(napi_env env, napi_callback_info info, size_t* length) {
  napi_value argv[3];
  int fd;
  int64_t size, offset;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_integer(env, argv[1], "size", 1, (double)MAX_MAP_SIZE, &size)) return NULL;
  if (!get_integer(env, argv[2], "offset", 0, MAX_SAFE_INTEGER, &offset)) return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (page > 0 && offset % page != 0) {
    char expected[96];
    snprintf(expected, sizeof expected, "a multiple of the page size (%ld). Received %lld", page, (long long)offset);
    throw_range(env, "offset", expected);
    return NULL;
  }
  if ((uint64_t)size > (uint64_t)SIZE_MAX) {
    throw_range(env, "size", "addressable in this process");
    return NULL;
  }
  /* Touching a shared mapping past the end of its file raises SIGBUS, which
   * kills the process: refuse a region that the file does not cover. */
  struct stat st;
  if (fstat(fd, &st) != 0) {
    throw_errno(env, errno, "mmap", "(fstat)");
    return NULL;
  }
  if (S_ISREG(st.st_mode) && (uint64_t)offset + (uint64_t)size > (uint64_t)st.st_size) {
    char detail[160];
    snprintf(detail, sizeof detail, "(offset %lld + size %lld is past the end of the file, %lld bytes)",
             (long long)offset, (long long)size, (long long)st.st_size);
    throw_errno(env, EINVAL, "mmap", detail);
    return NULL;
  }
  void* addr = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
  if (addr == MAP_FAILED) {
    throw_errno(env, errno, "mmap", NULL);
    return NULL;
  }
  *length = (size_t)size;
  return addr;
}

/* mmap(fd, size, offset): MAP_SHARED, read-write, as an external ArrayBuffer. */
static napi_value js_mmap(napi_env env, napi_callback_info info) {
  size_t size;
  void* addr = map_from_args(env, info, &size);
  if (addr == NULL) return NULL;
  mapping_t* m = (mapping_t*)calloc(1, sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)size);
    throw_errno(env, ENOMEM, "mmap", NULL);
    return NULL;
  }
  m->addr = addr;
  m->length = (size_t)size;
  napi_value ab;
  napi_status s = napi_create_external_arraybuffer(env, addr, (size_t)size, on_backing_store_free, m, &ab);
  if (s != napi_ok) {
    munmap(addr, (size_t)size);
    free(m);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      /* Node throws for a length past buffer.constants.MAX_LENGTH: say so. */
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    char msg[256];
    snprintf(msg, sizeof msg,
             "mmap: cannot make an ArrayBuffer of %lld bytes (%s); map the region in smaller pieces "
             "(at most require('buffer').constants.MAX_LENGTH bytes each)",
             (long long)size, s == napi_no_external_buffers_allowed ? "external buffers are not allowed here" : "too large");
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return NULL;
  }
  /* The ArrayBuffer now owns the mapping (its finalizer unmaps). */
  if (napi_type_tag_object(env, ab, &MAPPING_TAG) != napi_ok ||
      napi_wrap(env, ab, m, on_wrap_gone, NULL, NULL) != napi_ok) {
    napi_detach_arraybuffer(env, ab);
    munmap(addr, (size_t)size);
    m->unmapped = true;
    m->wrap_gone = true; /* the backing store finalizer frees m */
    throw_napi_failure(env, "mmap: napi_wrap");
    return NULL;
  }
  return ab;
}

/* munmap(buf): unmap and detach (views become empty). Idempotent. */
static napi_value js_munmap(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  bool is = false, ours = false;
  napi_is_arraybuffer(env, argv[0], &is);
  if (is) napi_check_object_type_tag(env, argv[0], &MAPPING_TAG, &ours);
  if (!ours) {
    throw_type(env, "buf", "an ArrayBuffer returned by mmap()");
    return NULL;
  }
  void* data = NULL;
  if (napi_unwrap(env, argv[0], &data) != napi_ok || data == NULL) {
    throw_napi_failure(env, "munmap: napi_unwrap");
    return NULL;
  }
  mapping_t* m = (mapping_t*)data;
  if (m->unmapped) return undefined(env);
  bool detached = false;
  napi_is_detached_arraybuffer(env, argv[0], &detached);
  /* Detached by someone else (transferred to a worker): the memory lives on
   * there, and the backing store's finalizer unmaps it when that one dies. */
  if (detached) return undefined(env);
  if (napi_detach_arraybuffer(env, argv[0]) != napi_ok) {
    /* Unmapping under live views would let them fault: keep the mapping. */
    throw_napi_failure(env, "munmap: napi_detach_arraybuffer");
    return NULL;
  }
  if (!m->unmapped) {
    m->unmapped = true;
    if (munmap(m->addr, m->length) != 0) {
      throw_errno(env, errno, "munmap", NULL);
      return NULL;
    }
  }
  return undefined(env);
}

/* ------------------------------------------------------------------------ */
/* mmapRegion: one mapping, ArrayBuffers over windows of it made on demand   */
/* ------------------------------------------------------------------------ */

/* V8 counts every ArrayBuffer's length as external memory and answers a large
 * jump (the whole of guest RAM, mapped as one buffer) with a full garbage
 * collection. A region mapped once, with buffers only over the windows the
 * device touches, keeps that count to what is used. */

static const napi_type_tag REGION_TAG = {0x76697274696f736eULL, 0x64726567696f6e73ULL};

typedef struct region_s region_t;

typedef struct {
  region_t* region;
  napi_ref ref;    /* weak: the window's ArrayBuffer, to detach it at unmap */
  bool store_gone; /* its backing store was freed (finalizer ran) */
  bool ours_gone;  /* detached by munmapRegion: its memory is no longer reachable */
} window_t;

struct region_s {
  void* addr;
  size_t length;
  window_t** windows;
  size_t count, cap;
  bool unmap_requested;
  bool unmapped;
  bool handle_gone;
};

/* Unmaps once asked to and no window's memory can still be reached. */
static void region_settle(region_t* r) {
  if (r->unmap_requested && !r->unmapped) {
    for (size_t i = 0; i < r->count; i++) {
      window_t* w = r->windows[i];
      if (!w->store_gone && !w->ours_gone) return;
    }
    munmap(r->addr, r->length);
    r->unmapped = true;
  }
  if (!r->unmapped || !r->handle_gone) return;
  for (size_t i = 0; i < r->count; i++) {
    if (!r->windows[i]->store_gone) return; /* its finalizer still points at r */
  }
  for (size_t i = 0; i < r->count; i++) free(r->windows[i]);
  free(r->windows);
  free(r);
}

static void on_window_store_free(napi_env env, void* data, void* hint) {
  window_t* w = (window_t*)hint;
  w->store_gone = true;
  region_settle(w->region);
}

/* Detaches every window still in JavaScript's hands and drops the references. */
static void region_release_windows(napi_env env, region_t* r, bool detach) {
  for (size_t i = 0; i < r->count; i++) {
    window_t* w = r->windows[i];
    if (w->ref == NULL) continue;
    napi_value ab = NULL;
    if (detach && napi_get_reference_value(env, w->ref, &ab) == napi_ok && ab != NULL) {
      bool detached = true;
      napi_is_detached_arraybuffer(env, ab, &detached);
      /* Detached by someone else (moved to a worker): the memory lives on
       * there until its backing store is freed; wait for that. */
      if (!detached && napi_detach_arraybuffer(env, ab) == napi_ok) w->ours_gone = true;
    }
    napi_delete_reference(env, w->ref);
    w->ref = NULL;
  }
}

static void on_region_handle_gone(napi_env env, void* data, void* hint) {
  region_t* r = (region_t*)data;
  /* Nothing can make more windows; the ones alive keep the memory mapped. */
  region_release_windows(env, r, false);
  r->unmap_requested = true;
  r->handle_gone = true;
  region_settle(r);
}

static region_t* get_region(napi_env env, napi_value v) {
  bool ours = false;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_object) napi_check_object_type_tag(env, v, &REGION_TAG, &ours);
  if (!ours) {
    throw_type(env, "region", "a region returned by mmapRegion()");
    return NULL;
  }
  void* data = NULL;
  if (napi_unwrap(env, v, &data) != napi_ok || data == NULL) {
    throw_napi_failure(env, "napi_unwrap");
    return NULL;
  }
  return (region_t*)data;
}

/* mmapRegion(fd, size, offset): the mapping, as an opaque handle. */
static napi_value js_mmap_region(napi_env env, napi_callback_info info) {
  size_t size;
  void* addr = map_from_args(env, info, &size);
  if (addr == NULL) return NULL;
  region_t* r = (region_t*)calloc(1, sizeof *r);
  napi_value handle;
  if (r == NULL) {
    munmap(addr, size);
    throw_errno(env, ENOMEM, "mmap", NULL);
    return NULL;
  }
  r->addr = addr;
  r->length = size;
  if (napi_create_object(env, &handle) != napi_ok || napi_type_tag_object(env, handle, &REGION_TAG) != napi_ok ||
      napi_wrap(env, handle, r, on_region_handle_gone, NULL, NULL) != napi_ok) {
    munmap(addr, size);
    free(r);
    throw_napi_failure(env, "mmapRegion: napi_wrap");
    return NULL;
  }
  return handle;
}

/* mmapWindow(region, offset, length): an ArrayBuffer over those bytes of it. */
static napi_value js_mmap_window(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t offset, length;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  region_t* r = get_region(env, argv[0]);
  if (r == NULL) return NULL;
  if (r->unmap_requested) {
    throw_errno(env, EINVAL, "mmapWindow", "(the region is unmapped)");
    return NULL;
  }
  if (!get_integer(env, argv[1], "offset", 0, (double)r->length - 1, &offset)) return NULL;
  if (!get_integer(env, argv[2], "length", 1, (double)(r->length - (size_t)offset), &length)) return NULL;
  if (r->count == r->cap) {
    size_t cap = r->cap == 0 ? 16 : r->cap * 2;
    window_t** grown = (window_t**)realloc(r->windows, cap * sizeof *grown);
    if (grown == NULL) {
      throw_errno(env, ENOMEM, "mmapWindow", NULL);
      return NULL;
    }
    r->windows = grown;
    r->cap = cap;
  }
  window_t* w = (window_t*)calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, ENOMEM, "mmapWindow", NULL);
    return NULL;
  }
  w->region = r;
  napi_value ab;
  if (napi_create_external_arraybuffer(env, (char*)r->addr + offset, (size_t)length, on_window_store_free, w, &ab) !=
      napi_ok) {
    free(w);
    throw_napi_failure(env, "mmapWindow: napi_create_external_arraybuffer");
    return NULL;
  }
  r->windows[r->count++] = w;
  if (napi_create_reference(env, ab, 0, &w->ref) != napi_ok) {
    /* Without a reference it could not be detached at unmap: never hand it out. */
    w->ref = NULL;
    napi_detach_arraybuffer(env, ab);
    w->ours_gone = true;
    throw_napi_failure(env, "mmapWindow: napi_create_reference");
    return NULL;
  }
  return ab;
}

/* munmapRegion(region): detaches every window, then unmaps. Idempotent. */
static napi_value js_munmap_region(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  region_t* r = get_region(env, argv[0]);
  if (r == NULL) return NULL;
  if (r->unmap_requested) return undefined(env);
  region_release_windows(env, r, true);
  r->unmap_requested = true;
  region_settle(r);
  return undefined(env);
}

/* ------------------------------------------------------------------------ */
/* eventfd, memfd                                                           */
/* ------------------------------------------------------------------------ */

static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t initial;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  if (!get_integer(env, argv[0], "initial", 0, UINT_MAX, &initial)) return NULL;
  int fd = eventfd((unsigned int)initial, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    throw_errno(env, errno, "eventfd", NULL);
    return NULL;
  }
  return make_int(env, fd);
}

static napi_value js_eventfd_read(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  uint64_t value = 0;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_int(env, 0);
    throw_errno(env, errno, "read", NULL);
    return NULL;
  }
  if (n != (ssize_t)sizeof value) {
    throw_errno(env, EINVAL, "read", "(not an eventfd: short read)");
    return NULL;
  }
  napi_value v = NULL;
  napi_create_double(env, (double)value, &v);
  return v;
}

static napi_value js_eventfd_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  int64_t value;
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_integer(env, argv[1], "value", 0, MAX_SAFE_INTEGER, &value)) return NULL;
  uint64_t v = (uint64_t)value;
  ssize_t n;
  do {
    n = write(fd, &v, sizeof v);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    throw_errno(env, errno, "write", NULL);
    return NULL;
  }
  if (n >= 0 && n != (ssize_t)sizeof v) {
    throw_errno(env, EINVAL, "write", "(not an eventfd: short write)");
    return NULL;
  }
  return undefined(env);
}

static napi_value js_memfd(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[250]; /* the kernel's limit: 249 bytes plus the NUL */
  int64_t size;
  if (!get_args(env, info, 2, argv, NULL)) return NULL;
  if (!get_string(env, argv[0], "name", name, sizeof name, "memfd_create")) return NULL;
  if (!get_integer(env, argv[1], "size", 0, (double)MAX_MAP_SIZE, &size)) return NULL;
  int fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, errno, "memfd_create", NULL);
    return NULL;
  }
  if (ftruncate(fd, (off_t)size) != 0) return close_and_throw(env, fd, "ftruncate", NULL);
  return make_int(env, fd);
}

/* ------------------------------------------------------------------------ */
/* timerfd: one absolute CLOCK_MONOTONIC deadline, watched with poll()      */
/* ------------------------------------------------------------------------ */

static napi_value js_timerfd(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) {
    throw_errno(env, errno, "timerfd_create", NULL);
    return NULL;
  }
  return make_int(env, fd);
}

/* timerfdSet(fd, sec, nsec): expire once at CLOCK_MONOTONIC sec.nsec (0, 0
 * disarms). Setting it also clears an expiry not yet read, so a callback that
 * re-arms need not read the fd first. */
static napi_value js_timerfd_set(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t sec, nsec;
  if (!get_args(env, info, 3, argv, NULL)) return NULL;
  if (!get_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!get_integer(env, argv[1], "sec", 0, MAX_SAFE_INTEGER, &sec)) return NULL;
  if (!get_integer(env, argv[2], "nsec", 0, 999999999, &nsec)) return NULL;
  struct itimerspec its = {.it_interval = {0, 0}, .it_value = {(time_t)sec, (long)nsec}};
  if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
    throw_errno(env, errno, "timerfd_settime", NULL);
    return NULL;
  }
  return undefined(env);
}

/* monotonicNow(): CLOCK_MONOTONIC in milliseconds (a double: sub-microsecond
 * precision for years of uptime), to place timerfd deadlines. */
static napi_value js_monotonic_now(napi_env env, napi_callback_info info) {
  (void)info;
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  napi_value v = NULL;
  napi_create_double(env, (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6, &v);
  return v;
}

/* ------------------------------------------------------------------------ */

NAPI_MODULE_INIT() {
  addon_t* addon = (addon_t*)calloc(1, sizeof *addon);
  if (addon == NULL || napi_set_instance_data(env, addon, NULL, NULL) != napi_ok ||
      napi_add_async_cleanup_hook(env, addon_cleanup, addon, NULL) != napi_ok) {
    free(addon);
    napi_throw_error(env, "ERR_NATIVE", "vhost_user_native: cannot allocate its state");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"accept", NULL, js_accept, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvmsg", NULL, js_recvmsg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendmsg", NULL, js_sendmsg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"poll", NULL, js_poll, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mmap", NULL, js_mmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"munmap", NULL, js_munmap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mmapRegion", NULL, js_mmap_region, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mmapWindow", NULL, js_mmap_window, NULL, NULL, NULL, napi_enumerable, NULL},
      {"munmapRegion", NULL, js_munmap_region, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfd", NULL, js_eventfd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdRead", NULL, js_eventfd_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventfdWrite", NULL, js_eventfd_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memfd", NULL, js_memfd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"timerfd", NULL, js_timerfd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"timerfdSet", NULL, js_timerfd_set, NULL, NULL, NULL, napi_enumerable, NULL},
      {"monotonicNow", NULL, js_monotonic_now, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
    throw_napi_failure(env, "napi_define_properties");
    return NULL;
  }
  return exports;
}
