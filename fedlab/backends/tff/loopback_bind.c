/*
 * Preloaded into TFF's worker_binary so that it listens on loopback only.
 *
 * Why by hand: the worker has no bind-address flag and gRPC binds it to [::] (all interfaces),
 * unauthenticated. Nothing but fedlab on this machine needs to reach it, and no library
 * offers a way to change where a prebuilt binary binds. This shim rewrites a bind() to the
 * unspecified address (:: or 0.0.0.0) into the loopback address (::1 or 127.0.0.1); every
 * other bind() passes through unchanged.
 *
 * It also ties the worker's life to fedlab's: with FEDLAB_PARENT_PID set, the worker asks the
 * kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), as the library's constructor,
 * after exec. Python's preexec_fn could do the same between fork and exec, but it runs Python
 * code in the child of a process with TensorFlow's threads, which is unsafe (seen: a segfault in
 * logging's at-fork hook in that child); without the shim fedlab falls back to it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void die_with_parent(void) {
  const char *parent = getenv("FEDLAB_PARENT_PID");
  if (!parent) return;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != (pid_t)atol(parent)) _exit(1); /* the parent died before prctl took effect */
}

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static bind_fn real_bind;
  if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
  if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 a6;
    memcpy(&a6, addr, sizeof a6);
    if (IN6_IS_ADDR_UNSPECIFIED(&a6.sin6_addr)) {
      a6.sin6_addr = in6addr_loopback;
      return real_bind(fd, (const struct sockaddr *)&a6, sizeof a6);
    }
  } else if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in a4;
    memcpy(&a4, addr, sizeof a4);
    if (a4.sin_addr.s_addr == htonl(INADDR_ANY)) {
      a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      return real_bind(fd, (const struct sockaddr *)&a4, sizeof a4);
    }
  }
  return real_bind(fd, addr, len);
}
