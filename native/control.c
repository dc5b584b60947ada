/*
 * The control plane's system calls: the engine's control socket (unix SOCK_SEQPACKET, one message per
 * packet), passing a VM's fd along with a message (SCM_RIGHTS), the peer's credentials, and the lock
 * that makes one process the engine. Nothing here is on the per-frame path.
 *
 * Readiness of a control socket comes through a WATCH port of softnet.c (portOpen/portWatch), so there is
 * one polling mechanism; these calls only move bytes and fds, never block, and return -errno for what is
 * an ordinary event (EAGAIN, a peer gone) rather than throwing.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "addon.h"

/* Size of the socket buffers: a listing of a few hundred VMs or a 64 KiB captured frame fits in one message. */
#define CTL_BUF_BYTES (1 << 20)

static int unix_path(napi_env env, napi_value v, struct sockaddr_un *sun) {
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  return get_string(env, v, sun->sun_path, sizeof sun->sun_path);
}

static void set_buffers(int fd) {
  int size = CTL_BUF_BYTES;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

/* ctlListen(path) -> fd of a non-blocking listening SOCK_SEQPACKET socket bound at path. */
static napi_value ctl_listen(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct sockaddr_un sun;
  if (get_args(env, info, 1, argv) < 0 || unix_path(env, argv[0], &sun) < 0) return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(fd, 128) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, sun.sun_path);
  }
  return make_int(env, fd);
}

/* ctlConnect(path) -> fd of a non-blocking SOCK_SEQPACKET connection; throws ENOENT or ECONNREFUSED when no one listens. */
static napi_value ctl_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct sockaddr_un sun;
  if (get_args(env, info, 1, argv) < 0 || unix_path(env, argv[0], &sun) < 0) return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int r;
  do r = connect(fd, (struct sockaddr *)&sun, sizeof sun);
  while (r < 0 && errno == EINTR);
  if (r < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, sun.sun_path);
  }
  set_buffers(fd);
  return make_int(env, fd);
}

/* ctlAccept(listenFd) -> a connected fd, or -1 when none is waiting. */
static napi_value ctl_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t lfd;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &lfd) < 0) return NULL;
  int fd;
  do fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == ECONNABORTED) return make_int(env, -1);
    return throw_errno(env, errno, "accept");
  }
  set_buffers(fd);
  return make_int(env, fd);
}

/* peerCred(fd) -> {pid, uid, gid} of the process at the other end of a unix socket. */
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  int32_t fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return throw_errno(env, errno, "SO_PEERCRED");
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, cred.pid, &v));
  CHECK(napi_set_named_property(env, out, "pid", v));
  CHECK(napi_create_uint32(env, cred.uid, &v));
  CHECK(napi_set_named_property(env, out, "uid", v));
  CHECK(napi_create_uint32(env, cred.gid, &v));
  CHECK(napi_set_named_property(env, out, "gid", v));
  return out;
}

static int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type tt;
  if (napi_get_typedarray_info(env, v, &tt, len, (void **)data, NULL, NULL) != napi_ok || tt != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "expected a Uint8Array");
    return -1;
  }
  return 0;
}

/* ctlSend(fd, bytes, passFd) -> bytes sent, or -errno; passFd >= 0 travels with the message (SCM_RIGHTS). */
static napi_value ctl_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, pass;
  uint8_t *data;
  size_t len;
  if (get_args(env, info, 3, argv) < 0 || get_i32(env, argv[0], &fd) < 0 || get_bytes(env, argv[1], &data, &len) < 0 ||
      get_i32(env, argv[2], &pass) < 0)
    return NULL;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (pass >= 0) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass, sizeof pass);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return make_int(env, n < 0 ? -errno : n);
}

/*
 * ctlRecv(fd, buf, fdOut) -> the message's length (0: the peer closed), or -errno (-EAGAIN: nothing
 * waiting, -EMSGSIZE: a message longer than buf, dropped). fdOut[0] gets an fd that came with the message,
 * or -1; any further fds are closed.
 */
static napi_value ctl_recv(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  uint8_t *data;
  size_t len, nout;
  napi_typedarray_type tt;
  int32_t *fd_out;
  if (get_args(env, info, 3, argv) < 0 || get_i32(env, argv[0], &fd) < 0 || get_bytes(env, argv[1], &data, &len) < 0)
    return NULL;
  if (napi_get_typedarray_info(env, argv[2], &tt, &nout, (void **)&fd_out, NULL, NULL) != napi_ok ||
      tt != napi_int32_array || nout < 1) {
    napi_throw_type_error(env, NULL, "fdOut must be an Int32Array");
    return NULL;
  }
  fd_out[0] = -1;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * 4)];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return make_int(env, -errno);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (fd_out[0] < 0 && !(msg.msg_flags & MSG_TRUNC)) fd_out[0] = got;
      else close(got);
    }
  }
  if (msg.msg_flags & MSG_TRUNC) return make_int(env, -EMSGSIZE);
  return make_int(env, n);
}

/*
 * lockFile(path) -> fd holding an exclusive flock on path (made if missing), or -1 if another process holds
 * it. Never through a symbolic link: its directory may belong to the user an engine dropped to.
 */
static napi_value lock_file(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], path, sizeof path) < 0) return NULL;
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return throw_errno(env, errno, path);
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) return make_int(env, -1);
    return throw_errno(env, e, path);
  }
  return make_int(env, fd);
}

/*
 * netnsLock(name) -> fd holding the lock `name` of this network namespace, or -1 if another process holds
 * it. The lock is an abstract unix socket address: abstract names belong to a network namespace, and the
 * kernel frees one when its socket closes, also when its holder dies.
 */
static napi_value netns_lock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (get_args(env, info, 1, argv) < 0 || get_string(env, argv[0], sun.sun_path + 1, sizeof sun.sun_path - 1) < 0)
    return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sun.sun_path + 1));
  if (bind(fd, (struct sockaddr *)&sun, len) < 0) {
    int e = errno;
    close(fd);
    if (e == EADDRINUSE) return make_int(env, -1);
    return throw_errno(env, e, "netnsLock");
  }
  return make_int(env, fd);
}

/* dupFd(fd) -> a close-on-exec duplicate. */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) < 0 || get_i32(env, argv[0], &fd) < 0) return NULL;
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) return throw_errno(env, errno, "dup");
  return make_int(env, d);
}

napi_status control_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ctlListen", NULL, ctl_listen, NULL, NULL, NULL, napi_default, NULL},
      {"ctlConnect", NULL, ctl_connect, NULL, NULL, NULL, napi_default, NULL},
      {"ctlAccept", NULL, ctl_accept, NULL, NULL, NULL, napi_default, NULL},
      {"ctlSend", NULL, ctl_send, NULL, NULL, NULL, napi_default, NULL},
      {"ctlRecv", NULL, ctl_recv, NULL, NULL, NULL, napi_default, NULL},
      {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
      {"lockFile", NULL, lock_file, NULL, NULL, NULL, napi_default, NULL},
      {"dupFd", NULL, dup_fd, NULL, NULL, NULL, napi_default, NULL},
      {"netnsLock", NULL, netns_lock, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
