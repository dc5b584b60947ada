/*
 * Sockets on the host's interfaces: the NAT uplink's raw IPv4 and IPv6 sockets (whole packets out, each to
 * the destination in its header), its capture and send packet sockets, and a bridged LAN's two packet
 * sockets with the unicast MACs of its VMs. Set-up calls only: the frames go through the ports of softnet.c.
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

/* rawSocket() -> fd of a non-blocking IPPROTO_RAW socket (whole IPv4 packets out, nothing in). */
static napi_value raw_socket(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW);
  if (fd < 0) return throw_errno(env, errno, "raw socket");
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  return make_int(env, fd);
}

/*
 * rawSocket6() -> fd of a non-blocking AF_INET6 IPPROTO_RAW socket: whole IPv6 packets out, nothing in.
 * Linux sets IPV6_HDRINCL for IPPROTO_RAW, and sends such a packet as it is (payload length, hop limit and
 * flow label untouched; no extension header added). It never fragments one: a packet larger than the
 * device's MTU fails with EMSGSIZE at once, and one larger than the route's (or a learned path's) MTU
 * fails with EMSGSIZE too, IPV6_PMTUDISC_DO saying so rather than leaving it to the default; in the
 * second case the kernel also sends a Packet Too Big to the packet's source, which is the host's own
 * address, where nothing listens on softnet's ports.
 */
static napi_value raw_socket6(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW);
  if (fd < 0) return throw_errno(env, errno, "raw IPv6 socket");
  int size = 4 << 20, pmtu = IPV6_PMTUDISC_DO;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "IPV6_MTU_DISCOVER");
  }
  return make_int(env, fd);
}

/* A classic BPF program argument (a Uint8Array of sock_filter entries) as a sock_fprog; -1 and throws if not. */
int get_filter(napi_env env, napi_value v, struct sock_fprog *prog) {
  napi_typedarray_type tt;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_uint8_array ||
      len == 0 || len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
    napi_throw_type_error(env, NULL, "filter must be a Uint8Array of at most 4096 sock_filter entries");
    return -1;
  }
  prog->len = (unsigned short)(len / sizeof(struct sock_filter));
  prog->filter = data;
  return 0;
}

/*
 * packetSocket(ifname, filter, family = 4) -> fd of a SOCK_RAW packet socket on ifname that receives the
 * IPv4 (family 4) or IPv6 (family 6) frames accepted by the classic BPF program `filter` (sock_filter
 * entries, host order), never the host's own outgoing ones. Each frame comes after a 10-byte
 * virtio_net_hdr (PACKET_VNET_HDR): it says when the transport checksum is not filled in yet (a packet
 * from a veth peer on this machine) and when the packet is a GRO aggregate.
 */
static napi_value packet_socket(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[IFNAMSIZ];
  struct sock_fprog prog;
  int32_t family = 4;
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  if (get_string(env, argv[0], name, sizeof name) < 0 || get_filter(env, argv[1], &prog) < 0) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc > 2) CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_undefined && get_i32(env, argv[2], &family) < 0) return NULL;
  if (family != 4 && family != 6) {
    napi_throw_range_error(env, NULL, "family must be 4 or 6");
    return NULL;
  }
  uint16_t proto = htons(family == 6 ? ETH_P_IPV6 : ETH_P_IP);
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
  if (fd < 0) return throw_errno(env, errno, "packet socket");
  /* Attach the filter before binding, so nothing unfiltered is queued in between. */
  int one = 1, size = 8 << 20;
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = proto;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  sll.sll_ifindex = ioctl(fd, SIOCGIFINDEX, &ifr) == 0 ? ifr.ifr_ifindex : 0;
  const char *what = "SO_ATTACH_FILTER";
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) goto fail;
  what = "PACKET_IGNORE_OUTGOING";
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) goto fail;
  what = "PACKET_VNET_HDR";
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) goto fail;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  what = name;
  if (sll.sll_ifindex == 0) {
    errno = ENODEV;
    goto fail;
  }
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) goto fail;
  return make_int(env, fd);
