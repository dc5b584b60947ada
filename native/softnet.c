/*
 * softnet's system-call layer, its frame side: the ports (batched frame I/O on VM ports, the host link and
 * the uplink's sockets, over one arena), their readiness, and GSO segmentation for ports without offloads.
 * Everything per-packet above this file is TypeScript. The other files of the addon make the fds that
 * become ports: tap.c (TAP devices, interface set-up), packet.c (the uplink's and a bridged LAN's sockets),
 * fds.c (inherited fds, unix sockets), control.c (the control socket), rtnl.c (the host's interface
 * events); privileges.c drops root.
 *
 * Theory of operation
 * - The engine hands over one ArrayBuffer, the arena. Every frame that is received or sent lives in it:
 *   recv() fills fixed-stride slots at an offset the caller chooses, send() takes a table of (offset,
 *   length) pairs into it. A frame received on one port can therefore be sent on another without a copy.
 * - A port is an fd and a framing mode: DGRAM (one datagram = one frame, recvmmsg/sendmmsg), TAP (one
 *   read/write = one frame) or STREAM (QEMU -netdev stream: a 4-byte big-endian length before each frame).
 *   Ports are numbered; the number is what TypeScript holds. A WATCH port only reports readiness: a
 *   listening socket whose connections unixAccept() takes, a control socket that control.c reads, or
 *   the rtnetlink socket of rtnl.c. A RAW port is an IPPROTO_RAW socket: it sends whole IPv4 packets with
 *   sendmmsg, each to the destination written in its own header; a RAW6 port does the same with whole
 *   IPv6 packets on an AF_INET6 one (see rawSocket6 in packet.c for what the kernel does to them).
 * - A bridge network's LAN is two packet sockets on one interface (lanSockets): DGRAM ports, since a packet
 *   socket carries one frame per datagram; the receiving one, like the uplink's capture, puts a
 *   virtio_net_hdr before each frame.
 * - Readiness comes from libuv (uv_poll, level-triggered): no thread, no busy loop. The callback gets the
 *   port number and a status; TypeScript then drains the port with recv() in batches.
 * - recv() and send() never throw on I/O errors: they return a negative errno, because they sit on the hot
 *   path and a closed peer is an ordinary event there. Set-up calls throw an Error whose code is the errno
 *   name (EBUSY, ENOENT, ...).
 * - A STREAM port keeps a reassembly buffer for partial frames and a pending buffer for output the socket
 *   did not take; the pending buffer is flushed from the writable callback without calling into JS.
 *   A DGRAM port keeps a pending buffer too, of [length][frame] records: a unix datagram peer queues only
 *   net.unix.max_dgram_qlen datagrams, and a burst (one 64 KiB aggregate cut into ~44 frames) would
 *   otherwise be dropped whenever the VM reads a little late.
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

#define MAX_PORTS 4096
#define MAX_BATCH 256
#define MODE_DGRAM 0
#define MODE_TAP 1
#define MODE_STREAM 2
#define MODE_WATCH 3
#define MODE_RAW 4
#define MODE_RAW6 5
/*
 * Every frame slot starts HEADROOM bytes into its stride, so the VNET_LEN bytes before a frame are its
 * virtio_net_hdr: a port with virtio headers (a TAP with IFF_VNET_HDR, the uplink's send socket) reads and
 * writes it there along with the frame, and every other port's receive zeroes it, so the header before
 * any frame in the arena says what it holds. A slot holds stride - HEADROOM bytes.
 */
#define HEADROOM 16
#define STREAM_RX_BYTES (256 * 1024)
#define TX_PENDING_BYTES (1024 * 1024)

struct port {
  int id;
  int fd;
  int mode;
  /* Whether the fd's I/O carries a virtio_net_hdr before each frame. */
  int vnet;
  int watching;
  int closing;
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  uint8_t *rx;
  size_t rx_used;
  uint8_t *tx;
  size_t tx_used;
};

static struct port *ports[MAX_PORTS];
static uint8_t *arena;
static size_t arena_len;
static napi_ref arena_ref;
static napi_async_context async_ctx;

