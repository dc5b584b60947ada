/*
 * Privileges: dropping root for a user that keeps a few capabilities, and handing this process over to
 * sudo. No libcap: two raw system calls (capset, prctl) do what the engine needs, and libcap would add a
 * build and run dependency for them.
 *
 * Credentials are per thread in Linux. glibc's setgroups/setresgid/setresuid change every thread of the
 * process; the capability calls change only the calling thread. They are all made on the main thread,
 * where every privileged call of the engine happens (the addon, fork+exec of nft, /proc/sys writes): it
 * keeps the capabilities, Node's helper threads that exist already lose them all with root, and threads
 * made later inherit the main thread's.
 */
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <grp.h>
#include <stdlib.h>
#include <unistd.h>

#include "addon.h"

static napi_value fail(napi_env env, const char *what) { return throw_errno(env, errno, what); }

/*
 * dropPrivileges(uid, gid, keep, ambient): becomes uid/gid (no supplementary groups but gid) keeping the
 * capabilities of bit mask `keep` (numbers below 32) permitted and effective, raising those of `ambient`
 * (a subset of keep) as ambient so a program it runs (nft) has them too. Then no execve may add privileges
 * (no_new_privs) and the process is not dumpable, so no process of the same user can trace it or read its
 * memory.
 */
static napi_value drop_privileges(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t uid, gid, keep, ambient;
  if (get_args(env, info, 4, argv) < 0 || get_i32(env, argv[0], &uid) < 0 || get_i32(env, argv[1], &gid) < 0 ||
      get_i32(env, argv[2], &keep) < 0 || get_i32(env, argv[3], &ambient) < 0)
    return NULL;
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return fail(env, "PR_SET_KEEPCAPS");
  gid_t groups[1] = {(gid_t)gid};
  if (setgroups(1, groups) < 0) return fail(env, "setgroups");
  if (setresgid(gid, gid, gid) < 0) return fail(env, "setresgid");
  if (setresuid(uid, uid, uid) < 0) return fail(env, "setresuid");
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return fail(env, "PR_SET_KEEPCAPS");
  struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  memset(data, 0, sizeof data);
  data[0].effective = data[0].permitted = (uint32_t)keep;
  data[0].inheritable = (uint32_t)ambient;
  if (syscall(SYS_capset, &head, data) < 0) return fail(env, "capset");
  for (int cap = 0; cap < 32; cap++) {
    if ((ambient >> cap & 1) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      return fail(env, "PR_CAP_AMBIENT_RAISE");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return fail(env, "PR_SET_NO_NEW_PRIVS");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return fail(env, "PR_SET_DUMPABLE");
  return NULL;
}

/*
 * execvp(file, args, keep): replaces this process with `file` (looked up in PATH) and `args`, handing it the
 * fds below `keep`; returns only by throwing. Node marks the fds it inherited close-on-exec, stdio included.
 */
static napi_value exec_vp(napi_env env, napi_callback_info info) {
  napi_value argv[3], item;
  char file[256];
  uint32_t n;
  int32_t keep;
  if (get_args(env, info, 3, argv) < 0 || get_string(env, argv[0], file, sizeof file) < 0 ||
      get_i32(env, argv[2], &keep) < 0)
    return NULL;
  CHECK(napi_get_array_length(env, argv[1], &n));
  char **args = calloc(n + 1, sizeof *args);
  if (!args) return throw_errno(env, ENOMEM, "execvp");
  for (uint32_t i = 0; i < n; i++) {
    size_t len;
    if (napi_get_element(env, argv[1], i, &item) != napi_ok ||
        napi_get_value_string_utf8(env, item, NULL, 0, &len) != napi_ok || !(args[i] = malloc(len + 1)) ||
        napi_get_value_string_utf8(env, item, args[i], len + 1, &len) != napi_ok) {
      for (uint32_t j = 0; j <= i; j++) free(args[j]);
      free(args);
      napi_throw_type_error(env, NULL, "args must be strings");
      return NULL;
    }
  }
  for (int fd = 0; fd < keep; fd++) fcntl(fd, F_SETFD, 0);
  execvp(file, args);
  int e = errno;
  for (uint32_t i = 0; i < n; i++) free(args[i]);
  free(args);
  return throw_errno(env, e, file);
}

napi_status privileges_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"dropPrivileges", NULL, drop_privileges, NULL, NULL, NULL, napi_default, NULL},
      {"execvp", NULL, exec_vp, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
