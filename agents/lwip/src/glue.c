/*
 * The lwIP side of halfclose-lwip-agent: everything that needs lwIP's structure layouts or
 * macros (which depend on Debian's lwipopts.h), behind a flat C API that src/lwip.rs calls.
 *
 * The agent runs lwIP in "main loop" mode: lwip_init() without the tcpip thread, and one
 * thread (the agent's) that feeds frames in, runs sys_check_timeouts() and makes raw-API
 * calls. Debian's library is built with NO_SYS=0, but its core-locking check only applies
 * once a tcpip thread exists (sys_check_core_locking in contrib/ports/unix/port/sys_arch.c),
 * so a single thread owns the core without locks, and nothing runs behind the agent's back:
 * every state change happens inside hcl_input_one(), hcl_check_timeouts() or a call.
 *
 * Connections are `struct hcl_conn`: a pcb plus what its callbacks delivered (received data
 * kept unread, so that lwIP's receive window stays closed by it exactly as under its socket
 * API, which calls tcp_recved() only when the application reads).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lwip/init.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/timeouts.h"
#include "lwip/nd6.h"
#include "netif/ethernet.h"
#include "netif/etharp.h"
#include "lwip/ethip6.h"

#include "glue.h"

static struct netif hcl_netif;
static int hcl_tap_fd = -1;
static int hcl_tap_errno;
static int hcl_configured;

void hcl_init(int tap_fd) {
  hcl_tap_fd = tap_fd;
  lwip_init();
}

/* ---- The interface on the TAP fd ---- */

static err_t linkoutput(struct netif *netif, struct pbuf *p) {
  uint8_t frame[1600];
  u16_t n = pbuf_copy_partial(p, frame, sizeof frame, 0);
  (void)netif;
  if (write(hcl_tap_fd, frame, n) < 0 && errno != EAGAIN && !hcl_tap_errno) {
    hcl_tap_errno = errno;
  }
  return ERR_OK;
}

static err_t netif_setup(struct netif *netif) {
  netif->name[0] = 'h';
  netif->name[1] = 'c';
  netif->mtu = 1500;
#if LWIP_IPV6 && LWIP_ND6_ALLOW_RA_UPDATES
  netif->mtu6 = 1500;
#endif
  netif->hwaddr_len = ETH_HWADDR_LEN;
  /* NETIF_FLAG_MLD6: lwIP joins an address's solicited-node group, without which it
   * drops the peer's neighbour solicitations (ip6.c, ip6_input), only with MLD on. */
  netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_MLD6;
  netif->output = etharp_output;
  netif->output_ip6 = ethip6_output;
  netif->linkoutput = linkoutput;
  return ERR_OK;
}

static void to_ip(ip_addr_t *ip, const uint8_t *bytes, int v6) {
  if (v6) {
    IP_ADDR6(ip, 0, 0, 0, 0);
    memcpy(ip_2_ip6(ip)->addr, bytes, 16);
    ip6_addr_clear_zone(ip_2_ip6(ip));
  } else {
    IP_ADDR4(ip, bytes[0], bytes[1], bytes[2], bytes[3]);
  }
}

static void from_ip(const ip_addr_t *ip, uint8_t *bytes, int *v6) {
  *v6 = IP_IS_V6(ip);
  if (*v6) {
    memcpy(bytes, ip_2_ip6(ip)->addr, 16);
  } else {
    memcpy(bytes, &ip_2_ip4(ip)->addr, 4);
  }
}

int hcl_configure(const uint8_t mac[6]) {
  if (hcl_configured) {
    memcpy(hcl_netif.hwaddr, mac, 6);
    return 0;
  }
  if (!netif_add(&hcl_netif, NULL, NULL, NULL, NULL, netif_setup, ethernet_input)) {
    return -1;
  }
  memcpy(hcl_netif.hwaddr, mac, 6);
  netif_set_default(&hcl_netif);
  /* Addresses are given, not learnt: no SLAAC, no router solicitations. */
  hcl_netif.ip6_autoconfig_enabled = 0;
  netif_set_up(&hcl_netif);
  netif_set_link_up(&hcl_netif);
  hcl_netif.rs_count = 0;
  hcl_configured = 1;
  return 0;
}