static struct port *get_port(napi_env env, napi_value v) {
  int32_t id;
  if (get_i32(env, v, &id) < 0) return NULL;
  if (id < 0 || id >= MAX_PORTS || !ports[id] || ports[id]->closing) {
    napi_throw_range_error(env, NULL, "no such port");
    return NULL;
  }
  return ports[id];
}

/* setArena(ab): the buffer every frame offset refers to. */
static napi_value set_arena(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data;
  size_t len;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  CHECK(napi_get_arraybuffer_info(env, argv[0], &data, &len));
  if (arena_ref) napi_delete_reference(env, arena_ref);
  CHECK(napi_create_reference(env, argv[0], 1, &arena_ref));
  arena = data;
  arena_len = len;
  return NULL;
}

/* portOpen(fd, mode) -> port number; the fd is made non-blocking and owned by the port from now on. */
static napi_value port_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, mode;
  bool vnet = false;
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  if (get_i32(env, argv[0], &fd) < 0 || get_i32(env, argv[1], &mode) < 0) return NULL;
  if (argc > 2) CHECK(napi_get_value_bool(env, argv[2], &vnet));
  if (mode < MODE_DGRAM || mode > MODE_RAW6) {
    napi_throw_range_error(env, NULL, "bad port mode");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return throw_errno(env, errno, "fcntl");
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  int id = 0;
  while (id < MAX_PORTS && ports[id]) id++;
  if (id == MAX_PORTS) return throw_errno(env, EMFILE, "portOpen");
  struct port *p = calloc(1, sizeof *p);
  if (!p) return throw_errno(env, ENOMEM, "portOpen");
  p->id = id;
  p->fd = fd;
  p->mode = mode;
  p->vnet = vnet;
  p->env = env;
  if (vnet && mode == MODE_TAP) {
    /* A TAP made by another program may carry 12-byte headers (with num_buffers); softnet's are 10. */
    int size = VNET_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) {
      int e = errno;
      free(p);
      return throw_errno(env, e, "TUNSETVNETHDRSZ");
    }
  }
  if (mode == MODE_STREAM || mode == MODE_DGRAM) {
    p->rx = mode == MODE_STREAM ? malloc(STREAM_RX_BYTES) : NULL;
    p->tx = malloc(TX_PENDING_BYTES);
    if ((mode == MODE_STREAM && !p->rx) || !p->tx) {
      free(p->rx);
      free(p->tx);
      free(p);
      return throw_errno(env, ENOMEM, "portOpen");
    }
  }
  ports[id] = p;
  return make_int(env, id);
}

