/* Helpers shared by the addon's files: argument checks and errors as N-API values. */
#ifndef SOFTNET_ADDON_H
#define SOFTNET_ADDON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <linux/filter.h>
#include <linux/if.h>
#include <node_api.h>
#include <uv.h>

/* Bytes of the virtio_net_hdr before each frame of a port with virtio headers (no num_buffers field). */
#define VNET_LEN 10

#define CHECK(call)                                                                                        \
  do {                                                                                                     \
    if ((call) != napi_ok) {                                                                               \
      napi_throw_error(env, NULL, "napi call failed: " #call);                                             \
      return NULL;                                                                                         \
    }                                                                                                      \
  } while (0)

static inline const char *errname(int err) {
  const char *n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

/* Throws an Error with code = errno name and a message naming what failed. */
static inline napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%.180s: %.60s", what, strerror(err));
  napi_throw_error(env, errname(err), msg);
  return NULL;
}

static inline napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static inline int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return -1;
  }
  return 0;
}

static inline int get_i32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a number");
    return -1;
  }
  return 0;
}

static inline int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok || n >= len - 1) {
    napi_throw_type_error(env, NULL, "expected a short string");
    return -1;
  }
  return 0;
}

/* Puts interface name `name` into an ifreq, cut to IFNAMSIZ - 1 bytes. */
static inline void set_ifname(struct ifreq *ifr, const char *name) {
  size_t n = strnlen(name, IFNAMSIZ - 1);
  memcpy(ifr->ifr_name, name, n);
  ifr->ifr_name[n] = 0;
}

/* A classic BPF program argument (a Uint8Array of sock_filter entries) as a sock_fprog; -1 and throws if not. */
int get_filter(napi_env env, napi_value v, struct sock_fprog *prog);

/* A Uint32Array argument as a pointer and its element count. */
static inline uint32_t *get_u32array(napi_env env, napi_value v, size_t *count) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_uint32_array) {
    napi_throw_type_error(env, NULL, "expected a Uint32Array");
    return NULL;
  }
  *count = len;
  return data;
}

/* Registers the control-plane functions (control.c) on the addon's exports. */
napi_status control_register(napi_env env, napi_value exports);

/* Registers dropping privileges and exec (privileges.c). */
napi_status privileges_register(napi_env env, napi_value exports);

/* Registers TAP devices and interface set-up (tap.c). */
napi_status tap_register(napi_env env, napi_value exports);

/* Registers the raw and packet sockets of the uplink and a bridged LAN (packet.c). */
napi_status packet_register(napi_env env, napi_value exports);

/* Registers fd kinds, unix sockets and socket pairs (fds.c). */
napi_status fds_register(napi_env env, napi_value exports);

/* Registers the host's interface events and state (rtnl.c). */
napi_status rtnl_register(napi_env env, napi_value exports);

#endif
