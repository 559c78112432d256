{
  "targets": [
    {
      "target_name": "tun",
      "sources": ["native/addon.c", "native/reader.c", "native/tun.c", "native/udp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