int hcl_add_v4(const uint8_t addr[4], uint8_t prefix) {
  ip4_addr_t ip, mask;
  u32_t m = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
  IP4_ADDR(&ip, addr[0], addr[1], addr[2], addr[3]);
  ip4_addr_set_u32(&mask, lwip_htonl(m));
  netif_set_addr(&hcl_netif, &ip, &mask, netif_ip4_gw(&hcl_netif));
  return 0;
}

int hcl_set_gw4(const uint8_t addr[4]) {
  ip4_addr_t gw;
  IP4_ADDR(&gw, addr[0], addr[1], addr[2], addr[3]);
  netif_set_gw(&hcl_netif, &gw);
  return 0;
}

/* The address is valid at once (DAD would hold it tentative for a second). */
int hcl_add_v6(const uint8_t addr[16]) {
  ip6_addr_t ip;
  s8_t idx;
  memcpy(ip.addr, addr, 16);
  ip6_addr_clear_zone(&ip);
  if (netif_add_ip6_address(&hcl_netif, &ip, &idx) != ERR_OK) {
    return -1;
  }
  netif_ip6_addr_set_state(&hcl_netif, idx, IP6_ADDR_PREFERRED);
  return 0;
}

/* One frame from the TAP into the stack: 1 done, 0 nothing waiting, -errno on failure. */
int hcl_input_one(void) {
  uint8_t frame[1600];
  ssize_t n = read(hcl_tap_fd, frame, sizeof frame);
  struct pbuf *p;
  if (n < 0) {
    return errno == EAGAIN || errno == EINTR ? 0 : -errno;
  }
  if (n == 0) {
    return 0;
  }
  if (!hcl_configured) {
    return 1; /* frames are processed only after the first `configure` */
  }
  /* PBUF_RAM, not the PBUF_POOL a driver would use: in Debian's liblwip 2.1.3 a pool pbuf
   * is allocated smaller (616 bytes) than the length pbuf_alloc() gives it for a full
   * frame, and pbuf_take() writes past it (found with valgrind). One exact block is safe. */
  p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
  if (p == NULL) {
    return 1; /* dropped, as a NIC out of buffers would */
  }
  pbuf_take(p, frame, (u16_t)n);
  if (hcl_netif.input(p, &hcl_netif) != ERR_OK) {
    pbuf_free(p);
  }
  return 1;
}

int hcl_tap_error(void) { return hcl_tap_errno; }

void hcl_check_timeouts(void) { sys_check_timeouts(); }

/* Milliseconds until lwIP's next timeout, or -1 for none. */
int64_t hcl_sleeptime(void) {
  u32_t t = sys_timeouts_sleeptime();
  return t == SYS_TIMEOUTS_SLEEPTIME_INFINITE ? -1 : (int64_t)t;
}

/* ---- Connections ---- */

struct hcl_conn {
  struct tcp_pcb *pcb;   /* NULL once lwIP freed it (err callback) or it was handed over */
  struct pbuf *rx;       /* received and not yet read */
  int fin;               /* the peer's FIN has arrived */
  int err;               /* the err_t lwIP reported when it freed the pcb, 0 if none */
  int connected;         /* connect() completed */
  /* A listener's connections that completed the handshake and await accept(). */
  struct hcl_conn *queue_head, *queue_tail, *queue_next;
};

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  struct hcl_conn *c = arg;
  (void)pcb;
  (void)err;
  if (p == NULL) {
    c->fin = 1;
  } else if (c->rx == NULL) {
    c->rx = p;
  } else {
    pbuf_cat(c->rx, p);
  }
  return ERR_OK;
}

static void on_err(void *arg, err_t err) {
  struct hcl_conn *c = arg;
  c->pcb = NULL; /* lwIP has freed it */
  c->err = err;
}

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err) {
  struct hcl_conn *c = arg;
  (void)pcb;
  (void)err;
  c->connected = 1;
  return ERR_OK;
}

static void attach(struct hcl_conn *c, struct tcp_pcb *pcb) {
  c->pcb = pcb;
  tcp_arg(pcb, c);
  tcp_recv(pcb, on_recv);
  tcp_err(pcb, on_err);
}

