/* SPDX-License-Identifier: MIT */
/*
 * The meshgate config file (libconfig syntax), read by both the control
 * process and the dataplane; each uses its part. config/meshgate.conf is the
 * commented reference of every setting.
 *
 * Loading is all or nothing: a bad file gives one error line of the form
 *   <file>:<line>: <setting path>: <reason>
 * e.g. `/etc/meshgate/mg0.conf:12: dataplane.ports.[1].role: expected "wan"
 * or "lan", got "foo"`, and *out is left zeroed. Unknown settings are errors.
 * Error messages never contain key material.
 */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "types.h"

#define MG_MAX_PORTS 8
#define MG_MAX_STUN_SERVERS 8
#define MG_MAX_DERP_REGIONS 16

enum mg_port_role { MG_PORT_WAN, MG_PORT_LAN };

struct mg_route_conf {
	struct mg_prefix prefix; /* host bits masked off */
	struct mg_sockaddr via;	 /* next hop, port 0; same family as prefix, on-link */
};

/* A DERP region: a relay this node may connect to (control.derp_regions). */
struct mg_derp_region_conf {
	uint32_t id;		   /* 1..65535, the port of its DERP endpoint 127.3.3.40:id */
	struct mg_sockaddr server; /* the relay's TCP address; only its port with a host */
	char host[254];		   /* the relay's DNS name, resolved at each connect; "" numeric */
	uint8_t public_key[32];	   /* the relay's key when pinned */
	bool pinned;		   /* public_key was given: refuse a relay with another */
	bool tls;		   /* HTTPS: the relay's certificate is verified */
	char server_name[254];	   /* TLS: SNI and the name the certificate must carry;
				    * "": host, or without one the server's IP */
	char ca_file[4096];	   /* TLS: "" = the system's CAs */
};

struct mg_stun_server_conf {
	struct mg_sockaddr server; /* the server's UDP address; only its port with a host */
	char host[254];		   /* its DNS name, resolved every round; "" numeric */
};

/* flow_log: per-flow records of the tunnel's traffic, written by control. */
struct mg_flow_log_conf {
	char file[4096];    /* JSON lines appended here; "" = flow logs off */
	uint32_t interval;  /* seconds: at most one record per flow and interval */
	uint32_t max_flows; /* flows tracked per worker; more are counted, not logged */
};

struct mg_port_conf {
	char name[32];
	char device[256]; /* EAL device string, e.g. "net_af_packet0,iface=veth0" */
	enum mg_port_role role;
	struct mg_prefix addrs[8]; /* interface addresses: host bits KEPT ("198.18.0.1/24") */
	int n_addrs;
	struct mg_sockaddr gateway4, gateway6; /* family 0 = unset */
	uint16_t mtu;
	struct mg_route_conf *routes;
	int n_routes;
};

struct mg_peer_conf {
	char name[64]; /* optional label, "" if unset */
	uint8_t public_key[32];
	bool has_psk; /* only ever set with MG_CONFIG_LOAD_KEYS */
	uint8_t psk[32];
	struct mg_sockaddr endpoint; /* family 0 = unset */
	uint16_t persistent_keepalive;
	struct mg_prefix *allowed_ips; /* host bits masked off */
	int n_allowed_ips;
	/* Benchmarks only: the dataplane skips this peer's replay window, so a
	 * capture of its data packets can be replayed in a loop. Refused unless
	 * testing.allow_benchmark_no_replay is set. */
	bool benchmark_no_replay;
};

enum mg_crypto_backend { MG_CRYPTO_IPSEC_MB, MG_CRYPTO_CRYPTODEV };

/* dataplane.snat: source NAT of tunnel traffic into the LAN (snat.h). */
struct mg_snat_conf {
	bool enabled;		     /* default true */
	uint16_t port_min, port_max; /* NAT ports, split evenly among workers */
	uint32_t max_entries;	     /* bound on entries, all workers together */
	/* Idle timeouts, seconds. */
	uint32_t tcp_established_timeout, tcp_transitory_timeout, udp_timeout, icmp_timeout;
};

/* Protocol timers in seconds; the WG_* defaults unless testing.* set any. */
struct mg_timers_conf {
	uint32_t rekey_after_time, reject_after_time, keepalive_timeout, rekey_timeout;
	bool overridden; /* some testing.* timer was set: the caller logs it loudly */
};

