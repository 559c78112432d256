// A uv_poll reader that drains a non-blocking fd in batches into caller-provided slots and
// calls JS once per batch: read(2) for a TUN device, recvmmsg(2) for a UDP socket.
#include "addon.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// Bytes per sender record in the `addresses` array (layout in addon.c).
#define ADDRESS_RECORD 24
// Batches one wakeup reads at most before other handles get their turn: enough to empty a
// TUN's 128-packet queue (sidecar/backend/userspace.ts) and what arrives meanwhile, few
// enough that replies waiting on the sockets are not held up long behind it.
#define MAX_BATCHES_PER_WAKEUP 4

// A reader lives until both its poll handle is closed and its JS handle is collected.
typedef struct {
  uv_poll_t poll;
  napi_env env;
  int fd;
  uint8_t *slots;
  size_t slot_size;
  uint32_t *lengths;
  uint32_t count;
  // UDP only (NULL for TUN): sender records, and recvmmsg's per-slot headers.
  uint8_t *addresses;
  struct mmsghdr *msgs;
  struct iovec *iovs;
  struct sockaddr_in6 *names;
  napi_ref refs[5];  // slots, lengths, onBatch, onGone, addresses
  napi_async_context async_context;
  bool stopped;
  bool handle_closed;
  bool finalized;
} reader_t;

enum { REF_SLOTS, REF_LENGTHS, REF_ON_BATCH, REF_ON_GONE, REF_ADDRESSES };

static void reader_free_if_done(reader_t *r) {
  if (!r->handle_closed || !r->finalized) return;
  free(r->msgs);
  free(r->iovs);
  free(r->names);
  free(r);
}

static void on_poll_closed(uv_handle_t *handle) {
  reader_t *r = (reader_t *)handle->data;
  r->handle_closed = true;
  reader_free_if_done(r);
}

static void reader_stop(reader_t *r) {
  if (r->stopped) return;
  r->stopped = true;
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, on_poll_closed);
  for (size_t i = 0; i < sizeof r->refs / sizeof r->refs[0]; i++) {
    if (r->refs[i] != NULL) napi_delete_reference(r->env, r->refs[i]);
    r->refs[i] = NULL;
  }
  if (r->async_context != NULL) napi_async_destroy(r->env, r->async_context);
}

// Undoes a reader_start that failed after uv_poll_init: no JS handle will ever be finalized,
// so the reader is freed once its poll handle has closed.
static void reader_abandon(reader_t *r) {
  reader_stop(r);
  r->finalized = true;
}

static void make_callback(napi_env env, napi_async_context ctx, napi_value fn, napi_value arg) {
  napi_value recv;
  // napi_make_callback converts the receiver to an object: pass the global, not undefined.
  napi_get_global(env, &recv);
  if (napi_make_callback(env, ctx, recv, fn, 1, &arg, NULL) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

static void reader_gone(reader_t *r, int err) {
  napi_env env = r->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, code, resource_name;
  napi_get_reference_value(env, r->refs[REF_ON_GONE], &fn);
  const char *name = strerrorname_np(err);
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  // reader_stop drops the reader's references and async context: call through a fresh one.
  napi_async_context ctx;
  napi_create_string_utf8(env, "PacketReaderGone", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &ctx);
  reader_stop(r);
  make_callback(env, ctx, fn, code);
  napi_async_destroy(env, ctx);
  napi_close_handle_scope(env, scope);
}

// Reads packets from a TUN fd until the batch is full or the queue is empty.
static uint32_t drain_tun(reader_t *r, int *gone) {
  uint32_t n = 0;
  while (n < r->count) {
    ssize_t len = read(r->fd, r->slots + (size_t)n * r->slot_size, r->slot_size);
    if (len < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) *gone = errno;
      break;
    }
    r->lengths[n++] = (uint32_t)len;
  }
  return n;
}

// Receives one batch of datagrams with a single recvmmsg call.
static uint32_t drain_udp(reader_t *r, int *gone) {
  for (uint32_t i = 0; i < r->count; i++) r->msgs[i].msg_hdr.msg_namelen = sizeof r->names[i];
  int n;
  do n = recvmmsg(r->fd, r->msgs, r->count, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN) *gone = errno;
    return 0;
  }
  for (int i = 0; i < n; i++) {
    uint8_t *record = r->addresses + (size_t)i * ADDRESS_RECORD;
    const struct sockaddr_in6 *name = &r->names[i];
    memset(record, 0, ADDRESS_RECORD);
    if (name->sin6_family == AF_INET) {
      const struct sockaddr_in *v4 = (const struct sockaddr_in *)name;
      record[10] = 0xff;
      record[11] = 0xff;
      memcpy(record + 12, &v4->sin_addr, 4);
      memcpy(record + 16, &v4->sin_port, 2);
    } else {
      memcpy(record, &name->sin6_addr, 16);
      memcpy(record + 16, &name->sin6_port, 2);
      uint32_t scope = name->sin6_scope_id;
      for (int b = 0; b < 4; b++) record[20 + b] = (uint8_t)(scope >> (8 * b));
    }
    // A datagram longer than its slot is truncated and flagged; report it as empty (dropped).
    r->lengths[i] = (r->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 0 : r->msgs[i].msg_len;
  }
  return (uint32_t)n;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  reader_t *r = (reader_t *)handle->data;
  if (r->stopped) return;
  if (status < 0) {
    // libuv reports POLLERR as UV_EBADF: for a TUN fd, the kernel detached the interface.
    reader_gone(r, status == UV_EBADF ? EBADFD : -status);
    return;
  }
  if (!(events & UV_READABLE)) return;
  int gone = 0;
  // Drain until the queue is empty (a batch comes back short), up to MAX_BATCHES_PER_WAKEUP:
  // a TUN queue left for the next loop turn fills up behind the sockets' work and drops.
  for (int batch = 0; batch < MAX_BATCHES_PER_WAKEUP && !r->stopped && !gone; batch++) {
    uint32_t n = r->addresses != NULL ? drain_udp(r, &gone) : drain_tun(r, &gone);
    if (n > 0) {
      napi_env env = r->env;
      napi_handle_scope scope;
      napi_open_handle_scope(env, &scope);
      napi_value fn, count;
      napi_get_reference_value(env, r->refs[REF_ON_BATCH], &fn);
      napi_create_uint32(env, n, &count);
      make_callback(env, r->async_context, fn, count);
      napi_close_handle_scope(env, scope);
    }
    if (n < r->count) break;
  }
  if (gone && !r->stopped) reader_gone(r, gone);
}

static void reader_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  reader_t *r = (reader_t *)data;
  if (!r->stopped) {
    r->env = env;
    reader_stop(r);
  }
  r->finalized = true;
  reader_free_if_done(r);
}

