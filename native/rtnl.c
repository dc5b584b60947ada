/*
 * Watching the host's interfaces: an rtnetlink socket that wakes the engine when a link, an address or a
 * route changes, the state of one interface read in one call, and an interface's IPv6 neighbour table
 * (which, unlike IPv4's /proc/net/arp, only rtnetlink tells).
 *
 * The engine does not parse rtnetlink messages: an event only says "look again", and the engine reads the
 * state it cares about (ifState, /proc/net/route) afresh. So a lost event (ENOBUFS when the socket's queue
 * overflows during a storm of changes) costs nothing but is reported the same way: something changed.
 * Readiness comes through a WATCH port of softnet.c, the one polling mechanism of the addon.
 */
#include <linux/if.h>
#include <linux/neighbour.h>
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

/* Adds {addr, mac, state} for the neighbour entry `nd` (an RTM_NEWNEIGH of `len` bytes) to array `list`. */
static int push_neighbour(napi_env env, napi_value list, uint32_t *count, const struct ndmsg *nd, size_t len) {
  const uint8_t *dst = NULL, *lladdr = NULL;
  size_t left = len - NLMSG_ALIGN(sizeof *nd);
  for (const struct rtattr *a = (const struct rtattr *)((const char *)nd + NLMSG_ALIGN(sizeof *nd));
       RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == NDA_DST && RTA_PAYLOAD(a) == 16) dst = RTA_DATA(a);
    if (a->rta_type == NDA_LLADDR && RTA_PAYLOAD(a) == 6) lladdr = RTA_DATA(a);
  }
  /* An entry still resolving (or failed) has no link-layer address: nothing to send to. */
  if (!dst || !lladdr) return 0;
  napi_value entry, v, ab;
  void *data;
  if (napi_create_object(env, &entry) != napi_ok) return -1;
  if (napi_create_arraybuffer(env, 16, &data, &ab) != napi_ok) return -1;
  memcpy(data, dst, 16);
  if (napi_create_typedarray(env, napi_uint8_array, 16, ab, 0, &v) != napi_ok ||
      napi_set_named_property(env, entry, "addr", v) != napi_ok)
    return -1;
  if (napi_create_arraybuffer(env, 6, &data, &ab) != napi_ok) return -1;
  memcpy(data, lladdr, 6);
  if (napi_create_typedarray(env, napi_uint8_array, 6, ab, 0, &v) != napi_ok ||
      napi_set_named_property(env, entry, "mac", v) != napi_ok)
    return -1;
  if (napi_create_uint32(env, nd->ndm_state, &v) != napi_ok ||
      napi_set_named_property(env, entry, "state", v) != napi_ok)
    return -1;
  return napi_set_element(env, list, (*count)++, entry) == napi_ok ? 0 : -1;
}

/*
 * neighbours6(name) -> [{addr, mac, state}]: the IPv6 neighbour table of interface `name` (an RTM_GETNEIGH
 * dump): each entry's address (16 bytes), its MAC (6 bytes) and its NUD_* state bits. Entries without a
 * MAC (still resolving, failed) are left out. Throws ENODEV when there is no such interface.
 */
static napi_value neighbours6(napi_env env, napi_callback_info info) {
  napi_value argv[1], list;
  char name[IFNAMSIZ];
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sock < 0) return throw_errno(env, errno, "rtnetlink socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0) {
    int e = errno;
    close(sock);
    return throw_errno(env, e, name);
  }
  int ifindex = ifr.ifr_ifindex;
  struct {
    struct nlmsghdr h;
    struct ndmsg nd;
  } req;
  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof req.nd);
  req.h.nlmsg_type = RTM_GETNEIGH;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.nd.ndm_family = AF_INET6;
  req.nd.ndm_ifindex = ifindex;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(sock, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    int e = errno;
    close(sock);
    return throw_errno(env, e, "RTM_GETNEIGH");
  }
  if (napi_create_array(env, &list) != napi_ok) {
    close(sock);
    napi_throw_error(env, NULL, "napi_create_array failed");
    return NULL;
  }
  uint32_t count = 0;
  int err = 0, done = 0;
  char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
  while (!done && !err) {
    ssize_t n = recv(sock, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != 1) continue;
      if (h->nlmsg_type == NLMSG_DONE) {
        done = 1;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        err = -((const struct nlmsgerr *)NLMSG_DATA(h))->error;
        if (err == 0) done = 1;
        break;
      }
      if (h->nlmsg_type != RTM_NEWNEIGH || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ndmsg))) continue;
      const struct ndmsg *nd = NLMSG_DATA(h);
      /* A dump may hold every interface's entries (older kernels do not filter by ndm_ifindex). */
      if (nd->ndm_family != AF_INET6 || nd->ndm_ifindex != ifindex) continue;
      if (push_neighbour(env, list, &count, nd, h->nlmsg_len - NLMSG_LENGTH(0)) < 0) {
        close(sock);
        napi_throw_error(env, NULL, "napi call failed: neighbour entry");
        return NULL;
      }
    }
  }
  close(sock);
  if (err) return throw_errno(env, err, "RTM_GETNEIGH");
  return list;
}

napi_status rtnl_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"rtnlOpen", NULL, rtnl_open, NULL, NULL, NULL, napi_default, NULL},
      {"rtnlDrain", NULL, rtnl_drain, NULL, NULL, NULL, napi_default, NULL},
      {"ifState", NULL, if_state, NULL, NULL, NULL, napi_default, NULL},
      {"neighbours6", NULL, neighbours6, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
