// TUN devices: open by name (TUNSETIFF IFF_TUN|IFF_NO_PI), MTU, batch write.
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int get_ifname(napi_env env, napi_value value, char name[IFNAMSIZ]) {
  size_t len = 0;
  char buf[64];
  if (napi_get_value_string_utf8(env, value, buf, sizeof buf, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "interface name must be a string");
    return -1;
  }
  if (len == 0 || len >= IFNAMSIZ) {
    char msg[128];
    snprintf(msg, sizeof msg, "interface name must be 1-%d bytes, got %zu", IFNAMSIZ - 1, len);
    napi_throw_range_error(env, NULL, msg);
    return -1;
  }
  memcpy(name, buf, len + 1);
  return 0;
}

napi_value tun_open(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (argc < 1 || get_ifname(env, argv[0], ifr.ifr_name) < 0) return NULL;

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", "/dev/net/tun");
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "TUNSETIFF", ifr.ifr_name);
  }

  napi_value result, jfd, jname;
  CHECK_OR_RELEASE(env, napi_create_object(env, &result), close(fd));
  CHECK_OR_RELEASE(env, napi_create_int32(env, fd, &jfd), close(fd));
  CHECK_OR_RELEASE(env, napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &jname),
                   close(fd));
  CHECK_OR_RELEASE(env, napi_set_named_property(env, result, "fd", jfd), close(fd));
  CHECK_OR_RELEASE(env, napi_set_named_property(env, result, "name", jname), close(fd));
  return result;
}

static int ifreq_ioctl(unsigned long request, struct ifreq *ifr) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return -1;
  int rc = ioctl(sock, request, ifr);
  int err = errno;
  close(sock);
  errno = err;
  return rc;
}

napi_value tun_get_mtu(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (argc < 1 || get_ifname(env, argv[0], ifr.ifr_name) < 0) return NULL;
  if (ifreq_ioctl(SIOCGIFMTU, &ifr) < 0) return throw_errno(env, errno, "SIOCGIFMTU", ifr.ifr_name);
  CHECK(env, napi_create_int32(env, ifr.ifr_mtu, &result));
  return result;
}

napi_value tun_set_mtu(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (argc < 2 || get_ifname(env, argv[0], ifr.ifr_name) < 0) return NULL;
  CHECK(env, napi_get_value_int32(env, argv[1], &ifr.ifr_mtu));
  if (ifreq_ioctl(SIOCSIFMTU, &ifr) < 0) return throw_errno(env, errno, "SIOCSIFMTU", ifr.ifr_name);
  return NULL;
}

napi_value tun_write(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd;
  uint32_t n;
  CHECK(env, napi_get_cb_info(env, cbinfo, &argc, argv, NULL, NULL));
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_array_length(env, argv[1], &n));
  uint32_t written = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value packet;
    napi_typedarray_type type;
    size_t len;
    void *data;
    CHECK(env, napi_get_element(env, argv[1], i, &packet));
    CHECK(env, napi_get_typedarray_info(env, packet, &type, &len, &data, NULL, NULL));
    if (type != napi_uint8_array) {
      napi_throw_type_error(env, NULL, "packets must be Uint8Arrays");
      return NULL;
    }
    ssize_t rc;
    do rc = write(fd, data, len);
    while (rc < 0 && errno == EINTR);
    if (rc >= 0) written++;
  }
  CHECK(env, napi_create_uint32(env, written, &result));
  return result;
}