static void call_js(struct port *p, int status) {
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_value cb, recv, argv[2], result;
  if (!p->cb) return;
  napi_open_handle_scope(env, &scope);
  napi_get_reference_value(env, p->cb, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, p->id, &argv[0]);
  napi_create_int32(env, status, &argv[1]);
  if (napi_make_callback(env, async_ctx, recv, cb, 2, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static int stream_flush(struct port *p) {
  while (p->tx_used > 0) {
    ssize_t n = write(p->fd, p->tx, p->tx_used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -errno;
    }
    memmove(p->tx, p->tx + n, p->tx_used - n);
    p->tx_used -= n;
  }
  return 0;
}

static void update_poll(struct port *p);
static int dgram_flush(struct port *p);

static void on_poll(uv_poll_t *h, int status, int events) {
  struct port *p = h->data;
  if (p->closing) return;
  if (status < 0) {
    /*
     * libuv reports POLLERR as UV_EBADF and stops the handle. A socket's pending error (a packet socket's
     * ENETDOWN while its interface is down) is the real reason: it is reported, which clears it, and the
     * port is polled again unless its owner closed it.
     */
    int err = 0;
    socklen_t len = sizeof err;
    if (status == UV_EBADF && getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      call_js(p, -err);
      if (!p->closing) update_poll(p);
      return;
    }
    call_js(p, status);
    return;
  }
  if (events & UV_WRITABLE) {
    int r = p->mode == MODE_DGRAM ? dgram_flush(p) : stream_flush(p);
    update_poll(p);
    if (r < 0) {
      call_js(p, r);
      return;
    }
  }
  if (events & (UV_READABLE | UV_DISCONNECT)) call_js(p, 0);
}

static void update_poll(struct port *p) {
  if (!p->watching || p->closing) return;
  int ev = UV_READABLE;
  if (p->mode == MODE_STREAM) ev |= UV_DISCONNECT;
  if (p->tx_used > 0) ev |= UV_WRITABLE;
  uv_poll_start(&p->poll, ev, on_poll);
}

/* portWatch(port, cb): cb(port, status) runs whenever the fd is readable (status 0) or failed (-errno). */
static napi_value port_watch(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uv_loop_t *loop;
  if (get_args(env, info, 2, argv) < 0) return NULL;
  struct port *p = get_port(env, argv[0]);
  if (!p) return NULL;
  if (p->watching) {
    napi_throw_error(env, NULL, "port already watched");
    return NULL;
  }
  CHECK(napi_create_reference(env, argv[1], 1, &p->cb));
  CHECK(napi_get_uv_event_loop(env, &loop));
  int r = uv_poll_init(loop, &p->poll, p->fd);
  if (r < 0) return throw_errno(env, -r, "uv_poll_init");
  p->poll.data = p;
  p->watching = 1;
  update_poll(p);
  return NULL;
}

static void free_port(struct port *p) {
  free(p->rx);
  free(p->tx);
  free(p);
}

static void on_closed(uv_handle_t *h) { free_port(h->data); }

/* portClose(port): stops watching, closes the fd and frees the port number. */
static napi_value port_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) < 0) return NULL;
  struct port *p = get_port(env, argv[0]);
  if (!p) return NULL;
  p->closing = 1;
  ports[p->id] = NULL;
  if (p->cb) napi_delete_reference(env, p->cb);
  p->cb = NULL;
  close(p->fd);
  if (p->watching) {
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, on_closed);
  } else {
    free_port(p);
  }
  return NULL;
}

static int check_slots(napi_env env, uint32_t base, uint32_t stride, uint32_t max) {
  if (!arena || max == 0 || max > MAX_BATCH || stride <= HEADROOM || base < HEADROOM ||
      (uint64_t)base - HEADROOM + (uint64_t)stride * max > arena_len) {
    napi_throw_range_error(env, NULL, "receive slots outside the arena");
    return -1;
  }
  return 0;
}

/*
 * Says in the virtio header before a frame at arena[at] that it holds nothing offloaded: all of it, since
 * the kernel checks hdr_len against the frame's length whatever the flags say.
 */
static inline void plain_header(size_t at) { memset(arena + at - VNET_LEN, 0, VNET_LEN); }

/* Takes complete length-prefixed frames out of the reassembly buffer; returns frames taken or -errno. */
static int stream_take(struct port *p, uint32_t base, uint32_t stride, uint32_t max, uint32_t *lens, int got) {
  size_t at = 0;
  while ((uint32_t)got < max && p->rx_used - at >= 4) {
    uint32_t len = (uint32_t)p->rx[at] << 24 | (uint32_t)p->rx[at + 1] << 16 | (uint32_t)p->rx[at + 2] << 8 |
                   p->rx[at + 3];
    if (len == 0 || len > stride - HEADROOM || len > STREAM_RX_BYTES - 4) return -EPROTO;
    if (p->rx_used - at - 4 < len) break;
    memcpy(arena + base + (size_t)stride * got, p->rx + at + 4, len);
    plain_header(base + (size_t)stride * got);
    lens[got++] = len;
    at += 4 + len;
  }
  memmove(p->rx, p->rx + at, p->rx_used - at);
  p->rx_used -= at;
  return got;
}

static int recv_stream(struct port *p, uint32_t base, uint32_t stride, uint32_t max, uint32_t *lens) {
  int got = stream_take(p, base, stride, max, lens, 0);
  while (got >= 0 && (uint32_t)got < max) {
    ssize_t n = read(p->fd, p->rx + p->rx_used, STREAM_RX_BYTES - p->rx_used);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return got > 0 ? got : -errno;
    }
    if (n == 0) return got > 0 ? got : -ECONNRESET;
    p->rx_used += n;
    got = stream_take(p, base, stride, max, lens, got);
  }
  return got;
}

