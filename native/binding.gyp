{
  "targets": [
    {
      "target_name": "softnet",
      "sources": ["softnet.c", "control.c", "privileges.c", "rtnl.c", "tap.c", "packet.c", "fds.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"]
    }
  ]
}
