// Linux packet I/O for Node through N-API (C, node_api.h only): TUN devices and batched UDP.
//
// Exports:
//   open(name) -> { fd, name }          TUNSETIFF IFF_TUN|IFF_NO_PI, fd non-blocking
//   getMtu(name) -> number              SIOCGIFMTU
//   setMtu(name, mtu)                   SIOCSIFMTU
//   write(fd, packets) -> written       TUN: one write(2) per packet
//   udpOpen(port, address16, v6only) -> { fd, port, family }
//                                       non-blocking UDP socket; dual-stack unless the
//                                       address is IPv4-mapped; 0 port picks a free one
//   udpSend(fd, packets, address16, port, scopeId) -> sent
//                                       sendmmsg(2), up to 64 datagrams per call
//   startReader(fd, slots, slotSize, lengths, onBatch, onGone[, addresses]) -> reader
//       `slots` is an ArrayBuffer of lengths.length slots of slotSize bytes. On each readable
//       event the reader drains up to lengths.length packets into the slots, writes their
//       sizes into `lengths` and calls onBatch(count) once. With `addresses` (a Uint8Array of
//       lengths.length * 24 bytes) the fd is a UDP socket read with recvmmsg(2), and each
//       sender is written at slot * 24: 16 address bytes (IPv4 as ::ffff:a.b.c.d), port
//       (2 bytes, big endian), 2 zero bytes, IPv6 scope id (4 bytes, little endian).
//       When the fd fails (a deleted TUN interface reads EBADFD or EIO, or poll reports an
//       error) the reader stops and calls onGone(code).
//   stopReader(reader)                  stops polling; safe to call twice
//   close(fd)
//
// A write or send the kernel will not take now (EAGAIN) drops the packet: queues belong to
// the kernel, and WireGuard's peers recover from loss as a network would.
#include "addon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void throw_last(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s", what,
           info && info->error_message ? info->error_message : "unknown N-API error");
  napi_throw_error(env, NULL, msg);
}

napi_value throw_errno(napi_env env, int err, const char *what, const char *name) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s %s: %s", what, name, strerror(err));
  const char *code = strerrorname_np(err);
  napi_throw_error(env, code ? code : "EUNKNOWN", msg);
  return NULL;
}

napi_value fd_close(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  if (close(fd) < 0) return throw_errno(env, errno, "close", "fd");
  return NULL;
}

#define EXPORT(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      EXPORT("open", tun_open),
      EXPORT("getMtu", tun_get_mtu),
      EXPORT("setMtu", tun_set_mtu),
      EXPORT("write", tun_write),
      EXPORT("udpOpen", udp_open),
      EXPORT("udpSend", udp_send),
      EXPORT("startReader", reader_start),
      EXPORT("stopReader", reader_stop_js),
      EXPORT("close", fd_close),
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  return exports;
}