fail: {
  int e = errno;
  close(fd);
  return throw_errno(env, e, what);
}
}

/* Binds packet socket fd to interface ifindex for protocol proto (network order; 0: send only). */
static int bind_packet(int fd, int ifindex, uint16_t proto) {
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = proto;
  sll.sll_ifindex = ifindex;
  return bind(fd, (struct sockaddr *)&sll, sizeof sll);
}

/*
 * lanSockets(ifname) -> {rx, tx, mac, mtu}: the two packet sockets of a bridge network on Ethernet
 * interface ifname, its MAC and its MTU.
 * - rx receives, after a virtio_net_hdr as packetSocket's, the untagged IPv4 and ARP frames that arrive on
 *   ifname, except those for ifname's own MAC (the host's traffic, filtered in the kernel); never outgoing
 *   ones (the host's, softnet's own). A frame whose VLAN tag the NIC took off is refused: it belongs to a
 *   VLAN interface, not to the LAN. It asks for all multicast (PACKET_MR_ALLMULTI); each VM's external MAC
 *   is added with packetMembership().
 * - tx (protocol 0: it receives nothing) sends whole Ethernet frames out of ifname.
 */
static napi_value lan_sockets(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v, ab;
  char name[IFNAMSIZ];
  void *data;
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  int rx = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (rx < 0) return throw_errno(env, errno, "packet socket");
  int tx = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (tx < 0) {
    int e = errno;
    close(rx);
    return throw_errno(env, e, "packet socket");
  }
  struct ifreq ifr, hw, mtu;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  hw = ifr;
  mtu = ifr;
  const char *what = name;
  if (ioctl(rx, SIOCGIFINDEX, &ifr) < 0 || ioctl(rx, SIOCGIFHWADDR, &hw) < 0 || ioctl(rx, SIOCGIFMTU, &mtu) < 0)
    goto fail;
  if (hw.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    errno = EPROTONOSUPPORT;
    what = "not an Ethernet interface";
    goto fail;
  }
  const uint8_t *m = (const uint8_t *)hw.ifr_hwaddr.sa_data;
  uint32_t mac_hi = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
  uint32_t mac_lo = (uint32_t)m[4] << 8 | m[5];
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 8),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_ARP, 0, 5),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mac_hi, 0, 2),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mac_lo, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, 0x40000),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
  struct packet_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.mr_ifindex = ifr.ifr_ifindex;
  mr.mr_type = PACKET_MR_ALLMULTI;
  int one = 1, rcv = 8 << 20, snd = 4 << 20;
  /* The filter goes on before the bind, so nothing unfiltered is queued in between. */
  what = "SO_ATTACH_FILTER";
  if (setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) goto fail;
  what = "PACKET_IGNORE_OUTGOING";
  if (setsockopt(rx, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) goto fail;
  what = "PACKET_VNET_HDR";
  if (setsockopt(rx, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) goto fail;
  setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  setsockopt(tx, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd);
  what = name;
  if (bind_packet(rx, ifr.ifr_ifindex, htons(ETH_P_ALL)) < 0 || bind_packet(tx, ifr.ifr_ifindex, 0) < 0) goto fail;
  what = "PACKET_MR_ALLMULTI";
  if (setsockopt(rx, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) goto fail;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, rx, &v));
  CHECK(napi_set_named_property(env, out, "rx", v));
  CHECK(napi_create_int32(env, tx, &v));
  CHECK(napi_set_named_property(env, out, "tx", v));
  CHECK(napi_create_int32(env, mtu.ifr_mtu, &v));
  CHECK(napi_set_named_property(env, out, "mtu", v));
  CHECK(napi_create_arraybuffer(env, 6, &data, &ab));
  memcpy(data, m, 6);
  CHECK(napi_create_typedarray(env, napi_uint8_array, 6, ab, 0, &v));
  CHECK(napi_set_named_property(env, out, "mac", v));
  return out;
fail: {
  int e = errno;
  close(rx);
  close(tx);
  return throw_errno(env, e, what);
}
}

