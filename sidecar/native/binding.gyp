{
  "targets": [
    {
      "target_name": "tun",
      "sources": ["addon.c", "reader.c", "tun.c", "udp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