static err_t on_accept(void *arg, struct tcp_pcb *newpcb, err_t err) {
  struct hcl_conn *l = arg, *c;
  if (err != ERR_OK || newpcb == NULL) {
    return ERR_VAL;
  }
  c = calloc(1, sizeof *c);
  if (c == NULL) {
    return ERR_MEM; /* lwIP aborts the connection */
  }
  attach(c, newpcb);
  if (l->queue_tail) {
    l->queue_tail->queue_next = c;
  } else {
    l->queue_head = c;
  }
  l->queue_tail = c;
  return ERR_OK;
}

struct hcl_conn *hcl_new(int v6) {
  struct hcl_conn *c = calloc(1, sizeof *c);
  struct tcp_pcb *pcb;
  if (c == NULL) {
    return NULL;
  }
  pcb = tcp_new_ip_type(v6 ? IPADDR_TYPE_V6 : IPADDR_TYPE_V4);
  if (pcb == NULL) {
    free(c);
    return NULL;
  }
  attach(c, pcb);
  return c;
}

int hcl_bind(struct hcl_conn *c, const uint8_t *addr, int v6, uint16_t port) {
  ip_addr_t ip;
  to_ip(&ip, addr, v6);
  return c->pcb ? tcp_bind(c->pcb, &ip, port) : ERR_CLSD;
}

int hcl_listen(struct hcl_conn *c, uint8_t backlog) {
  err_t err = ERR_CONN;
  struct tcp_pcb *lpcb;
  if (c->pcb == NULL) {
    return ERR_CLSD;
  }
  lpcb = tcp_listen_with_backlog_and_err(c->pcb, backlog, &err);
  if (lpcb == NULL) {
    return err;
  }
  /* The listen pcb replaces (and frees) the one given. */
  c->pcb = lpcb;
  tcp_arg(lpcb, c);
  tcp_accept(lpcb, on_accept);
  return ERR_OK;
}

int hcl_is_listening(const struct hcl_conn *c) { return c->pcb && c->pcb->state == LISTEN; }

struct hcl_conn *hcl_accept(struct hcl_conn *l) {
  struct hcl_conn *c = l->queue_head;
  if (c) {
    l->queue_head = c->queue_next;
    if (l->queue_head == NULL) {
      l->queue_tail = NULL;
    }
    c->queue_next = NULL;
  }
  return c;
}

int hcl_connect(struct hcl_conn *c, const uint8_t *addr, int v6, uint16_t port) {
  ip_addr_t ip;
  to_ip(&ip, addr, v6);
  return c->pcb ? tcp_connect(c->pcb, &ip, port, on_connected) : ERR_CLSD;
}

int hcl_state(const struct hcl_conn *c) { return c->pcb ? (int)c->pcb->state : CLOSED; }
int hcl_err(const struct hcl_conn *c) { return c->err; }
int hcl_connected(const struct hcl_conn *c) { return c->connected; }
int hcl_fin(const struct hcl_conn *c) { return c->fin; }
size_t hcl_rx_len(const struct hcl_conn *c) { return c->rx ? c->rx->tot_len : 0; }

/* Queues up to len bytes (fewer when the send buffer or queue is short), and sends. Returns
 * the count or a negative err_t. */
long hcl_write(struct hcl_conn *c, const uint8_t *data, size_t len) {
  u16_t room;
  err_t err;
  if (c->pcb == NULL) {
    return ERR_CLSD;
  }
  room = tcp_sndbuf(c->pcb);
  if (len > room) {
    len = room;
  }
  while (len > 0) {
    err = tcp_write(c->pcb, data, (u16_t)len, TCP_WRITE_FLAG_COPY);
    if (err == ERR_OK) {
      break;
    }
    if (err != ERR_MEM) {
      return err;
    }
    len /= 2; /* the segment queue is full for this much: try less */
  }
  if (len > 0) {
    tcp_output(c->pcb);
  }
  return (long)len;
}

/* Takes up to max bytes of what was received, and opens the window by as much. */
size_t hcl_read(struct hcl_conn *c, uint8_t *buf, size_t max) {
  size_t n = hcl_rx_len(c);
  if (n > max) {
    n = max;
  }
  if (n == 0) {
    return 0;
  }
  pbuf_copy_partial(c->rx, buf, (u16_t)n, 0);
  c->rx = pbuf_free_header(c->rx, (u16_t)n);
  if (c->pcb) {
    tcp_recved(c->pcb, (u16_t)n);
  }
  return n;
}

