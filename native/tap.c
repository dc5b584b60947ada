/*
 * Interfaces: TAP devices (made in this namespace or inside another, with virtio headers and offloads,
 * their carrier), and an interface's IPv4 and IPv6 addresses, flags and MAC. Set-up calls, never on the
 * frame path; they throw an Error whose code is the errno name.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
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

static int set_if_flags_up(int sock, const char *name) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return -errno;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) return -errno;
  return 0;
}

/*
 * Opens (or attaches to) TAP `name` in the current namespace; sets mac (6 bytes or NULL) and mtu (0 keeps).
 * With vnet, every read and write carries a 10-byte virtio_net_hdr and the device offers checksum and
 * TCP segmentation offload for IPv4 and IPv6: the stack behind it sends and takes 64 KiB TCP aggregates
 * and leaves checksums to softnet's side, one read or write where there would be dozens.
 */
static int tap_create(const char *name, const uint8_t *mac, int mtu, int up, int vnet, char *outname) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  set_ifname(&ifr, name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) goto fail;
  if (vnet) {
    int size = VNET_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0)
      goto fail;
  }
  memcpy(outname, ifr.ifr_name, IFNAMSIZ);
  outname[IFNAMSIZ - 1] = 0;
  if (mac) {
    struct ifreq hw;
    memset(&hw, 0, sizeof hw);
    set_ifname(&hw, ifr.ifr_name);
    hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(hw.ifr_hwaddr.sa_data, mac, 6);
    if (ioctl(fd, SIOCSIFHWADDR, &hw) < 0) goto fail;
  }
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) goto fail;
  if (mtu > 0) {
    struct ifreq m;
    memset(&m, 0, sizeof m);
    set_ifname(&m, ifr.ifr_name);
    m.ifr_mtu = mtu;
    if (ioctl(sock, SIOCSIFMTU, &m) < 0) {
      int e = errno;
      close(sock);
      errno = e;
      goto fail;
    }
  }
  int r = up ? set_if_flags_up(sock, ifr.ifr_name) : 0;
  close(sock);
  if (r < 0) {
    errno = -r;
    goto fail;
  }
  return fd;
fail: {
  int e = errno;
  close(fd);
  return -e;
}
}

/*
 * tapOpen(name, netnsPath|null, mac|null, mtu, up, vnet?) -> {fd, name}: the TAP is made inside netnsPath if
 * given; with vnet, with virtio headers and offloads (see tap_create).
 */
static napi_value tap_open(napi_env env, napi_callback_info info) {
  napi_value argv[6], out, v;
  char name[IFNAMSIZ], outname[IFNAMSIZ] = {0}, nspath[512] = {0};
  napi_valuetype t;
  uint8_t *mac = NULL;
  int32_t mtu;
  bool up, vnet = false;
  size_t argc = 6;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  if (get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  if (argc > 5) CHECK(napi_get_value_bool(env, argv[5], &vnet));
  CHECK(napi_typeof(env, argv[1], &t));
  if (t == napi_string && get_string(env, argv[1], nspath, sizeof nspath) < 0) return NULL;
  CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_null && t != napi_undefined) {
    napi_typedarray_type tt;
    size_t len;
    void *data;
    if (napi_get_typedarray_info(env, argv[2], &tt, &len, &data, NULL, NULL) != napi_ok ||
        tt != napi_uint8_array || len != 6) {
      napi_throw_type_error(env, NULL, "mac must be a 6-byte Uint8Array");
      return NULL;
    }
    mac = data;
  }
  if (get_i32(env, argv[3], &mtu) < 0) return NULL;
  CHECK(napi_get_value_bool(env, argv[4], &up));

  int home = -1, target = -1, fd;
  if (nspath[0]) {
    home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) return throw_errno(env, errno, "open /proc/thread-self/ns/net");
    target = open(nspath, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      int e = errno;
      close(home);
      return throw_errno(env, e, nspath);
    }
    if (setns(target, CLONE_NEWNET) < 0) {
      int e = errno;
      close(home);
      close(target);
      return throw_errno(env, e, "setns");
    }
  }
  fd = tap_create(name, mac, mtu, up, vnet, outname);
  if (home >= 0) {
    if (setns(home, CLONE_NEWNET) < 0) abort(); /* running on in the VM's namespace would be worse */
    close(home);
    close(target);
  }
  if (fd < 0) return throw_errno(env, -fd, "TAP");
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, fd, &v));
  CHECK(napi_set_named_property(env, out, "fd", v));
  CHECK(napi_create_string_utf8(env, outname, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "name", v));
  return out;
}