static int recv_dgram(struct port *p, uint32_t base, uint32_t stride, uint32_t max, uint32_t *lens) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  for (uint32_t i = 0; i < max; i++) {
    iov[i].iov_base = arena + base + (size_t)stride * i;
    iov[i].iov_len = stride - HEADROOM;
    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int n;
  do n = recvmmsg(p->fd, msgs, max, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    lens[i] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? UINT32_MAX : msgs[i].msg_len;
    plain_header(base + (size_t)stride * i);
  }
  return n;
}

static int recv_tap(struct port *p, uint32_t base, uint32_t stride, uint32_t max, uint32_t *lens) {
  uint32_t got = 0;
  size_t pre = p->vnet ? VNET_LEN : 0;
  while (got < max) {
    size_t at = base + (size_t)stride * got;
    ssize_t n = read(p->fd, arena + at - pre, stride - HEADROOM + pre);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return got > 0 ? (int)got : -errno;
    }
    if (n == 0) return got > 0 ? (int)got : -ENODEV;
    if ((size_t)n < pre) continue;
    if (!pre) plain_header(at);
    lens[got++] = (uint32_t)((size_t)n - pre);
  }
  return (int)got;
}

/* recv(port, base, stride, max, lens) -> frames read into arena[base + i*stride], or -errno. */
static napi_value port_recv(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int32_t base, stride, max;
  size_t nlens;
  if (get_args(env, info, 5, argv) < 0) return NULL;
  struct port *p = get_port(env, argv[0]);
  if (!p || get_i32(env, argv[1], &base) < 0 || get_i32(env, argv[2], &stride) < 0 ||
      get_i32(env, argv[3], &max) < 0)
    return NULL;
  uint32_t *lens = get_u32array(env, argv[4], &nlens);
  if (!lens) return NULL;
  if (base < 0 || stride <= 0 || max <= 0 || check_slots(env, base, stride, max) < 0) return NULL;
  if (nlens < (size_t)max) {
    napi_throw_range_error(env, NULL, "lens shorter than the batch");
    return NULL;
  }
  int r;
  if (p->mode == MODE_WATCH || p->mode == MODE_RAW || p->mode == MODE_RAW6) r = -EOPNOTSUPP;
  else if (p->mode == MODE_DGRAM) r = recv_dgram(p, base, stride, max, lens);
  else if (p->mode == MODE_TAP) r = recv_tap(p, base, stride, max, lens);
  else r = recv_stream(p, base, stride, max, lens);
  return make_int(env, r);
}

/* Appends frames to the pending buffer as [4-byte length][frame] records; returns how many fitted. */
static uint32_t pend(struct port *p, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  uint32_t accepted = 0;
  size_t pre = p->vnet ? VNET_LEN : 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t len = lens[i] + (uint32_t)pre;
    if (p->tx_used + 4 + len > TX_PENDING_BYTES) break;
    uint8_t *h = p->tx + p->tx_used;
    h[0] = len >> 24;
    h[1] = len >> 16;
    h[2] = len >> 8;
    h[3] = len;
    memcpy(h + 4, arena + offs[i] - pre, len);
    p->tx_used += 4 + len;
    accepted++;
  }
  return accepted;
}

/* Sends pending datagram records until the socket is full; returns 0 or -errno. */
static int dgram_flush(struct port *p) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  size_t at = 0;
  while (at < p->tx_used) {
    uint32_t n = 0;
    size_t scan = at;
    while (n < MAX_BATCH && scan < p->tx_used) {
      uint32_t len = (uint32_t)p->tx[scan] << 24 | (uint32_t)p->tx[scan + 1] << 16 | (uint32_t)p->tx[scan + 2] << 8 |
                     p->tx[scan + 3];
      iov[n].iov_base = p->tx + scan + 4;
      iov[n].iov_len = len;
      memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      scan += 4 + len;
      n++;
    }
    int r = sendmmsg(p->fd, msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) break;
      return -errno;
    }
    for (int i = 0; i < r; i++) at += 4 + iov[i].iov_len;
  }
  memmove(p->tx, p->tx + at, p->tx_used - at);
  p->tx_used -= at;
  return 0;
}

