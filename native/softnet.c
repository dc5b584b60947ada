/*
 * softnet's system-call layer: batched frame I/O on VM ports and the host link, TAP devices, and the few
 * interface and socket calls that Node cannot make. Everything per-packet above this file is TypeScript.
 *
 * Theory of operation
 * - The engine hands over one ArrayBuffer, the arena. Every frame that is received or sent lives in it:
 *   recv() fills fixed-stride slots at an offset the caller chooses, send() takes a table of (offset,
 *   length) pairs into it. A frame received on one port can therefore be sent on another without a copy.
 * - A port is an fd and a framing mode: DGRAM (one datagram = one frame, recvmmsg/sendmmsg), TAP (one
 *   read/write = one frame) or STREAM (QEMU -netdev stream: a 4-byte big-endian length before each frame).
 *   Ports are numbered; the number is what TypeScript holds. A WATCH port only reports readiness: a
 *   listening socket whose connections unixAccept() takes, or a control socket that control.c reads. A RAW port is an IPPROTO_RAW socket: it sends
 *   whole IPv4 packets with sendmmsg, each to the destination written in its own header.
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
/*
 * Every frame slot starts HEADROOM bytes into its stride, so the VNET_LEN bytes before a frame are its
 * virtio_net_hdr: a port with virtio headers (a TAP with IFF_VNET_HDR, the uplink's send socket) reads and
 * writes it there along with the frame, and every other port's receive zeroes it, so the header before
 * any frame in the arena says what it holds. A slot holds stride - HEADROOM bytes.
 */