/*
 * coordination: follow a coordination server (docs/coord-protocol.md,
 * control/coord*.c). The node key then comes from the state file, not
 * private_key_file.
 */
struct mg_coord_conf {
	bool enabled;		  /* the group is present */
	char server[512];	  /* "https://..."; "" = wait for `meshgate up` */
	char auth_key_file[4096]; /* "" if unset */
	bool has_auth_key;	  /* only with MG_CONFIG_LOAD_KEYS, and if the file exists */
	char auth_key[256];	  /* pre-auth key ("mgk-..."); never logged */
	char state_dir[4096];	  /* default /var/lib/meshgate */
	char hostname[64];	  /* default: meshgate.name */
	struct mg_prefix *routes; /* advertise_routes, host bits masked off */
	int n_routes;
	char ca_file[4096]; /* "" = the system's CAs */
};

struct mg_config {
	char path[4096];
	char name[16];
	char private_key_file[4096]; /* "" if unset */
	bool has_private_key;	     /* only ever set with MG_CONFIG_LOAD_KEYS */
	uint8_t private_key[32];
	uint16_t listen_port;
	uint16_t mtu;
	uint32_t max_peers;
	char run_dir[256];
	int log_level; /* LOG_ERR..LOG_DEBUG syslog numbers */

	char **eal_args; /* n_eal_args strings, then NULL; NULL if none */
	int n_eal_args;
	int main_lcore;
	int workers[64];
	int n_workers;
	uint32_t mbufs;
	uint32_t burst;
	/* A worker that found nothing to do for DP_IDLE_POLLS polls in a row
	 * sleeps this long before the next (0: it never sleeps, the poll-mode
	 * default), so workers on shared cores give their CPU back when idle. */
	uint32_t idle_sleep_us;
	enum mg_crypto_backend crypto;
	char cryptodev[128]; /* "" if unset */
	bool mss_clamp;      /* clamp the MSS of TCP SYNs entering the tunnel to the MTU */
	struct mg_port_conf ports[MG_MAX_PORTS];
	int n_ports;
	struct mg_snat_conf snat;
	struct mg_flow_log_conf flow_log;

	struct mg_peer_conf *peers;
	int n_peers;

	struct mg_sockaddr metrics_listen; /* family 0 = unset */
	char policy_file[4096];            /* ACL policy (JSON); "" = no policy, allow all */
	/* STUN servers asked for our public endpoint (control/stun.c); none: off. */
	struct mg_stun_server_conf stun_servers[MG_MAX_STUN_SERVERS];
	int n_stun_servers;
	uint32_t stun_interval; /* seconds between rounds */
	/* DERP relays (control/derp.c), by region; the home region is the one
	 * this node is reachable at and advertises. None: no relaying. */
	struct mg_derp_region_conf derp_regions[MG_MAX_DERP_REGIONS];
	int n_derp_regions;
	uint32_t derp_home; /* a region id; 0: the region of least latency (derp.c) */
	/* TLS regions from the coordination server's map: verified against this
	 * file's CAs ("": the system's). */
	char derp_ca_file[4096];
	struct mg_timers_conf timers;
	bool allow_benchmark_no_replay; /* testing.*: peers may set benchmark_no_replay */
	struct mg_coord_conf coord;
	bool coord_insecure_http; /* testing.*: allow http:// coordination servers */
};

/* Read private_key_file and every peer's preshared_key_file (control only). */
#define MG_CONFIG_LOAD_KEYS 1u

/* Returns 0, or -errno with the one-line reason in err. */
int mg_config_load(const char *path, unsigned flags, struct mg_config *out, char *err,
		   size_t errlen);
/* The same from text; name stands for the file name in messages. */
int mg_config_load_string(const char *text, const char *name, unsigned flags, struct mg_config *out,
			  char *err, size_t errlen);
/* The validation core both of the above use, on an already parsed config_t. */
int mg_config_parse(const config_t *cf, const char *name, unsigned flags, struct mg_config *out,
		    char *err, size_t errlen);
/* Frees what the load allocated and zeroes *c, key material included. */
void mg_config_free(struct mg_config *c);
/* Why url is no coordination server URL (a static string), or NULL if it is one. */
const char *mg_config_coord_url_check(const char *url, bool insecure_http);
/* Index of the first port with that role, or -1. */
int mg_config_port(const struct mg_config *c, enum mg_port_role role);

#endif /* MG_CONFIG_H */
