// Batched UDP for WireGuard datagrams: a non-blocking socket (dual-stack where the host has
// IPv6) and sendmmsg(2); receiving goes through the poll reader with recvmmsg(2).
#include "addon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Socket buffers as wireguard-go sizes them: a few milliseconds of line rate, so a busy
// event-loop turn does not cost datagrams. FORCE (root) goes past net.core.[rw]mem_max.
#define SOCKET_BUFFER_BYTES (7 << 20)
#define SEND_BATCH 64

static bool is_mapped_v4(const uint8_t *a) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, prefix, 12) == 0;
}

static socklen_t fill_sockaddr(struct sockaddr_storage *ss, int family, const uint8_t *address,
                               uint16_t port, uint32_t scope) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    memcpy(&v4->sin_addr, address + 12, 4);
    return sizeof *v4;
  }
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons(port);
  v6->sin6_scope_id = scope;
  memcpy(&v6->sin6_addr, address, 16);
  return sizeof *v6;
}

static void set_buffer(int fd, int force, int plain) {
  int size = SOCKET_BUFFER_BYTES;
  if (setsockopt(fd, SOL_SOCKET, force, &size, sizeof size) < 0) {
    setsockopt(fd, SOL_SOCKET, plain, &size, sizeof size);
  }
}

static int open_bound(int family, const uint8_t *address, uint16_t port, int *err) {
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  if (family == AF_INET6) {
    int v6only = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF);
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  struct sockaddr_storage ss;
  socklen_t len = fill_sockaddr(&ss, family, address, port, 0);
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    *err = errno;
    close(fd);
    return -1;
  }
  return fd;
}

// udpOpen(port, address16) -> { fd, port, family }
napi_value udp_open(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t port;
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_uint32(env, argv[0], &port));
  CHECK(env, napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  if (type != napi_uint8_array || length != 16 || port > 65535) {
    napi_throw_range_error(env, NULL, "udpOpen(port 0-65535, 16-byte address)");
    return NULL;
  }
  const uint8_t *address = data;
  static const uint8_t any[16] = {0};
  int err = 0, family = is_mapped_v4(address) ? AF_INET : AF_INET6;
  int fd = open_bound(family, address, (uint16_t)port, &err);
  if (fd < 0 && family == AF_INET6 && err == EAFNOSUPPORT && memcmp(address, any, 16) == 0) {
    // No IPv6 on this host: serve IPv4 alone.
    static const uint8_t any4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    family = AF_INET;
    fd = open_bound(family, any4, (uint16_t)port, &err);
  }
  if (fd < 0) {
    char name[64], text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, address, text, sizeof text);
    snprintf(name, sizeof name, "[%s]:%u", text, port);
    return throw_errno(env, err, "bind UDP", name);
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  uint16_t bound = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                           : ((struct sockaddr_in6 *)&ss)->sin6_port);
  napi_value result, jfd, jport, jfamily;
  CHECK_OR_RELEASE(env, napi_create_object(env, &result), close(fd));
  CHECK_OR_RELEASE(env, napi_create_int32(env, fd, &jfd), close(fd));
  CHECK_OR_RELEASE(env, napi_create_uint32(env, bound, &jport), close(fd));
  CHECK_OR_RELEASE(env, napi_create_uint32(env, family == AF_INET ? 4 : 6, &jfamily), close(fd));
  CHECK_OR_RELEASE(env, napi_set_named_property(env, result, "fd", jfd), close(fd));
  CHECK_OR_RELEASE(env, napi_set_named_property(env, result, "port", jport), close(fd));
  CHECK_OR_RELEASE(env, napi_set_named_property(env, result, "family", jfamily), close(fd));
  return result;
}

// udpSend(fd, family, packets, address16, port, scopeId) -> datagrams sent
napi_value udp_send(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 6;
  napi_value argv[6], result;
  int32_t fd;
  uint32_t family, n, port, scope;
  napi_typedarray_type type;
  size_t length;
  void *address;
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_value_uint32(env, argv[1], &family));
  CHECK(env, napi_get_array_length(env, argv[2], &n));
  CHECK(env, napi_get_typedarray_info(env, argv[3], &type, &length, &address, NULL, NULL));
  CHECK(env, napi_get_value_uint32(env, argv[4], &port));
  CHECK(env, napi_get_value_uint32(env, argv[5], &scope));
  if (type != napi_uint8_array || length != 16) {
    napi_throw_range_error(env, NULL, "address must be 16 bytes");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t name_len = fill_sockaddr(&ss, family == 4 ? AF_INET : AF_INET6, address,
                                     (uint16_t)port, scope);
  struct mmsghdr msgs[SEND_BATCH];
  struct iovec iovs[SEND_BATCH];
  uint32_t sent = 0;
  for (uint32_t base = 0; base < n;) {
    uint32_t batch = n - base < SEND_BATCH ? n - base : SEND_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * batch);
    for (uint32_t i = 0; i < batch; i++) {
      napi_value packet;
      napi_typedarray_type ptype;
      CHECK(env, napi_get_element(env, argv[2], base + i, &packet));
      CHECK(env, napi_get_typedarray_info(env, packet, &ptype, &iovs[i].iov_len, &iovs[i].iov_base,
                                          NULL, NULL));
      if (ptype != napi_uint8_array) {
        napi_throw_type_error(env, NULL, "datagrams must be Uint8Arrays");
        return NULL;
      }
      msgs[i].msg_hdr.msg_name = &ss;
      msgs[i].msg_hdr.msg_namelen = name_len;
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint32_t done = 0;
    while (done < batch) {
      int rc = sendmmsg(fd, msgs + done, batch - done, MSG_DONTWAIT);
      if (rc > 0) {
        done += (uint32_t)rc;
        sent += (uint32_t)rc;
      } else if (rc < 0 && errno == EINTR) {
        continue;
      } else if (rc < 0 && errno == EAGAIN) {
        break;
      } else {
        done++;  // The first datagram failed (unreachable, filtered): drop it, go on.
      }
    }
    if (done < batch) break;  // Socket buffer full: drop the rest of this call.
    base += batch;
  }
  CHECK(env, napi_create_uint32(env, sent, &result));
  return result;
}