#define HEADROOM 16
#define VNET_LEN 10
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
  if (mode < MODE_DGRAM || mode > MODE_RAW) {
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
  if (p->mode == MODE_WATCH || p->mode == MODE_RAW) r = -EOPNOTSUPP;
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

/* Frames the kernel refuses one by one (too big for the route, no route) are skipped, not fatal. */
static int send_raw(struct port *p, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in dst[MAX_BATCH];
  uint32_t done = 0;
  while (done < count) {
    uint32_t n = count - done > MAX_BATCH ? MAX_BATCH : count - done;
    for (uint32_t i = 0; i < n; i++) {
      uint8_t *pkt = arena + offs[done + i];
      iov[i].iov_base = pkt;
      iov[i].iov_len = lens[done + i];
      memset(&dst[i], 0, sizeof dst[i]);
      dst[i].sin_family = AF_INET;
      if (lens[done + i] >= 20) memcpy(&dst[i].sin_addr, pkt + 16, 4);
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_name = &dst[i];
      msgs[i].msg_hdr.msg_namelen = sizeof dst[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(p->fd, msgs, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) return (int)done;
      if (errno == EMSGSIZE || errno == EHOSTUNREACH || errno == ENETUNREACH || errno == EPERM || errno == EINVAL) {
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
  else if (p->mode == MODE_RAW) r = send_raw(p, offs, lens, (uint32_t)count);
  else if (p->mode == MODE_TAP) r = send_tap(p, offs, lens, (uint32_t)count);
  else r = send_stream(p, offs, lens, (uint32_t)count);
  return make_int(env, r);
}

static void set_ifname(struct ifreq *ifr, const char *name) {
  size_t n = strnlen(name, IFNAMSIZ - 1);
  memcpy(ifr->ifr_name, name, n);
  ifr->ifr_name[n] = 0;
}

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
 * packetSocket(ifname, filter) -> fd of a SOCK_RAW packet socket on ifname that receives IPv4 frames
 * accepted by the classic BPF program `filter` (sock_filter entries, host order), never the host's own
 * outgoing ones. Each frame comes after a 10-byte virtio_net_hdr (PACKET_VNET_HDR): it says when the
 * transport checksum is not filled in yet (a packet from a veth peer on this machine) and when the packet
 * is a GRO aggregate.
 */
/* A classic BPF program argument (a Uint8Array of sock_filter entries) as a sock_fprog; -1 and throws if not. */
static int get_filter(napi_env env, napi_value v, struct sock_fprog *prog) {
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

static napi_value packet_socket(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IFNAMSIZ];
  struct sock_fprog prog;
  if (get_args(env, info, 2, argv) < 0 || get_string(env, argv[0], name, sizeof name) < 0 ||
      get_filter(env, argv[1], &prog) < 0)
    return NULL;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_IP));
  if (fd < 0) return throw_errno(env, errno, "packet socket");
  /* Attach the filter before binding, so nothing unfiltered is queued in between. */
  int one = 1, size = 8 << 20;
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_IP);
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
 * Splits the TCP/IPv4 GSO frame at arena[src] (a virtio_net_hdr, an Ethernet header, then an IPv4 packet
 * larger than one MTU, as a packet socket delivers a GRO aggregate or a veth peer's TSO send) into
 * gso_size segments at arena[dst + i*stride], each with a zeroed virtio header and full checksums, so the
 * pipeline handles them like any captured frame. This is a copy loop over payload bytes, which is why it
 * is C and not TypeScript.
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
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  if (gso_type != 1 /* VIRTIO_NET_HDR_GSO_TCPV4 */ || (ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6 || mss == 0)
    return make_int(env, -EPROTONOSUPPORT);
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
    put16(oip + 2, (uint16_t)(ihl + thl + chunk));
    put16(oip + 4, (uint16_t)(id + i));
    put16(oip + 10, 0);
    put16(oip + 10, csum_fold(csum_add(0, oip, ihl)));
    uint32_t s = seq + (uint32_t)(i * mss);
    otcp[4] = s >> 24;
    otcp[5] = s >> 16;
    otcp[6] = s >> 8;
    otcp[7] = s;
    /* FIN and PSH belong to the last segment only, CWR to the first. */
    otcp[13] = (uint8_t)(i + 1 < count ? flags & ~0x09 : flags);
    if (i > 0) otcp[13] &= (uint8_t)~0x80;
    put16(otcp + 16, 0);
    uint32_t sum = csum_add(0, oip + 12, 8) + 6 + (uint32_t)(thl + chunk);
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
      {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_default, NULL},
      {"tapCarrier", NULL, tap_carrier, NULL, NULL, NULL, napi_default, NULL},
      {"ifConfigure", NULL, if_configure, NULL, NULL, NULL, napi_default, NULL},
      {"ifHwaddr", NULL, if_hwaddr, NULL, NULL, NULL, napi_default, NULL},
      {"fdKind", NULL, fd_kind, NULL, NULL, NULL, napi_default, NULL},
      {"rawSocket", NULL, raw_socket, NULL, NULL, NULL, napi_default, NULL},
      {"packetSocket", NULL, packet_socket, NULL, NULL, NULL, napi_default, NULL},
      {"portSetFilter", NULL, port_set_filter, NULL, NULL, NULL, napi_default, NULL},
      {"lanSockets", NULL, lan_sockets, NULL, NULL, NULL, napi_default, NULL},
      {"packetTxSocket", NULL, packet_tx_socket, NULL, NULL, NULL, napi_default, NULL},
      {"packetMembership", NULL, packet_membership, NULL, NULL, NULL, napi_default, NULL},
      {"unixListen", NULL, unix_listen, NULL, NULL, NULL, napi_default, NULL},
      {"unixAccept", NULL, unix_accept, NULL, NULL, NULL, napi_default, NULL},
      {"socketpair", NULL, socket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"errnoName", NULL, errno_name, NULL, NULL, NULL, napi_default, NULL},
      {"gsoSegment", NULL, gso_segment, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  CHECK(control_register(env, exports));
  CHECK(privileges_register(env, exports));
  CHECK(rtnl_register(env, exports));
  CHECK(napi_create_string_utf8(env, "softnet:io", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_async_init(env, resource, name, &async_ctx));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