/* tapCarrier(fd, on): raises or drops the TAP's carrier, which the interface's user sees as a cable plugged in or not. */
static napi_value tap_carrier(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  bool on;
  if (get_args(env, info, 2, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  CHECK(napi_get_value_bool(env, argv[1], &on));
  unsigned int carrier = on ? 1 : 0;
  if (ioctl(fd, TUNSETCARRIER, &carrier) < 0) return throw_errno(env, errno, "TUNSETCARRIER");
  return NULL;
}

/* ifConfigure(name, addr (host-order u32), prefix, up): gives an interface its IPv4 address. */
static napi_value if_configure(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char name[IFNAMSIZ];
  uint32_t addr;
  int32_t prefix;
  bool up;
  if (get_args(env, info, 4, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  CHECK(napi_get_value_uint32(env, argv[1], &addr));
  if (get_i32(env, argv[2], &prefix) < 0) return NULL;
  CHECK(napi_get_value_bool(env, argv[3], &up));
  if (prefix < 0 || prefix > 32) {
    napi_throw_range_error(env, NULL, "bad prefix");
    return NULL;
  }
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return throw_errno(env, errno, "socket");
  struct ifreq ifr;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(addr);
  int r = ioctl(sock, SIOCSIFADDR, &ifr);
  if (r == 0) {
    sin->sin_addr.s_addr = htonl(prefix == 0 ? 0 : 0xffffffffu << (32 - prefix));
    r = ioctl(sock, SIOCSIFNETMASK, &ifr);
  }
  if (r == 0 && up) {
    r = set_if_flags_up(sock, name);
    if (r < 0) errno = -r;
    r = r < 0 ? -1 : 0;
  }
  int e = errno;
  close(sock);
  if (r < 0) return throw_errno(env, e, name);
  return NULL;
}

/* Appends attribute `type` with `len` bytes of `data` to netlink message `h` (room for it is the caller's). */
static void nl_put(struct nlmsghdr *h, unsigned short type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/*
 * ifAddr6(name, addr (16-byte Uint8Array), prefix): adds an IPv6 address to an interface of this namespace
 * over rtnetlink, with IFA_F_NODAD: it is usable at once, never tentative, because nothing else on the
 * link may hold it (the link is softnet's own). An address already there is left as it is (EEXIST is
 * success). The kernel removes an interface's IPv6 addresses when it goes down (unless keep_addr_on_down):
 * add it again after bringing the interface up.
 */
static napi_value if_addr6(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[IFNAMSIZ];
  int32_t prefix;
  napi_typedarray_type tt;
  size_t len;
  void *addr;
  if (get_args(env, info, 3, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  if (napi_get_typedarray_info(env, argv[1], &tt, &len, &addr, NULL, NULL) != napi_ok || tt != napi_uint8_array ||
      len != 16) {
    napi_throw_type_error(env, NULL, "addr must be a 16-byte Uint8Array");
    return NULL;
  }
  if (get_i32(env, argv[2], &prefix) < 0) return NULL;
  if (prefix < 0 || prefix > 128) {
    napi_throw_range_error(env, NULL, "bad prefix");
    return NULL;
  }
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
  union {
    struct nlmsghdr h;
    char buf[256];
  } req;
  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  req.h.nlmsg_type = RTM_NEWADDR;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  req.h.nlmsg_seq = 1;
  struct ifaddrmsg *ifa = NLMSG_DATA(&req.h);
  ifa->ifa_family = AF_INET6;
  ifa->ifa_prefixlen = (unsigned char)prefix;
  ifa->ifa_flags = IFA_F_NODAD;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = (unsigned)ifindex;
  uint32_t flags = IFA_F_NODAD;
  nl_put(&req.h, IFA_LOCAL, addr, 16);
  nl_put(&req.h, IFA_ADDRESS, addr, 16);
  nl_put(&req.h, IFA_FLAGS, &flags, sizeof flags);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  int err = 0;
  if (sendto(sock, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) err = errno;
  while (!err) {
    union {
      struct nlmsghdr h;
      char buf[4096];
    } ack;
    ssize_t n = recv(sock, &ack, sizeof ack, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    struct nlmsghdr *h = &ack.h;
    if (!NLMSG_OK(h, (size_t)n) || h->nlmsg_seq != 1) continue;
    if (h->nlmsg_type == NLMSG_ERROR) {
      const struct nlmsgerr *e = NLMSG_DATA(h);
      err = -e->error;
      break;
    }
  }
  close(sock);
  if (err == EEXIST) err = 0;
  if (err) return throw_errno(env, err, name);
  return NULL;
}

/* ifHwaddr(name) -> 6-byte Uint8Array: an interface's MAC address. */
static napi_value if_hwaddr(napi_env env, napi_callback_info info) {
  napi_value argv[1], ab, out;
  char name[IFNAMSIZ];
  void *data;
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return throw_errno(env, errno, "socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  int r = ioctl(sock, SIOCGIFHWADDR, &ifr);
  int e = errno;
  close(sock);
  if (r < 0) return throw_errno(env, e, name);
  CHECK(napi_create_arraybuffer(env, 6, &data, &ab));
  memcpy(data, ifr.ifr_hwaddr.sa_data, 6);
  CHECK(napi_create_typedarray(env, napi_uint8_array, 6, ab, 0, &out));
  return out;
}

napi_status tap_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_default, NULL},
      {"tapCarrier", NULL, tap_carrier, NULL, NULL, NULL, napi_default, NULL},
      {"ifConfigure", NULL, if_configure, NULL, NULL, NULL, napi_default, NULL},
      {"ifAddr6", NULL, if_addr6, NULL, NULL, NULL, napi_default, NULL},
      {"ifHwaddr", NULL, if_hwaddr, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
