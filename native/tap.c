/*
 * Interfaces: TAP devices (made in this namespace or inside another, with virtio headers and offloads,
 * their carrier), and an interface's IPv4 address, flags and MAC. Set-up calls, never on the frame path;
 * they throw an Error whose code is the errno name.
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
 * TCP segmentation offload: the stack behind it sends and takes 64 KiB TCP aggregates and leaves
 * checksums to softnet's side, one read or write where there would be dozens.
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
        ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN) < 0)
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
      {"ifHwaddr", NULL, if_hwaddr, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