static void detach(struct tcp_pcb *pcb) {
  tcp_arg(pcb, NULL);
  if (pcb->state == LISTEN) {
    tcp_accept(pcb, NULL); /* a listen pcb has no other callbacks (tcp.c asserts so) */
    return;
  }
  tcp_recv(pcb, NULL);
  tcp_err(pcb, NULL);
  tcp_sent(pcb, NULL);
}

int hcl_shutdown(struct hcl_conn *c, int rx, int tx) {
  struct tcp_pcb *pcb = c->pcb;
  err_t err;
  if (pcb == NULL) {
    return ERR_CLSD;
  }
  if (rx && c->rx) {
    /* Unread data is thrown away, as lwIP's netconn layer does on SHUT_RD. */
    pbuf_free(c->rx);
    c->rx = NULL;
  }
  if (!(rx && tx)) {
    return tcp_shutdown(pcb, rx, tx);
  }
  /* Both halves: for the raw API that is tcp_close() (tcp.c, tcp_shutdown), which may free
   * the pcb (SYN_SENT, or an RST for unread data) without a callback, so the pcb is handed
   * over first, as lwIP's netconn layer does for SHUT_RDWR. */
  detach(pcb);
  err = tcp_shutdown(pcb, 1, 1);
  if (err != ERR_OK) {
    attach(c, pcb);
    return err;
  }
  c->pcb = NULL;
  return ERR_OK;
}

/* close(): the pcb lives on as an orphan that lwIP takes through FIN_WAIT/TIME_WAIT (or
 * resets, with data unread), or is aborted (SO_LINGER 0). A listener's connections nobody
 * accepted are aborted. The conn is freed. */
int hcl_close(struct hcl_conn *c, int abort) {
  err_t err = ERR_OK;
  struct hcl_conn *q;
  while ((q = hcl_accept(c)) != NULL) {
    hcl_close(q, 1);
  }
  if (c->rx) {
    /* Dropped without tcp_recved(): the window still counts them, so tcp_close() sends an
     * RST for unread data (tcp.c, tcp_close_shutdown) as lwIP's own sockets do. */
    pbuf_free(c->rx);
    c->rx = NULL;
  }
  if (c->pcb) {
    struct tcp_pcb *pcb = c->pcb;
    detach(pcb);
    if (abort) {
      tcp_abort(pcb);
    } else {
      err = tcp_close(pcb);
      if (err != ERR_OK) {
        tcp_abort(pcb); /* out of memory for the FIN: lwIP's netconn would retry */
      }
    }
  }
  free(c);
  return err;
}

void hcl_set_nodelay(struct hcl_conn *c, int on) {
  if (c->pcb == NULL || c->pcb->state == LISTEN) {
    return;
  }
  if (on) {
    tcp_nagle_disable(c->pcb);
  } else {
    tcp_nagle_enable(c->pcb);
  }
}

void hcl_set_keepalive(struct hcl_conn *c, int on, uint32_t idle_ms) {
  if (c->pcb == NULL) {
    return;
  }
  if (on) {
    ip_set_option(c->pcb, SOF_KEEPALIVE);
  } else {
    ip_reset_option(c->pcb, SOF_KEEPALIVE);
  }
  if (c->pcb->state != LISTEN) {
    c->pcb->keep_idle = idle_ms;
  }
}

/* Every connection lwIP has (orphans included; listeners and unconnected pcbs are not
 * connections), at most max of them. Returns how many there are. */
size_t hcl_pcbs(struct hcl_pcb_info *out, size_t max) {
  struct tcp_pcb *lists[2] = {tcp_active_pcbs, tcp_tw_pcbs};
  size_t n = 0;
  for (int i = 0; i < 2; i++) {
    for (struct tcp_pcb *p = lists[i]; p != NULL; p = p->next, n++) {
      if (n < max) {
        struct hcl_pcb_info *o = &out[n];
        o->id = (uintptr_t)p;
        o->state = (int)p->state;
        from_ip(&p->local_ip, o->local, &o->v6);
        from_ip(&p->remote_ip, o->remote, &o->v6);
        o->local_port = p->local_port;
        o->remote_port = p->remote_port;
      }
    }
  }
  return n;
}