/* Sends at once what the socket takes and keeps the rest pending, behind what was already pending. */
static int send_dgram(struct port *p, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  uint32_t done = 0;
  size_t pre = p->vnet ? VNET_LEN : 0;
  while (done < count && p->tx_used == 0) {
    uint32_t n = count - done > MAX_BATCH ? MAX_BATCH : count - done;
    for (uint32_t i = 0; i < n; i++) {
      iov[i].iov_base = arena + offs[done + i] - pre;
      iov[i].iov_len = lens[done + i] + pre;
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(p->fd, msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) break;
      return done > 0 ? (int)done : -errno;
    }
    done += (uint32_t)r;
  }
  if (done < count) {
    done += pend(p, offs + done, lens + done, count - done);
    int r = dgram_flush(p);
    update_poll(p);
    if (r < 0) return r;
  }
  return (int)done;
}

/*
 * Sends whole IP packets (RAW: IPv4, RAW6: IPv6) with sendmmsg, each to the destination address in its
 * own header. Packets the kernel refuses one by one (too big for the route, no route) are skipped, not
 * fatal; so is one too short to hold its destination.
 */
static int send_raw(struct port *p, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } dst[MAX_BATCH];
  int v6 = p->mode == MODE_RAW6;
  uint32_t done = 0;
  while (done < count) {
    uint32_t n = count - done > MAX_BATCH ? MAX_BATCH : count - done;
    for (uint32_t i = 0; i < n; i++) {
      uint8_t *pkt = arena + offs[done + i];
      iov[i].iov_base = pkt;
      iov[i].iov_len = lens[done + i];
      memset(&dst[i], 0, sizeof dst[i]);
      if (v6) {
        dst[i].v6.sin6_family = AF_INET6;
        if (lens[done + i] >= 40) memcpy(&dst[i].v6.sin6_addr, pkt + 24, 16);
        else iov[i].iov_len = 0;
      } else {
        dst[i].v4.sin_family = AF_INET;
        if (lens[done + i] >= 20) memcpy(&dst[i].v4.sin_addr, pkt + 16, 4);
      }
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_name = &dst[i];
      msgs[i].msg_hdr.msg_namelen = v6 ? sizeof dst[i].v6 : sizeof dst[i].v4;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(p->fd, msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) return (int)done;
      if (errno == EMSGSIZE || errno == EHOSTUNREACH || errno == ENETUNREACH || errno == EPERM || errno == EINVAL ||
          errno == EACCES) {
        done++;
        continue;
      }
      return done > 0 ? (int)done : -errno;
    }
    done += (uint32_t)r;
  }
  return (int)done;
}

static int send_tap(struct port *p, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  uint32_t done = 0;
  size_t pre = p->vnet ? VNET_LEN : 0;
  while (done < count) {
    ssize_t r = write(p->fd, arena + offs[done] - pre, lens[done] + pre);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) return (int)done;
      if (errno == EINVAL) {
        done++; /* the kernel refused this one frame (bad length); the rest may still go */
        continue;
      }
      return done > 0 ? (int)done : -errno;
    }
    done++;
  }
  return (int)done;
}

static int send_stream(struct port *p, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  uint32_t accepted = pend(p, offs, lens, count);
  int r = stream_flush(p);
  update_poll(p);
  return r < 0 ? r : (int)accepted;
}

/* send(port, offs, lens, count) -> frames the kernel took (the rest are dropped by the caller), or -errno. */
static napi_value port_send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t count;
  size_t noffs, nlens;
  if (get_args(env, info, 4, argv) < 0) return NULL;
  struct port *p = get_port(env, argv[0]);
  if (!p) return NULL;
  uint32_t *offs = get_u32array(env, argv[1], &noffs);
  if (!offs) return NULL;
  uint32_t *lens = get_u32array(env, argv[2], &nlens);
  if (!lens || get_i32(env, argv[3], &count) < 0) return NULL;
  if (count < 0 || (size_t)count > noffs || (size_t)count > nlens || !arena) {
    napi_throw_range_error(env, NULL, "bad send count");
    return NULL;
  }
  for (int32_t i = 0; i < count; i++) {
    if ((uint64_t)offs[i] + lens[i] > arena_len || (p->vnet && offs[i] < VNET_LEN)) {
      napi_throw_range_error(env, NULL, "frame outside the arena");
      return NULL;
    }
  }
  int r;
  if (p->mode == MODE_WATCH) r = -EOPNOTSUPP;
  else if (p->mode == MODE_DGRAM) r = send_dgram(p, offs, lens, (uint32_t)count);
  else if (p->mode == MODE_RAW || p->mode == MODE_RAW6) r = send_raw(p, offs, lens, (uint32_t)count);
  else if (p->mode == MODE_TAP) r = send_tap(p, offs, lens, (uint32_t)count);
  else r = send_stream(p, offs, lens, (uint32_t)count);
  return make_int(env, r);
}