/*
 * packetMembership(fd, mac, on): adds (or drops) unicast MAC `mac` to the interface a packet socket is
 * bound to (PACKET_MR_UNICAST), so a NIC that filters unicast frames accepts those for it too, without
 * promiscuous mode (the kernel falls back to it when the NIC has no room). Dropped with the socket.
 */
static napi_value packet_membership(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  bool on;
  napi_typedarray_type tt;
  size_t len;
  void *data;
  if (get_args(env, info, 3, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  if (napi_get_typedarray_info(env, argv[1], &tt, &len, &data, NULL, NULL) != napi_ok || tt != napi_uint8_array ||
      len != 6) {
    napi_throw_type_error(env, NULL, "mac must be a 6-byte Uint8Array");
    return NULL;
  }
  CHECK(napi_get_value_bool(env, argv[2], &on));
  struct sockaddr_ll sll;
  socklen_t slen = sizeof sll;
  if (getsockname(fd, (struct sockaddr *)&sll, &slen) < 0) return throw_errno(env, errno, "getsockname");
  struct packet_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.mr_ifindex = sll.sll_ifindex;
  mr.mr_type = PACKET_MR_UNICAST;
  mr.mr_alen = 6;
  memcpy(mr.mr_address, data, 6);
  if (setsockopt(fd, SOL_PACKET, on ? PACKET_ADD_MEMBERSHIP : PACKET_DROP_MEMBERSHIP, &mr, sizeof mr) < 0)
    return throw_errno(env, errno, "PACKET_MR_UNICAST");
  return NULL;
}

/*
 * packetTxSocket(ifname) -> {fd, mac}: a send-only packet socket on Ethernet interface ifname (protocol 0:
 * it receives nothing) taking a virtio_net_hdr before each frame (PACKET_VNET_HDR), so a 64 KiB TCP
 * aggregate leaves as one send and the device or the kernel cuts it and fills in its checksum; and
 * ifname's MAC (the frames' source). It keeps the qdisc: PACKET_QDISC_BYPASS would hide softnet's traffic
 * from tcpdump on the uplink.
 */
static napi_value packet_tx_socket(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v, ab;
  char name[IFNAMSIZ];
  void *data;
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0) return NULL;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "packet socket");
  struct ifreq ifr, hw;
  memset(&ifr, 0, sizeof ifr);
  set_ifname(&ifr, name);
  hw = ifr;
  const char *what = name;
  int one = 1, size = 8 << 20;
  if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0 || ioctl(fd, SIOCGIFHWADDR, &hw) < 0) goto fail;
  what = "PACKET_VNET_HDR";
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) goto fail;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  what = name;
  if (bind_packet(fd, ifr.ifr_ifindex, 0) < 0) goto fail;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, fd, &v));
  CHECK(napi_set_named_property(env, out, "fd", v));
  CHECK(napi_create_arraybuffer(env, 6, &data, &ab));
  memcpy(data, hw.ifr_hwaddr.sa_data, 6);
  CHECK(napi_create_typedarray(env, napi_uint8_array, 6, ab, 0, &v));
  CHECK(napi_set_named_property(env, out, "mac", v));
  return out;
fail: {
  int e = errno;
  close(fd);
  return throw_errno(env, e, what);
}
}

napi_status packet_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"rawSocket", NULL, raw_socket, NULL, NULL, NULL, napi_default, NULL},
      {"rawSocket6", NULL, raw_socket6, NULL, NULL, NULL, napi_default, NULL},
      {"packetSocket", NULL, packet_socket, NULL, NULL, NULL, napi_default, NULL},
      {"lanSockets", NULL, lan_sockets, NULL, NULL, NULL, napi_default, NULL},
      {"packetTxSocket", NULL, packet_tx_socket, NULL, NULL, NULL, napi_default, NULL},
      {"packetMembership", NULL, packet_membership, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