napi_value reader_start(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL,
                          "startReader(fd, slots, slotSize, lengths, onBatch, onGone[, addresses])");
    return NULL;
  }
  int32_t fd;
  uint32_t slot_size;
  void *slots, *lengths, *addresses = NULL;
  size_t slots_bytes, count, address_bytes = 0;
  napi_typedarray_type type;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_arraybuffer_info(env, argv[1], &slots, &slots_bytes));
  CHECK(env, napi_get_value_uint32(env, argv[2], &slot_size));
  CHECK(env, napi_get_typedarray_info(env, argv[3], &type, &count, &lengths, NULL, NULL));
  if (type != napi_uint32_array || count == 0 || slot_size == 0 ||
      (size_t)slot_size * count > slots_bytes) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "slots must hold lengths.length (%zu) slots of %u bytes, got %zu bytes", count,
             slot_size, slots_bytes);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  bool udp = argc >= 7;
  if (udp) {
    napi_typedarray_type address_type;
    CHECK(env, napi_get_typedarray_info(env, argv[6], &address_type, &address_bytes, &addresses,
                                        NULL, NULL));
    if (address_type != napi_uint8_array || address_bytes < count * ADDRESS_RECORD) {
      char msg[160];
      snprintf(msg, sizeof msg, "addresses must be a Uint8Array of %zu bytes, got %zu",
               count * ADDRESS_RECORD, address_bytes);
      napi_throw_range_error(env, NULL, msg);
      return NULL;
    }
  }

  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  reader_t *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, ENOMEM, "startReader", "");
  r->env = env;
  r->fd = fd;
  r->slots = slots;
  r->slot_size = slot_size;
  r->lengths = lengths;
  r->count = (uint32_t)count;
  if (udp) {
    r->addresses = addresses;
    r->msgs = calloc(count, sizeof *r->msgs);
    r->iovs = calloc(count, sizeof *r->iovs);
    r->names = calloc(count, sizeof *r->names);
    if (r->msgs == NULL || r->iovs == NULL || r->names == NULL) {
      r->handle_closed = r->finalized = true;
      reader_free_if_done(r);
      return throw_errno(env, ENOMEM, "startReader", "");
    }
    for (size_t i = 0; i < count; i++) {
      r->iovs[i].iov_base = r->slots + i * slot_size;
      r->iovs[i].iov_len = slot_size;
      r->msgs[i].msg_hdr.msg_iov = &r->iovs[i];
      r->msgs[i].msg_hdr.msg_iovlen = 1;
      r->msgs[i].msg_hdr.msg_name = &r->names[i];
    }
  }
  napi_value resource_name, external;
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc < 0) {
    r->handle_closed = r->finalized = true;
    reader_free_if_done(r);
    return throw_errno(env, -rc, "uv_poll_init", "fd");
  }
  r->poll.data = r;
  for (int i = 0; i < 5; i++) {
    napi_value value = i == REF_SLOTS      ? argv[1]
                       : i == REF_LENGTHS  ? argv[3]
                       : i == REF_ON_BATCH ? argv[4]
                       : i == REF_ON_GONE  ? argv[5]
                       : udp               ? argv[6]
                                           : NULL;
    if (value != NULL) {
      CHECK_OR_RELEASE(env, napi_create_reference(env, value, 1, &r->refs[i]), reader_abandon(r));
    }
  }
  CHECK_OR_RELEASE(
      env, napi_create_string_utf8(env, "PacketReader", NAPI_AUTO_LENGTH, &resource_name),
      reader_abandon(r));
  CHECK_OR_RELEASE(env, napi_async_init(env, NULL, resource_name, &r->async_context),
                   reader_abandon(r));
  rc = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  if (rc < 0) {
    reader_abandon(r);
    return throw_errno(env, -rc, "uv_poll_start", "fd");
  }
  CHECK_OR_RELEASE(env, napi_create_external(env, r, reader_finalize, NULL, &external),
                   reader_abandon(r));
  return external;
}

napi_value reader_stop_js(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_external(env, argv[0], &data));
  reader_stop((reader_t *)data);
  return NULL;
}
