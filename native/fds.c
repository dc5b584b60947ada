/*
 * Plain fds: telling a VM's inherited fd's kind apart (TAP or unix socket, with or without virtio
 * headers), unix listening and connected sockets for QEMU's stream netdev, socket pairs for vmtool, and
 * closing an fd no port owns.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/filter.h>
#include <net/ethernet.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "addon.h"

/* fdKind(fd) -> 'tap' | 'tap-vnet' | 'unix-dgram' | 'unix-stream' | 'other'; throws EBADF for a closed fd. */
static napi_value fd_kind(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t fd;
  struct stat st;
  const char *kind = "other";
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  if (fstat(fd, &st) < 0) return throw_errno(env, errno, "fstat");
  if (S_ISSOCK(st.st_mode)) {
    int domain = 0, type = 0;
    socklen_t len = sizeof domain;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    len = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    if (domain == AF_UNIX && type == SOCK_DGRAM) kind = "unix-dgram";
    else if (domain == AF_UNIX && type == SOCK_STREAM) kind = "unix-stream";
  } else if (S_ISCHR(st.st_mode)) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_TAP))
      kind = ifr.ifr_flags & IFF_VNET_HDR ? "tap-vnet" : "tap";
  }
  CHECK(napi_create_string_utf8(env, kind, NAPI_AUTO_LENGTH, &out));
  return out;
}

/* unixListen(path) -> fd of a non-blocking listening SOCK_STREAM socket at path. */
static napi_value unix_listen(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], sun.sun_path, sizeof sun.sun_path) < 0)
    return NULL;
  sun.sun_family = AF_UNIX;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(fd, 4) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, sun.sun_path);
  }
  return make_int(env, fd);
}

/* unixAccept(listenFd) -> a connected fd, or -1 when none is waiting. */
static napi_value unix_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t lfd;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &lfd) < 0) return NULL;
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    if (errno == EAGAIN) return make_int(env, -1);
    return throw_errno(env, errno, "accept");
  }
  return make_int(env, fd);
}

/* socketpair(type) -> [fd, fd]: 'dgram' or 'stream' AF_UNIX pair, close-on-exec (a child gets it by dup). */
static napi_value socket_pair(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  char type[16];
  int sv[2];
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], type, sizeof type) < 0) return NULL;
  int st = strcmp(type, "stream") == 0 ? SOCK_STREAM : SOCK_DGRAM;
  if (socketpair(AF_UNIX, st | SOCK_CLOEXEC, 0, sv) < 0) return throw_errno(env, errno, "socketpair");
  CHECK(napi_create_array_with_length(env, 2, &out));
  for (uint32_t i = 0; i < 2; i++) {
    CHECK(napi_create_int32(env, sv[i], &v));
    CHECK(napi_set_element(env, out, i, v));
  }
  return out;
}

/* closeFd(fd): closes an fd that no port owns. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  if (close(fd) < 0) return throw_errno(env, errno, "close");
  return NULL;
}

napi_status fds_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"fdKind", NULL, fd_kind, NULL, NULL, NULL, napi_default, NULL},
      {"unixListen", NULL, unix_listen, NULL, NULL, NULL, napi_default, NULL},
      {"unixAccept", NULL, unix_accept, NULL, NULL, NULL, napi_default, NULL},
      {"socketpair", NULL, socket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