/*
 * portSetFilter(port, filter): replaces the classic BPF filter of a port's socket (the uplink capture's,
 * when the forwarded ports change). The kernel swaps the program atomically: every packet meets one of them.
 */
static napi_value port_set_filter(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct sock_fprog prog;
  if (get_args(env, info, 2, argv) < 0) return NULL;
  struct port *p = get_port(env, argv[0]);
  if (!p || get_filter(env, argv[1], &prog) < 0) return NULL;
  if (setsockopt(p->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return throw_errno(env, errno, "SO_ATTACH_FILTER");
  return NULL;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len) {
  for (; len > 1; p += 2, len -= 2) sum += (uint32_t)p[0] << 8 | p[1];
  if (len) sum += (uint32_t)p[0] << 8;
  return sum;
}

static uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v;
}

/*
 * gsoSegment(src, len, dst, stride, max, lens) -> segments written, or -errno.
 * Splits the TCP GSO frame at arena[src] (a virtio_net_hdr, an Ethernet header, then an IPv4 packet, or an
 * IPv6 one whose next header is TCP, larger than one MTU, as a packet socket delivers a GRO aggregate or a
 * veth peer's TSO send) into gso_size segments at arena[dst + i*stride], each with a zeroed virtio header
 * and full checksums, so the pipeline handles them like any captured frame. This is a copy loop over
 * payload bytes, which is why it is C and not TypeScript.
 */
static napi_value gso_segment(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int32_t src, len, dst, stride, max;
  size_t nlens;
  if (get_args(env, info, 6, argv) < 0 || get_i32(env, argv[0], &src) < 0 || get_i32(env, argv[1], &len) < 0 ||
      get_i32(env, argv[2], &dst) < 0 || get_i32(env, argv[3], &stride) < 0 || get_i32(env, argv[4], &max) < 0)
    return NULL;
  uint32_t *lens = get_u32array(env, argv[5], &nlens);
  if (!lens) return NULL;
  if (!arena || src < 0 || len < 0 || (size_t)src + (size_t)len > arena_len || dst < 0 || stride <= 0 || max <= 0 ||
      (size_t)max > nlens || (size_t)dst + (size_t)stride * (size_t)max > arena_len) {
    napi_throw_range_error(env, NULL, "gsoSegment outside the arena");
    return NULL;
  }
  const uint8_t *f = arena + src;
  const size_t vnet = 10, eth = 14;
  if ((size_t)len < vnet + eth + 40) return make_int(env, -EINVAL);
  uint8_t gso_type = f[1] & 0x7f;
  uint16_t mss = (uint16_t)(f[4] | f[5] << 8);
  const uint8_t *ip = f + vnet + eth;
  size_t ihl;
  int v6 = gso_type == 4; /* VIRTIO_NET_HDR_GSO_TCPV6 */
  if (v6) {
    /* Extension headers would have to be walked and copied into every segment: none is taken. */
    if ((ip[0] >> 4) != 6 || ip[6] != 6 || mss == 0) return make_int(env, -EPROTONOSUPPORT);
    ihl = 40;
  } else {
    ihl = (size_t)(ip[0] & 0x0f) * 4;
    if (gso_type != 1 /* VIRTIO_NET_HDR_GSO_TCPV4 */ || (ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6 || mss == 0)
      return make_int(env, -EPROTONOSUPPORT);
  }
  const uint8_t *tcp = ip + ihl;
  if ((size_t)(tcp - f) + 20 > (size_t)len) return make_int(env, -EINVAL);
  size_t thl = (size_t)(tcp[12] >> 4) * 4;
  const uint8_t *payload = tcp + thl;
  const uint8_t *end = f + len;
  if (thl < 20 || payload > end) return make_int(env, -EINVAL);
  size_t head = eth + ihl + thl;
  if (vnet + head + mss > (size_t)stride) return make_int(env, -EMSGSIZE);
  size_t total = (size_t)(end - payload);
  size_t count = (total + mss - 1) / mss;
  if (count == 0) count = 1;
  if (count > (size_t)max) return make_int(env, -ENOSPC);
  uint32_t seq = (uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7];
  uint16_t id = (uint16_t)(ip[4] << 8 | ip[5]);
  uint8_t flags = tcp[13];
  for (size_t i = 0; i < count; i++) {
    size_t chunk = i + 1 < count ? mss : total - i * mss;
    uint8_t *out = arena + dst + (size_t)stride * i;
    memset(out, 0, vnet);
    memcpy(out + vnet, f + vnet, head);
    memcpy(out + vnet + head, payload + i * mss, chunk);
    uint8_t *oip = out + vnet + eth;
    uint8_t *otcp = oip + ihl;
    uint32_t sum;
    if (v6) {
      /* No header checksum and no identification in IPv6: the payload length is all that changes. */
      put16(oip + 4, (uint16_t)(thl + chunk));
      sum = csum_add(0, oip + 8, 32) + 6 + (uint32_t)(thl + chunk);
    } else {
      put16(oip + 2, (uint16_t)(ihl + thl + chunk));
      put16(oip + 4, (uint16_t)(id + i));
      put16(oip + 10, 0);
      put16(oip + 10, csum_fold(csum_add(0, oip, ihl)));
      sum = csum_add(0, oip + 12, 8) + 6 + (uint32_t)(thl + chunk);
    }
    uint32_t s = seq + (uint32_t)(i * mss);
    otcp[4] = s >> 24;
    otcp[5] = s >> 16;
    otcp[6] = s >> 8;
    otcp[7] = s;
    /* FIN and PSH belong to the last segment only, CWR to the first. */
    otcp[13] = (uint8_t)(i + 1 < count ? flags & ~0x09 : flags);
    if (i > 0) otcp[13] &= (uint8_t)~0x80;
    put16(otcp + 16, 0);
    put16(otcp + 16, csum_fold(csum_add(sum, otcp, thl + chunk)));
    lens[i] = (uint32_t)(vnet + head + chunk);
  }
  return make_int(env, (int64_t)count);
}

/* errnoName(n) -> 'EAGAIN' etc., for the negative numbers recv() and send() return. */
static napi_value errno_name(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t n;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &n) < 0) return NULL;
  CHECK(napi_create_string_utf8(env, errname(n < 0 ? -n : n), NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value name, resource;
  napi_property_descriptor props[] = {
      {"setArena", NULL, set_arena, NULL, NULL, NULL, napi_default, NULL},
      {"portOpen", NULL, port_open, NULL, NULL, NULL, napi_default, NULL},
      {"portWatch", NULL, port_watch, NULL, NULL, NULL, napi_default, NULL},
      {"portClose", NULL, port_close, NULL, NULL, NULL, napi_default, NULL},
      {"recv", NULL, port_recv, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, port_send, NULL, NULL, NULL, napi_default, NULL},
      {"portSetFilter", NULL, port_set_filter, NULL, NULL, NULL, napi_default, NULL},
      {"errnoName", NULL, errno_name, NULL, NULL, NULL, napi_default, NULL},
      {"gsoSegment", NULL, gso_segment, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  CHECK(control_register(env, exports));
  CHECK(privileges_register(env, exports));
  CHECK(rtnl_register(env, exports));
  CHECK(tap_register(env, exports));
  CHECK(packet_register(env, exports));
  CHECK(fds_register(env, exports));
  CHECK(napi_create_string_utf8(env, "softnet:io", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_async_init(env, resource, name, &async_ctx));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
