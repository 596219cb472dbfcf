/* The flat C API of glue.c, mirrored by src/lwip.rs. */
#include <stddef.h>
#include <stdint.h>

struct hcl_conn;

struct hcl_pcb_info {
  uintptr_t id;
  int state; /* enum tcp_state */
  int v6;
  uint8_t local[16], remote[16];
  uint16_t local_port, remote_port;
};
