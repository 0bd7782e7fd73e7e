/*
 * Preloaded into TFF's worker_binary so that it listens on loopback only.
 *
 * Why by hand: the worker has no bind-address flag and gRPC binds it to [::] (all interfaces),
 * unauthenticated. Nothing but fedlab on this machine needs to reach it, and no library
 * offers a way to change where a prebuilt binary binds. This shim rewrites a bind() to the
 * unspecified address (:: or 0.0.0.0) into the loopback address (::1 or 127.0.0.1); every
 * other bind() passes through unchanged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

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
