/*
 * Watching the host's interfaces: an rtnetlink socket that wakes the engine when a link, an address or a
 * route changes, and the state of one interface read in one call.
 *
 * The engine does not parse rtnetlink messages: an event only says "look again", and the engine reads the
 * state it cares about (ifState, /proc/net/route) afresh. So a lost event (ENOBUFS when the socket's queue
 * overflows during a storm of changes) costs nothing but is reported the same way: something changed.
 * Readiness comes through a WATCH port of softnet.c, the one polling mechanism of the addon.
 */
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addon.h"

/* Room for the events of a burst of changes: more is an overflow, which rtnlDrain reports as a change. */
#define RTNL_RCVBUF (1 << 20)

/* rtnlOpen() -> fd of a non-blocking rtnetlink socket subscribed to link, IPv4/IPv6 address and route events. */
static napi_value rtnl_open(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return throw_errno(env, errno, "rtnetlink socket");
  int size = RTNL_RCVBUF;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "rtnetlink bind");
  }
  return make_int(env, fd);
}

/* rtnlDrain(fd) -> datagrams read until the socket was empty (an overflow counts as one), or -errno. */
static napi_value rtnl_drain(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  char buf[16384];
  int got = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n >= 0) {
      got++;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == ENOBUFS) {
      got++;
      continue;
    }
    if (errno == EAGAIN) break;
    return make_int(env, got > 0 ? got : -errno);
  }
  return make_int(env, got);
}

/*
 * ifState(name) -> {index, up, running, addr, mtu}: whether the interface is up (IFF_UP) and has carrier
 * (IFF_RUNNING), its primary IPv4 address (0 when it has none) and MTU; null when there is no such interface.
 */
static napi_value if_state(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  char name[IFNAMSIZ];
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return throw_errno(env, errno, "socket");
  struct ifreq r;
  memset(&r, 0, sizeof r);
  size_t n = strnlen(name, IFNAMSIZ - 1);
  memcpy(r.ifr_name, name, n);
  if (ioctl(sock, SIOCGIFINDEX, &r) < 0) {
    int e = errno;
    close(sock);
    if (e == ENODEV) {
      napi_get_null(env, &out);
      return out;
    }
    return throw_errno(env, e, name);
  }
  int index = r.ifr_ifindex;
  int flags = 0, mtu = 0;
  uint32_t addr = 0;
  if (ioctl(sock, SIOCGIFFLAGS, &r) == 0) flags = r.ifr_flags;
  if (ioctl(sock, SIOCGIFMTU, &r) == 0) mtu = r.ifr_mtu;
  if (ioctl(sock, SIOCGIFADDR, &r) == 0) addr = ntohl(((struct sockaddr_in *)&r.ifr_addr)->sin_addr.s_addr);
  close(sock);
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, index, &v));
  CHECK(napi_set_named_property(env, out, "index", v));
  CHECK(napi_get_boolean(env, (flags & IFF_UP) != 0, &v));
  CHECK(napi_set_named_property(env, out, "up", v));
  CHECK(napi_get_boolean(env, (flags & IFF_RUNNING) != 0, &v));
  CHECK(napi_set_named_property(env, out, "running", v));
  CHECK(napi_create_uint32(env, addr, &v));
  CHECK(napi_set_named_property(env, out, "addr", v));
  CHECK(napi_create_int32(env, mtu, &v));
  CHECK(napi_set_named_property(env, out, "mtu", v));
  return out;
}

napi_status rtnl_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"rtnlOpen", NULL, rtnl_open, NULL, NULL, NULL, napi_default, NULL},
      {"rtnlDrain", NULL, rtnl_drain, NULL, NULL, NULL, napi_default, NULL},
      {"ifState", NULL, if_state, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
