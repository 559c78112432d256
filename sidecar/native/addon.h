// Shared pieces of the Linux packet I/O addon (see addon.c for the exported functions).
#ifndef SIDEROLINK_ADDON_H
#define SIDEROLINK_ADDON_H
#define _GNU_SOURCE
#include <node_api.h>

#define CHECK(env, call)                                                       \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      throw_last(env, #call);                                                  \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

// CHECK for a call made while holding a resource (an fd, a reader): after the Error is thrown,
// `release` gives the resource back, so that a failing N-API call does not leak it.
#define CHECK_OR_RELEASE(env, call, release)                                   \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      throw_last(env, #call);                                                  \
      release;                                                                 \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

// Throws an Error for the last failed N-API call, unless one is already pending.
void throw_last(napi_env env, const char *what);
// Throws an Error whose code is the errno name ("EPERM") and whose message is
// "<what> <name>: <strerror>". Returns NULL for `return throw_errno(...)`.
napi_value throw_errno(napi_env env, int err, const char *what, const char *name);

napi_value tun_open(napi_env env, napi_callback_info info);
napi_value tun_get_mtu(napi_env env, napi_callback_info info);
napi_value tun_set_mtu(napi_env env, napi_callback_info info);
napi_value tun_write(napi_env env, napi_callback_info info);
napi_value udp_open(napi_env env, napi_callback_info info);
napi_value udp_send(napi_env env, napi_callback_info info);
napi_value fd_close(napi_env env, napi_callback_info info);
napi_value reader_start(napi_env env, napi_callback_info info);
napi_value reader_stop_js(napi_env env, napi_callback_info info);

#endif
