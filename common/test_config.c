// SPDX-License-Identifier: MIT
/*
 * Config loader tests.
 *
 *  - bad_cases: one bad file each, written to a temp dir, with the exact
 *    error expected; "@" in the expectation stands for the file's path, so
 *    every case also pins the line number and the setting path.
 *  - good configs round-trip their values; defaults fill what is unset.
 *  - key files: mode 0644/0640 refused, 0600/0400 accepted, and the key
 *    never shows up in any error message.
 *  - the shipped config/meshgate.conf (argv[1]) and config/pktgen-memif.conf
 *    (argv[2]) load.
 *  - key encodings (keys.c) table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <sodium.h>

#include "addr.h"
#include "config.h"
#include "keys.h"

static int failures, checks;
static char tmpdir[] = "/tmp/mgcfgtestXXXXXX";

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* A valid meshgate section and a valid dataplane section, one line each. */
#define MG "meshgate: { name = \"mg0\"; };\n"
#define WAN                                                                                        \
	"{ name = \"wan0\"; device = \"net_null0\"; role = \"wan\"; addresses = "                  \
	"[\"198.18.0.1/24\"]; }"
#define DP    "dataplane: { ports = ( " WAN " ); };\n"
#define KEY_A "OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY="
#define KEY_B "xFnK1cCJUHuV3ufT8mAVjC8RZELsdg+ehwfT4+irG2A="

struct bad_case {
	const char *text;
	const char *want; /* the whole message; "@" = the file's path */
};

static const struct bad_case bad_cases[] = {
    /* 1: libconfig syntax errors keep libconfig's wording */
    {"meshgate: { name = \"mg0\"; };\ndataplane: { ports = ( " WAN " ) };\n x = ;\n",
     "@:3: syntax error"},
    /* 2 */
    {MG DP "bogus = 1;\n", "@:3: bogus: unknown setting"},
    /* 3 */
    {"meshgate: {\n name = \"mg0\";\n listen_prot = 1;\n};\n" DP,
     "@:3: meshgate.listen_prot: unknown setting (did you mean \"listen_port\"?)"},
    /* 4 */
    {"meshgate: { mtu = 1420; };\n" DP, "@:1: meshgate.name: required setting missing"},
    /* 5: nothing to point at: no line */
    {DP, "@: meshgate: required setting missing"},
    /* 6 */
    {MG, "@: dataplane: required setting missing"},
    /* 7 */
    {"meshgate: { name = \"mg/0\"; };\n" DP,
     "@:1: meshgate.name: \"mg/0\": only letters, digits, '_', '.' and '-' are allowed"},
    /* 8 */
    {"meshgate: { name = \"abcdefghijklmnop\"; };\n" DP,
     "@:1: meshgate.name: too long (at most 15 characters)"},
    /* 9 */
    {"meshgate: { name = \"\"; };\n" DP, "@:1: meshgate.name: must not be empty"},
    /* 10 */
    {"meshgate: {\n name = \"mg0\";\n listen_port = 70000;\n};\n" DP,
     "@:3: meshgate.listen_port: expected an integer in 1..65535, got 70000"},
    /* 11 */
    {"meshgate: {\n name = \"mg0\";\n listen_port = \"51820\";\n};\n" DP,
     "@:3: meshgate.listen_port: expected an integer, got a string"},
    /* 12 */
    {"meshgate: {\n name = \"mg0\";\n mtu = 1420.5;\n};\n" DP,
     "@:3: meshgate.mtu: expected an integer, got a float"},
    /* 13 */
    {"meshgate: {\n name = \"mg0\";\n mtu = 500;\n};\n" DP,
     "@:3: meshgate.mtu: expected an integer in 576..9000, got 500"},
    /* 14 */
    {"meshgate: {\n name = \"mg0\";\n log_level = \"verbose\";\n};\n" DP,
     "@:3: meshgate.log_level: expected \"error\", \"warn\", \"info\" or \"debug\", got "
     "\"verbose\""},
    /* 15 */
    {"meshgate: {\n name = \"mg0\";\n run_dir = \"run\";\n};\n" DP,
     "@:3: meshgate.run_dir: \"run\": must be an absolute path"},
    /* 16 */
    {"meshgate: {\n name = \"mg0\";\n run_dir = \"/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaa\";\n};\n" DP,
     "@:3: meshgate.run_dir: 105 characters, plus \"/mg0.sock\", is longer than the 107 a "
     "unix socket path allows"},
    /* 17 */
    {"meshgate: {\n name = \"mg0\";\n max_peers = 1;\n};\n" DP "peers = (\n { public_key = \"" KEY_A
     "\"; },\n { public_key = \"" KEY_B "\"; }\n);\n",
     "@:6: peers: 2 peers, more than meshgate.max_peers (1)"},
    /* 18: the example from the spec */
    {MG "dataplane: {\n ports = (\n  " WAN ",\n  { name = \"lan0\"; device = \"net_null1\";\n"
	"    role = \"foo\"; }\n );\n};\n",
     "@:6: dataplane.ports.[1].role: expected \"wan\" or \"lan\", got \"foo\""},
    /* 19 */
    {MG "dataplane: {\n ports = (\n  " WAN ",\n  { name = \"wan1\"; device = \"net_null1\";\n"
	"    role = \"wan\"; addresses = [\"192.0.2.1/24\"]; }\n );\n};\n",
     "@:6: dataplane.ports.[1].role: a second \"wan\" port (dataplane.ports.[0] is one); only "
     "one is supported"},
    /* 20 */
    {MG "dataplane: {\n ports = ( { name = \"lan0\"; device = \"net_null1\"; role = \"lan\"; } "
	");\n};\n",
     "@:3: dataplane.ports: no port has role = \"wan\"; exactly one must"},
    /* 21 */
    {MG "dataplane: {\n ports = (\n  " WAN ",\n  { name = \"wan0\"; device = \"net_null1\";\n"
	"    role = \"lan\"; }\n );\n};\n",
     "@:5: dataplane.ports.[1].name: duplicate port name \"wan0\""},
    /* 22 */
    {MG "dataplane: {\n ports = (\n  " WAN ",\n  { name = \"lan0\";\n device = \"net_null0\";\n"
	"    role = \"lan\"; }\n );\n};\n",
     "@:6: dataplane.ports.[1].device: same device as dataplane.ports.[0]"},
    /* 23 */
    {MG "dataplane: {\n ports = ();\n};\n", "@:3: dataplane.ports: at least one port is required"},
    /* 24 */
    {MG "dataplane: {\n ports = " WAN ";\n};\n",
     "@:3: dataplane.ports: expected a list ( { ... }, ... ), got a group"},
    /* 25 */
    {MG "dataplane: {\n ports = (" WAN "," WAN "," WAN "," WAN "," WAN "," WAN "," WAN "," WAN
	"," WAN ");\n};\n",
     "@:3: dataplane.ports: too many entries (9, at most 8)"},
    /* 26 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1/24\"];\n  rx_queues = 4; } );\n};\n",
     "@:5: dataplane.ports.[0].rx_queues: not configurable: queues are derived from "
     "dataplane.workers"},
    /* 27 */
    {MG "dataplane: {\n main_lcore = 1;\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.main_lcore: lcore 1 is the default worker lcore; set dataplane.workers "
     "too"},
    /* 28 */
    {MG "dataplane: {\n main_lcore = 2;\n workers = [1, 2];\n ports = ( " WAN " );\n};\n",
     "@:4: dataplane.workers: lcore 2 is also dataplane.main_lcore; workers need lcores of "
     "their own"},
    /* 29 */
    {MG "dataplane: {\n workers = [1,\n 3,\n 1];\n ports = ( " WAN " );\n};\n",
     "@:5: dataplane.workers.[2]: lcore 1 is listed twice"},
    /* 30 */
    {MG "dataplane: {\n workers = [];\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.workers: at least one worker lcore is required"},
    /* 31 */
    {MG "dataplane: {\n workers = [1, 2000];\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.workers.[1]: expected an integer in 0..1023, got 2000"},
    /* 32 */
    {MG "dataplane: {\n eal_args = [\"--no-huge\",\n \"-l\", \"0-3\"];\n ports = ( " WAN
	" );\n};\n",
     "@:4: dataplane.eal_args.[1]: \"-l\" sets lcores; use dataplane.main_lcore and "
     "dataplane.workers instead"},
    /* 33 */
    {MG "dataplane: {\n eal_args = [\"--lcores=1@2\"];\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.eal_args.[0]: \"--lcores=1@2\" sets lcores"},
    /* 34 */
    {MG "dataplane: {\n cryptodev = \"crypto_aesni_mb\";\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.cryptodev: only used with crypto = \"cryptodev\""},
    /* 35 */
    {MG "dataplane: {\n crypto = \"openssl\";\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.crypto: expected \"ipsec-mb\" or \"cryptodev\", got \"openssl\""},
    /* 36 */
    {MG "dataplane: {\n burst = 0;\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.burst: expected an integer in 1..128, got 0"},
    /* 36b */
    {MG "dataplane: {\n idle_sleep_us = 2000;\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.idle_sleep_us: expected an integer in 0..1000, got 2000"},
    /* 36c */
    {MG "dataplane: {\n idle_sleep_us = -1;\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.idle_sleep_us: expected an integer in 0..1000, got -1"},
    /* flow 1: the file is required */
    {MG DP "flow_log: {\n interval = 5;\n};\n", "@:3: flow_log.file: required setting missing"},
    /* flow 2 */
    {MG DP "flow_log: {\n file = \"flows.jsonl\";\n};\n",
     "@:4: flow_log.file: \"flows.jsonl\": must be an absolute path"},
    /* flow 3 */
    {MG DP "flow_log: {\n file = \"/tmp/f\";\n interval = 0;\n};\n",
     "@:5: flow_log.interval: expected an integer in 1..3600, got 0"},
    /* flow 4 */
    {MG DP "flow_log: {\n file = \"/tmp/f\";\n max_flows = 100;\n};\n",
     "@:5: flow_log.max_flows: expected an integer in 1024..4194304, got 100"},
    /* flow 5 */
    {MG DP "flow_log: {\n file = \"/tmp/f\";\n intervall = 5;\n};\n",
     "@:5: flow_log.intervall: unknown setting (did you mean \"interval\"?)"},
    /* 37 */
    {MG "dataplane: {\n mbufs = 100;\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.mbufs: expected an integer in 1024..4194304, got 100"},
    /* 38 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\";\n"
	"  role = \"wan\"; } );\n};\n",
     "@:3: dataplane.ports.[0].addresses: a wan port needs at least one address"},
    /* 39 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1\"]; } );\n};\n",
     "@:4: dataplane.ports.[0].addresses.[0]: expected address/prefix-length, got "
     "\"198.18.0.1\""},
    /* 40 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1/24\", \"198.18.0.1/24\"]; } );\n};\n",
     "@:4: dataplane.ports.[0].addresses.[1]: duplicate address \"198.18.0.1/24\""},
    /* 41 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1/24\"];\n  gateway = \"10.0.0.1\"; } );\n};\n",
     "@:5: dataplane.ports.[0].gateway: 10.0.0.1 is not inside any address of port wan0"},
    /* 42 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1/24\"];\n  gateway = \"fd00::1\"; } );\n};\n",
     "@:5: dataplane.ports.[0].gateway: expected an IPv4 address, got \"fd00::1\""},
    /* 43: link-local is always on-link for gateway6 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1/24\", \"2001:db8::1/64\"];\n  gateway6 = \"2001:db9::1\"; "
	"} );\n};\n",
     "@:5: dataplane.ports.[0].gateway6: 2001:db9::1 is not inside any address of port wan0"},
    /* 44 */
    {MG "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
	"  addresses = [\"198.18.0.1/24\", \"2001:db8::1/64\"];\n  mtu = 1000; } );\n};\n",
     "@:5: dataplane.ports.[0].mtu: 1000 is below 1280, the minimum for IPv6 addresses"},
    /* 45 */
    {MG "dataplane: {\n ports = ( " WAN ",\n { name = \"lan0\"; device = \"net_null1\"; "
	"role = \"lan\";\n  addresses = [\"10.88.0.254/24\"];\n  routes = (\n"
	"   { prefix = \"10.77.0.0/16\"; via = \"10.99.0.1\"; }\n  ); } );\n};\n",
     "@:7: dataplane.ports.[1].routes.[0].via: 10.99.0.1 is not inside any address of port "
     "lan0"},
    /* 46 */
    {MG "dataplane: {\n ports = ( " WAN ",\n { name = \"lan0\"; device = \"net_null1\"; "
	"role = \"lan\";\n  addresses = [\"10.88.0.254/24\"];\n  routes = (\n"
	"   { prefix = \"fd77::/48\";\n via = \"10.88.0.1\"; }\n  ); } );\n};\n",
     "@:8: dataplane.ports.[1].routes.[0].via: must be of the same address family as prefix"},
    /* 47 */
    {MG "dataplane: {\n ports = ( " WAN ",\n { name = \"lan0\"; device = \"net_null1\"; "
	"role = \"lan\";\n  addresses = [\"10.88.0.254/24\"];\n  routes = (\n"
	"   { via = \"10.88.0.1\"; }\n  ); } );\n};\n",
     "@:7: dataplane.ports.[1].routes.[0].prefix: required setting missing"},
    /* 48 */
    {MG DP "peers = (\n { name = \"x\"; }\n);\n",
     "@:4: peers.[0].public_key: required setting missing"},
    /* 49: a bad key is never quoted: it could be a private key pasted by mistake */
    {MG DP "peers = (\n { public_key = \"" KEY_A "x\"; }\n);\n",
     "@:4: peers.[0].public_key: not a base64 key (44 characters, as printed by wg pubkey)"},
    /* 50 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\"; },\n { public_key = \"" KEY_B "\"; },\n"
	   " { public_key = \"" KEY_A "\"; }\n);\n",
     "@:6: peers.[2].public_key: same key as peers.[0]"},
    /* 51 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  allowed_ips = [\"10.0.0.1/32\",\n"
	   "  \"10.0.0.300/32\"]; }\n);\n",
     "@:6: peers.[0].allowed_ips.[1]: expected an address with an optional /prefix-length, "
     "got \"10.0.0.300/32\""},
    /* 52 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  endpoint = \"198.18.0.2\"; }\n);\n",
     "@:5: peers.[0].endpoint: expected \"ipv4:port\" or \"[ipv6]:port\" (port 1..65535), got "
     "\"198.18.0.2\""},
    /* 53 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  persistent_keepalive = -1; }\n);\n",
     "@:5: peers.[0].persistent_keepalive: expected an integer in 0..65535, got -1"},
    /* 54 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  allowed_ip = [\"10.0.0.1/32\"]; }\n);\n",
     "@:5: peers.[0].allowed_ip: unknown setting (did you mean \"allowed_ips\"?)"},
    /* 55 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  preshared_key_file = \"psk\"; }\n);\n",
     "@:5: peers.[0].preshared_key_file: \"psk\": must be an absolute path"},
    /* 56 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  allowed_ips = \"10.0.0.1/32\"; }\n);\n",
     "@:5: peers.[0].allowed_ips: expected an array of strings, got a string"},
    /* 57 */
    {MG DP "peers = {\n};\n", "@:3: peers: expected a list ( { ... }, ... ), got a group"},
    /* 58 */
    {"meshgate: {\n name = \"mg0\";\n mtu = 1200;\n};\n" DP "peers = (\n { public_key = \"" KEY_A
     "\";\n  allowed_ips = [\"10.0.0.1/32\", \"fd00::1/128\"]; }\n);\n",
     "@:3: meshgate.mtu: 1200 is below 1280, the minimum for IPv6, but peers.[0].allowed_ips "
     "has IPv6 prefixes"},
    /* 59 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  name = \"" /* 64 chars */
	   "0123456789012345678901234567890123456789012345678901234567890123\"; }\n);\n",
     "@:5: peers.[0].name: too long (at most 63 characters)"},
    /* 60 */
    {MG DP "control: {\n metrics_listen = \"127.0.0.1\";\n};\n",
     "@:4: control.metrics_listen: expected \"ipv4:port\" or \"[ipv6]:port\" (port 1..65535), "
     "got \"127.0.0.1\""},
    /* 61 */
    {MG DP "testing: {\n rekey_after_time = 200;\n};\n",
     "@:3: testing.reject_after_time: must be greater than rekey_after_time (200)"},
    /* 62 */
    {MG DP "testing: {\n rekey_timeout = 0;\n};\n",
     "@:4: testing.rekey_timeout: expected an integer in 1..86400, got 0"},
    /* 63: control characters are escaped, long values cut */
    {MG "dataplane: {\n crypto = \"a\\nb\";\n ports = ( " WAN " );\n};\n",
     "@:3: dataplane.crypto: expected \"ipsec-mb\" or \"cryptodev\", got \"a\\x0ab\""},
    /* 64 */
    {MG
     "dataplane: {\n ports = ( { name = \"wan0\"; device = \"net_null0\"; role = \"wan\";\n"
     "  addresses = [\"198.18.0.1/24\"];\n  gateway6 = \"fe80::1\";\n  tx_queues = 1; } );\n};\n",
     "@:6: dataplane.ports.[0].tx_queues: not configurable"},
    /* 65 */
    {"meshgate = \"mg0\";\n" DP, "@:1: meshgate: expected a group { ... }, got a string"},
    /* 66: no replay window only with the testing switch */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  benchmark_no_replay = true; }\n);\n",
     "@:5: peers.[0].benchmark_no_replay: disables replay protection: only for benchmarks, and "
     "only with testing.allow_benchmark_no_replay = true"},
    /* 67: the switch must be on, not just present; the testing group may come first */
    {MG DP "testing: { allow_benchmark_no_replay = false; };\npeers = (\n { public_key = \"" KEY_A
	   "\"; },\n { public_key = \"" KEY_B "\";\n  benchmark_no_replay = true; }\n);\n",
     "@:7: peers.[1].benchmark_no_replay: disables replay protection"},
    /* 68 */
    {MG DP "peers = (\n { public_key = \"" KEY_A "\";\n  benchmark_no_replay = 1; }\n);\n"
	   "testing: { allow_benchmark_no_replay = true; };\n",
     "@:5: peers.[0].benchmark_no_replay: expected true or false, got an integer"},
    /* 69 */
    {MG DP "testing: {\n allow_benchmark_no_replay = \"yes\";\n};\n",
     "@:4: testing.allow_benchmark_no_replay: expected true or false, got a string"},
    /* snat 1 */
    {MG "dataplane: {\n ports = ( " WAN
	" );\n snat = { port_min = 50000;\n port_max = 40000; };\n};\n",
     "@:4: dataplane.snat.port_min: 50000 is greater than port_max (40000)"},
    /* snat 2 */
    {MG "dataplane: {\n ports = ( " WAN " );\n snat = { enable = false; };\n};\n",
     "@:4: dataplane.snat.enable: unknown setting (did you mean \"enabled\"?)"},
    /* snat 3 */
    {MG "dataplane: {\n ports = ( " WAN " );\n snat = { port_min = 80; };\n};\n",
     "@:4: dataplane.snat.port_min: expected an integer in 1024..65535, got 80"},
    /* snat 4 */
    {MG "dataplane: {\n workers = [1, 2, 3];\n ports = ( " WAN " );\n"
	" snat = { port_min = 40000; port_max = 40001; };\n};\n",
     "@:5: dataplane.snat.port_max: 2 NAT ports for 3 workers; each worker needs at least one"},
    /* snat 5 */
    {MG "dataplane: {\n ports = ( " WAN " );\n snat = { enabled = \"yes\"; };\n};\n",
     "@:4: dataplane.snat.enabled: expected true or false, got a string"},
    /* snat 6 */
    {MG "dataplane: {\n ports = ( " WAN " );\n snat = { udp_timeout = 0; };\n};\n",
     "@:4: dataplane.snat.udp_timeout: expected an integer in 1..86400, got 0"},
    /* snat 7 */
    {MG "dataplane: {\n workers = [1, 2];\n ports = ( " WAN " );\n"
	" snat = {\n max_entries = 1; };\n};\n",
     "@:6: dataplane.snat.max_entries: 1 entries for 2 workers; each worker needs at least one"},
    /* snat 8 */
    {MG "dataplane: {\n ports = ( " WAN " );\n snat = true;\n};\n",
     "@:4: dataplane.snat: expected a group { ... }, got a boolean"},
    /* stun 1: the port is required */
    {MG DP "control: {\n stun_servers = [\"198.51.100.1:3478\",\n  \"198.51.100.2\"];\n};\n",
     "@:5: control.stun_servers.[1]: expected \"ipv4:port\", \"[ipv6]:port\" or \"name:port\" "
     "(port 1..65535), got \"198.51.100.2\""},
    /* stun 2: a name must be a DNS name */
    {MG DP "control: {\n stun_servers = [\"stun_1.example.com:3478\"];\n};\n",
     "@:4: control.stun_servers.[0]: expected \"ipv4:port\", \"[ipv6]:port\" or \"name:port\" "
     "(port 1..65535), got \"stun_1.example.com:3478\""},
    /* stun 2b: names are compared without case */
    {MG DP
     "control: {\n stun_servers = [\"stun.example.com:3478\",\n  \"STUN.example.com:3478\"];\n};\n",
     "@:5: control.stun_servers.[1]: duplicate entry \"STUN.example.com:3478\""},
    /* stun 2c: the port is required with a name too */
    {MG DP "control: {\n stun_servers = [\"stun.example.com\"];\n};\n",
     "@:4: control.stun_servers.[0]: expected \"ipv4:port\", \"[ipv6]:port\" or \"name:port\" "
     "(port 1..65535), got \"stun.example.com\""},
    /* stun 3: IPv6 needs brackets */
    {MG DP "control: {\n stun_servers = [\"2001:db8::1:3478\"];\n};\n",
     "@:4: control.stun_servers.[0]: expected \"ipv4:port\", \"[ipv6]:port\" or \"name:port\" "
     "(port 1..65535), got \"2001:db8::1:3478\""},
    /* stun 4 */
    {MG DP "control: {\n stun_servers = [\"198.51.100.1:3478\", \"198.51.100.1:3478\"];\n};\n",
     "@:4: control.stun_servers.[1]: duplicate entry \"198.51.100.1:3478\""},
    /* stun 5 */
    {MG DP
     "control: {\n stun_servers = [\"192.0.2.1:1\", \"192.0.2.2:1\", \"192.0.2.3:1\",\n"
     "  \"192.0.2.4:1\", \"192.0.2.5:1\", \"192.0.2.6:1\", \"192.0.2.7:1\", \"192.0.2.8:1\",\n"
     "  \"192.0.2.9:1\"];\n};\n",
     "@:4: control.stun_servers: too many entries (9, at most 8)"},
    /* stun 6 */
    {MG DP "control: {\n stun_servers = \"198.51.100.1:3478\";\n};\n",
     "@:4: control.stun_servers: expected an array of \"host:port\" strings, got a string"},
    /* stun 7 */
    {MG DP "control: {\n stun_servers = [3478];\n};\n",
     "@:4: control.stun_servers.[0]: expected a string, got an integer"},
    /* stun 8 */
    {MG DP "control: {\n stun_interval = 4;\n};\n",
     "@:4: control.stun_interval: expected an integer in 5..3600, got 4"},
    /* stun 9 */
    {MG DP "control: {\n stun_interval = 3601;\n};\n",
     "@:4: control.stun_interval: expected an integer in 5..3600, got 3601"},
    /* derp 1 */
    {MG DP "control: {\n derp_regions = ( { server = \"198.51.100.9:3340\"; } );\n};\n",
     "@:4: control.derp_regions.[0]: a DERP region needs an id (1..65535)"},
    /* derp 2 */
    {MG DP "control: {\n derp_regions = ( { id = 1; } );\n};\n",
     "@:4: control.derp_regions.[0].server: required setting missing"},
    /* derp 3 */
    {MG DP "control: {\n derp_regions = ( { id = 0; server = \"198.51.100.9:3340\"; } );\n};\n",
     "@:4: control.derp_regions.[0].id: expected an integer in 1..65535, got 0"},
    /* derp 4: a name needs a port */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"derp.example.com\"; } );\n};\n",
     "@:4: control.derp_regions.[0].server: expected \"ipv4:port\", \"[ipv6]:port\" or "
     "\"name:port\" (port 1..65535), got \"derp.example.com\""},
    /* derp 4b */
    {MG DP
     "control: {\n derp_regions = ( { id = 1; server = \"derp_1.example.com:443\"; } );\n};\n",
     "@:4: control.derp_regions.[0].server: expected \"ipv4:port\", \"[ipv6]:port\" or "
     "\"name:port\" (port 1..65535), got \"derp_1.example.com:443\""},
    /* derp 5 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:3340\"; },\n"
	   "  { id = 1; server = \"198.51.100.10:3340\"; } );\n};\n",
     "@:5: control.derp_regions.[1]: duplicate DERP region id 1"},
    /* derp 6 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:3340\"; } );\n"
	   " derp_home = 2;\n};\n",
     "@:5: control.derp_home: 2 is not the id of one of derp_regions"},
    /* derp 7 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:3340\";"
	   " public_key = \"abc\"; } );\n};\n",
     "@:4: control.derp_regions.[0].public_key: not a base64 key (44 characters, as printed by "
     "wg pubkey)"},
    /* derp 8 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:3340\";"
	   " region = 3; } );\n};\n",
     "@:4: control.derp_regions.[0].region: unknown setting"},
    /* derp 9 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:443\";"
	   " server_name = \"derp.example.com\"; } );\n};\n",
     "@:4: control.derp_regions.[0].server_name: only with tls = true"},
    /* derp 10 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:443\"; tls = true;"
	   " server_name = \"derp example\"; } );\n};\n",
     "@:4: control.derp_regions.[0].server_name: \"derp example\": not a DNS name (labels of "
     "letters, digits and '-')"},
    /* derp 10b */
    {MG DP "control: {\n derp_ca_file = \"derp-ca.pem\";\n};\n",
     "@:4: control.derp_ca_file: \"derp-ca.pem\": must be an absolute path"},
    /* derp 11 */
    {MG DP "control: {\n derp_regions = ( { id = 1; server = \"198.51.100.9:443\"; tls = true;"
	   " ca_file = \"ca.pem\"; } );\n};\n",
     "@:4: control.derp_regions.[0].ca_file: \"ca.pem\": must be an absolute path"},
    /* coord 1: plain http needs the testing switch */
    {MG DP "coordination: {\n server = \"http://coord.example\";\n};\n",
     "@:4: coordination.server: \"http://coord.example\": plain http:// only with "
     "testing.coord_insecure_http = true"},
    /* coord 2 */
    {MG DP "coordination: {\n server = \"ftp://coord.example\";\n};\n",
     "@:4: coordination.server: \"ftp://coord.example\": expected an https:// URL"},
    /* coord 3 */
    {MG DP "coordination: {\n server = \"https:///x\";\n};\n",
     "@:4: coordination.server: \"https:///x\": no host in the URL"},
    /* coord 4 */
    {MG DP "coordination: {\n server = \"https://a b\";\n};\n",
     "@:4: coordination.server: \"https://a b\": spaces, quotes or control characters"},
    /* coord 5 */
    {MG DP "coordination: {\n advertise_routes = [\"10.0.0.0/33\"];\n};\n",
     "@:4: coordination.advertise_routes.[0]: expected an address with an optional "
     "/prefix-length, got \"10.0.0.0/33\""},
    /* coord 6 */
    {MG DP "coordination: {\n hostname = \"gw 1\";\n};\n",
     "@:4: coordination.hostname: \"gw 1\": only letters, digits"},
    /* coord 7 */
    {MG DP "coordination: {\n state_dir = \"var/lib\";\n};\n",
     "@:4: coordination.state_dir: \"var/lib\": must be an absolute path"},
    /* coord 8 */
    {MG DP "coordination: {\n auth_key_fil = \"/k\";\n};\n",
     "@:4: coordination.auth_key_fil: unknown setting (did you mean \"auth_key_file\"?)"},
    /* coord 9 */
    {"meshgate: { name = \"mg0\"; private_key_file = \"/k\"; };\n" DP
     "coordination: {\n server = \"https://c.example\";\n};\n",
     "@:1: meshgate.private_key_file: not with coordination: the node key is made and kept in "
     "coordination.state_dir"},
};

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t len = strlen(text);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) < 0) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static void expand(const char *want, const char *path, char *out, size_t len)
{
	const char *at = strchr(want, '@');

	if (!at)
		snprintf(out, len, "%s", want);
	else
		snprintf(out, len, "%.*s%s%s", (int)(at - want), want, path, at + 1);
}

static bool is_zeroed(const struct mg_config *c)
{
	static const struct mg_config zero;

	return !memcmp(c, &zero, sizeof(zero));
}

static void test_bad_configs(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *t = &bad_cases[i];
		char path[256], want[1024], err[1024];
		struct mg_config c;
		int ret;

		snprintf(path, sizeof(path), "%s/bad%zu.conf", tmpdir, i + 1);
		write_file(path, t->text, 0644);
		expand(t->want, path, want, sizeof(want));
		ret = mg_config_load(path, 0, &c, err, sizeof(err));
		if (getenv("VERBOSE"))
			printf("%2zu %s\n", i + 1, err);
		CHECK(ret == -EINVAL, "case %zu: returned %d", i + 1, ret);
		CHECK(!strncmp(err, want, strlen(want)), "case %zu:\n  got  %s\n  want %s", i + 1,
		      err, want);
		CHECK(!strchr(err, '\n'), "case %zu: multi-line error", i + 1);
		CHECK(is_zeroed(&c), "case %zu: config half-loaded", i + 1);
		unlink(path);
	}
}

static void test_missing_file(void)
{
	char err[256], path[256];
	struct mg_config c;

	snprintf(path, sizeof(path), "%s/nope.conf", tmpdir);
	CHECK(mg_config_load(path, 0, &c, err, sizeof(err)) == -ENOENT, "missing file");
	CHECK(strstr(err, path) && strstr(err, "No such file"), "missing file message: %s", err);
	/* libconfig's scanner would exit() the process on the read error. */
	CHECK(mg_config_load(tmpdir, 0, &c, err, sizeof(err)) == -EISDIR, "directory: %s", err);
}

static const char *prefix_str(const struct mg_prefix *p)
{
	static char buf[4][MG_PREFIX_STRLEN];
	static int n;

	return mg_prefix_fmt(p, buf[n++ % 4], MG_PREFIX_STRLEN);
}

static const char *sa_str(const struct mg_sockaddr *sa)
{
	static char buf[4][MG_SOCKADDR_STRLEN];
	static int n;

	return mg_sockaddr_fmt(sa, buf[n++ % 4], MG_SOCKADDR_STRLEN);
}

static void test_defaults(void)
{
	char path[256], err[512];
	struct mg_config c;
	int ret;

	snprintf(path, sizeof(path), "%s/min.conf", tmpdir);
	write_file(path, MG DP, 0644);
	ret = mg_config_load(path, 0, &c, err, sizeof(err));
	CHECK(ret == 0, "minimal config: %s", err);
	if (ret)
		return;
	CHECK(!strcmp(c.path, path) && !strcmp(c.name, "mg0"), "path/name");
	CHECK(c.listen_port == 51820 && c.mtu == 1420 && c.max_peers == 1024, "meshgate defaults");
	CHECK(!strcmp(c.run_dir, "/var/run/wireguard") && c.log_level == LOG_INFO, "run_dir/log");
	CHECK(!c.private_key_file[0] && !c.has_private_key, "no key");
	CHECK(c.n_eal_args == 0 && !c.eal_args && c.main_lcore == 0, "eal defaults");
	CHECK(c.n_workers == 1 && c.workers[0] == 1, "workers default");
	CHECK(!c.flow_log.file[0] && c.flow_log.interval == 10 && c.flow_log.max_flows == 65536,
	      "flow logs off; interval 10 s, 65536 flows");
	CHECK(c.mbufs == 8192 && c.burst == 64 && c.idle_sleep_us == 0 &&
		  c.crypto == MG_CRYPTO_IPSEC_MB && !c.cryptodev[0],
	      "dataplane defaults");
	CHECK(c.n_ports == 1 && c.ports[0].mtu == 1500 && c.ports[0].role == MG_PORT_WAN &&
		  c.ports[0].n_routes == 0 && !c.ports[0].gateway4.family,
	      "port defaults");
	CHECK(c.n_peers == 0 && !c.peers && !c.metrics_listen.family, "no peers");
	CHECK(c.timers.rekey_after_time == 120 && c.timers.reject_after_time == 180 &&
		  c.timers.keepalive_timeout == 10 && c.timers.rekey_timeout == 5 &&
		  !c.timers.overridden,
	      "timer defaults");
	CHECK(!c.allow_benchmark_no_replay, "benchmark switch off by default");
	CHECK(c.n_stun_servers == 0 && c.stun_interval == 25, "STUN off, interval 25 s");
	CHECK(c.snat.enabled && c.snat.port_min == 32768 && c.snat.port_max == 60999 &&
		  c.snat.max_entries == 1048576 && c.snat.tcp_established_timeout == 7200 &&
		  c.snat.tcp_transitory_timeout == 120 && c.snat.udp_timeout == 120 &&
		  c.snat.icmp_timeout == 30,
	      "snat defaults");
	CHECK(mg_config_port(&c, MG_PORT_WAN) == 0 && mg_config_port(&c, MG_PORT_LAN) == -1,
	      "mg_config_port");
	mg_config_free(&c);
	CHECK(is_zeroed(&c), "free zeroes");
	unlink(path);
}

/* @include of peers: relative to the including file's directory, or
 * absolute; the working directory is the same afterwards. */
static void test_include(void)
{
	char dir[300], main_path[400], rel[400], abs_path[400], text[1024], err[512];
	char cwd0[4096], cwd1[4096];
	struct mg_config c;
	uint8_t pk[32], sk[32];
	char k1[45], k2[45];

	snprintf(dir, sizeof(dir), "%s/inc", tmpdir);
	mkdir(dir, 0700);
	crypto_box_keypair(pk, sk), mg_key_to_base64(pk, k1);
	crypto_box_keypair(pk, sk), mg_key_to_base64(pk, k2);
	snprintf(rel, sizeof(rel), "%s/rel.conf", dir);
	snprintf(text, sizeof(text), "{ public_key = \"%s\"; }", k1);
	write_file(rel, text, 0644);
	snprintf(abs_path, sizeof(abs_path), "%s/abs.conf", tmpdir);
	snprintf(text, sizeof(text), "{ public_key = \"%s\"; }", k2);
	write_file(abs_path, text, 0644);
	snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
	snprintf(text, sizeof(text), MG DP "peers = (\n@include \"rel.conf\"\n,\n@include \"%s\"\n);\n",
		 abs_path);
	write_file(main_path, text, 0644);
	if (!getcwd(cwd0, sizeof(cwd0)))
		cwd0[0] = 0;
	int ret = mg_config_load(main_path, 0, &c, err, sizeof(err));
	CHECK(ret == 0 && c.n_peers == 2, "relative and absolute @include: %s", ret ? err : "2 peers");
	CHECK(getcwd(cwd1, sizeof(cwd1)) && !strcmp(cwd0, cwd1), "working directory kept");
	if (!ret)
		mg_config_free(&c);
	unlink(rel);
	unlink(abs_path);
	unlink(main_path);
	rmdir(dir);
}

static const char full_conf[] =
    "meshgate: {\n"
    "  name = \"hub-1.a_b\"; listen_port = 4500; mtu = 1380; max_peers = 10;\n"
    "  run_dir = \"/run/mg\"; log_level = \"debug\";\n"
    "};\n"
    "dataplane: {\n"
    "  eal_args = [\"--no-huge\", \"-m\", \"512\"]; main_lcore = 2; workers = [0, 5, 3];\n"
    "  mbufs = 1024; burst = 48; crypto = \"cryptodev\"; cryptodev = \"crypto_ipsec_mb0\";\n"
    "  idle_sleep_us = 50;\n"
    "  ports = (\n"
    "    { name = \"lan0\"; device = \"net_af_packet1,iface=veth1\"; role = \"lan\";\n"
    "      addresses = [\"10.88.0.254/24\", \"fd88::fe/64\"]; mtu = 9000;\n"
    "      routes = ( { prefix = \"10.77.1.2/16\"; via = \"10.88.0.1\"; },\n"
    "                 { prefix = \"fd77::/48\"; via = \"fe80::1\"; } ); },\n"
    "    { name = \"wan0\"; device = \"net_af_packet0,iface=veth0\"; role = \"wan\";\n"
    "      addresses = [\"198.18.0.1/24\"]; gateway = \"198.18.0.254\";\n"
    "      gateway6 = \"fe80::1\"; }\n"
    "  );\n"
    "  snat = { enabled = false; port_min = 20000; port_max = 20999; max_entries = 5000;\n"
    "    tcp_established_timeout = 3600; tcp_transitory_timeout = 60; udp_timeout = 90;\n"
    "    icmp_timeout = 10; };\n"
    "};\n"
    "peers = (\n"
    "  { public_key = \"" KEY_A "\"; endpoint = \"[2001:db8::2]:51820\";\n"
    "    allowed_ips = [\"10.99.0.77/24\", \"fd99::2/128\", \"10.99.0.0/24\"];\n"
    "    persistent_keepalive = 25; name = \"laptop\"; },\n"
    "  { public_key = \"" KEY_B "\"; allowed_ips = []; }\n"
    ");\n"
    "control: { metrics_listen = \"127.0.0.1:9586\";\n"
    "  stun_servers = [\"198.51.100.1:3478\", \"[2001:db8::1]:3478\",\n"
    "    \"stun.example.com:3478\"]; stun_interval = 60;\n"
    "  derp_regions = ( { id = 1; server = \"198.51.100.9:3340\"; },\n"
    "    { id = 900; server = \"[2001:db8::9]:443\"; public_key = \"" KEY_A "\";\n"
    "      tls = true; server_name = \"derp9.example.com\"; ca_file = \"/etc/ssl/derp.pem\"; },\n"
    "    { id = 7; server = \"derp7.example.com:443\"; tls = true; } );\n"
    "  derp_home = 900; derp_ca_file = \"/etc/meshgate/derp-ca.pem\"; };\n"
    "flow_log: { file = \"/var/log/meshgate/flows.jsonl\"; interval = 30; max_flows = 4096; };\n"
    "testing: { rekey_after_time = 10; reject_after_time = 15; keepalive_timeout = 2;\n"
    "  rekey_timeout = 1; };\n";

static void check_full(const struct mg_config *c)
{
	const struct mg_port_conf *lan = &c->ports[0], *wan = &c->ports[1];
	const struct mg_peer_conf *p = &c->peers[0];
	char b64[45];

	CHECK(!strcmp(c->name, "hub-1.a_b") && c->listen_port == 4500 && c->mtu == 1380 &&
		  c->max_peers == 10 && !strcmp(c->run_dir, "/run/mg") && c->log_level == LOG_DEBUG,
	      "meshgate values");
	CHECK(c->n_eal_args == 3 && !strcmp(c->eal_args[0], "--no-huge") &&
		  !strcmp(c->eal_args[2], "512") && c->eal_args[3] == NULL,
	      "eal_args");
	CHECK(c->main_lcore == 2 && c->n_workers == 3 && c->workers[0] == 0 && c->workers[1] == 5 &&
		  c->workers[2] == 3,
	      "lcores");
	CHECK(!strcmp(c->flow_log.file, "/var/log/meshgate/flows.jsonl") &&
		  c->flow_log.interval == 30 && c->flow_log.max_flows == 4096,
	      "flow_log");
	CHECK(c->mbufs == 1024 && c->burst == 48 && c->idle_sleep_us == 50 &&
		  c->crypto == MG_CRYPTO_CRYPTODEV && !strcmp(c->cryptodev, "crypto_ipsec_mb0"),
	      "dataplane values");
	CHECK(c->n_ports == 2 && mg_config_port(c, MG_PORT_WAN) == 1 &&
		  mg_config_port(c, MG_PORT_LAN) == 0,
	      "ports");
	CHECK(!strcmp(lan->name, "lan0") && !strcmp(lan->device, "net_af_packet1,iface=veth1") &&
		  lan->mtu == 9000 && lan->n_addrs == 2,
	      "lan");
	CHECK(!strcmp(prefix_str(&lan->addrs[0]), "10.88.0.254/24") &&
		  !strcmp(prefix_str(&lan->addrs[1]), "fd88::fe/64"),
	      "lan addresses keep host bits");
	CHECK(lan->n_routes == 2 && !strcmp(prefix_str(&lan->routes[0].prefix), "10.77.0.0/16") &&
		  lan->routes[0].via.family == AF_INET &&
		  !strcmp(prefix_str(&lan->routes[1].prefix), "fd77::/48") &&
		  lan->routes[1].via.family == AF_INET6,
	      "routes");
	CHECK(wan->n_addrs == 1 && wan->mtu == 1500 && wan->gateway4.family == AF_INET &&
		  wan->gateway6.family == AF_INET6 && wan->gateway4.addr[3] == 254,
	      "wan");
	CHECK(c->n_peers == 2 && !strcmp(p->name, "laptop") && p->persistent_keepalive == 25 &&
		  !strcmp(sa_str(&p->endpoint), "[2001:db8::2]:51820") && !p->has_psk,
	      "peer 0");
	mg_key_to_base64(p->public_key, b64);
	CHECK(!strcmp(b64, KEY_A), "peer 0 key");
	CHECK(p->n_allowed_ips == 3 && !strcmp(prefix_str(&p->allowed_ips[0]), "10.99.0.0/24") &&
		  !strcmp(prefix_str(&p->allowed_ips[1]), "fd99::2/128"),
	      "allowed_ips normalized");
	CHECK(c->peers[1].n_allowed_ips == 0 && !c->peers[1].endpoint.family &&
		  !c->peers[1].name[0],
	      "peer 1");
	CHECK(!strcmp(sa_str(&c->metrics_listen), "127.0.0.1:9586"), "metrics_listen");
	CHECK(c->n_stun_servers == 3 &&
		  !strcmp(sa_str(&c->stun_servers[0].server), "198.51.100.1:3478") &&
		  !c->stun_servers[0].host[0] &&
		  !strcmp(sa_str(&c->stun_servers[1].server), "[2001:db8::1]:3478") &&
		  !strcmp(c->stun_servers[2].host, "stun.example.com") &&
		  !c->stun_servers[2].server.family && c->stun_servers[2].server.port == 3478 &&
		  c->stun_interval == 60,
	      "stun_servers, stun_interval");
	CHECK(c->n_derp_regions == 3 && c->derp_regions[0].id == 1 &&
		  !strcmp(sa_str(&c->derp_regions[0].server), "198.51.100.9:3340") &&
		  !c->derp_regions[0].pinned && c->derp_regions[1].id == 900 &&
		  !strcmp(sa_str(&c->derp_regions[1].server), "[2001:db8::9]:443") &&
		  c->derp_regions[1].pinned && c->derp_home == 900,
	      "derp_regions, derp_home");
	CHECK(!c->derp_regions[0].tls && c->derp_regions[1].tls &&
		  !strcmp(c->derp_regions[1].server_name, "derp9.example.com") &&
		  !strcmp(c->derp_regions[1].ca_file, "/etc/ssl/derp.pem"),
	      "derp region tls, server_name, ca_file");
	CHECK(!strcmp(c->derp_ca_file, "/etc/meshgate/derp-ca.pem"), "derp_ca_file");
	CHECK(!c->derp_regions[0].host[0] &&
		  !strcmp(c->derp_regions[2].host, "derp7.example.com") &&
		  c->derp_regions[2].server.family == 0 && c->derp_regions[2].server.port == 443 &&
		  !c->derp_regions[2].server_name[0],
	      "derp region by name: host and port (derp.c checks TLS for the host)");
	mg_key_to_base64(c->derp_regions[1].public_key, b64);
	CHECK(!strcmp(b64, KEY_A), "derp region 900's pinned key");
	CHECK(!p->benchmark_no_replay && !c->allow_benchmark_no_replay, "replay window on");
	CHECK(!c->snat.enabled && c->snat.port_min == 20000 && c->snat.port_max == 20999 &&
		  c->snat.max_entries == 5000 && c->snat.tcp_established_timeout == 3600 &&
		  c->snat.tcp_transitory_timeout == 60 && c->snat.udp_timeout == 90 &&
		  c->snat.icmp_timeout == 10,
	      "snat values");
	CHECK(c->timers.overridden && c->timers.rekey_after_time == 10 &&
		  c->timers.reject_after_time == 15 && c->timers.keepalive_timeout == 2 &&
		  c->timers.rekey_timeout == 1,
	      "timers");
}

static void test_full(void)
{
	char path[256], err[512];
	struct mg_config c;
	int ret;

	snprintf(path, sizeof(path), "%s/full.conf", tmpdir);
	write_file(path, full_conf, 0644);
	ret = mg_config_load(path, 0, &c, err, sizeof(err));
	CHECK(ret == 0, "full config: %s", err);
	if (!ret)
		check_full(&c);
	mg_config_free(&c);
	/* The same text through the string entry point. */
	ret = mg_config_load_string(full_conf, "inline", 0, &c, err, sizeof(err));
	CHECK(ret == 0, "full config from string: %s", err);
	if (!ret)
		check_full(&c);
	mg_config_free(&c);
	ret = mg_config_load_string("meshgate: { name = 1; };", "inline", 0, &c, err, sizeof(err));
	CHECK(ret == -EINVAL && !strcmp(err, "inline:1: meshgate.name: expected a string, got an "
					     "integer"),
	      "string errors name the given name: %s", err);
	unlink(path);
}

/* An empty stun_servers list is STUN off, like none. */
static void test_stun_empty(void)
{
	char err[512];
	struct mg_config c;
	int ret = mg_config_load_string(MG DP "control: { stun_servers = []; };\n", "inline", 0, &c,
					err, sizeof(err));

	CHECK(ret == 0 && c.n_stun_servers == 0 && c.stun_interval == 25, "stun_servers = []: %s",
	      ret ? err : "servers set");
	if (!ret)
		mg_config_free(&c);
}

/* derp_home without derp_regions: the preferred region of the coordination
 * server's map. */
static void test_derp_home_alone(void)
{
	char err[512];
	struct mg_config c;
	int ret = mg_config_load_string(MG DP "control: { derp_home = 2; };\n", "inline", 0, &c,
					err, sizeof(err));

	CHECK(ret == 0 && c.n_derp_regions == 0 && c.derp_home == 2,
	      "derp_home = 2 without derp_regions: %s", ret ? err : "accepted");
	if (!ret)
		mg_config_free(&c);
}

/* The benchmark switch: accepted with testing.allow_benchmark_no_replay. */
static void test_benchmark_no_replay(void)
{
	static const char conf[] =
	    MG DP "peers = (\n"
		  " { public_key = \"" KEY_A "\"; benchmark_no_replay = true; },\n"
		  " { public_key = \"" KEY_B "\"; benchmark_no_replay = false; }\n"
		  ");\n"
		  "testing: { allow_benchmark_no_replay = true; };\n";
	char err[512];
	struct mg_config c;
	int ret;

	ret = mg_config_load_string(conf, "bench", 0, &c, err, sizeof(err));
	CHECK(ret == 0, "benchmark_no_replay with the switch: %s", err);
	if (!ret) {
		CHECK(c.allow_benchmark_no_replay && c.n_peers == 2 &&
			  c.peers[0].benchmark_no_replay && !c.peers[1].benchmark_no_replay,
		      "benchmark_no_replay values");
		/* Not a timer: nothing to log as shortened timers. */
		CHECK(!c.timers.overridden && c.timers.reject_after_time == 180,
		      "the switch is no timer override");
	}
	mg_config_free(&c);
	/* false needs no switch. */
	ret = mg_config_load_string(MG DP "peers = ( { public_key = \"" KEY_A
					  "\"; benchmark_no_replay = false; } );\n",
				    "bench", 0, &c, err, sizeof(err));
	CHECK(ret == 0 && !c.peers[0].benchmark_no_replay, "benchmark_no_replay = false: %s", err);
	mg_config_free(&c);
}

/* ---- key files ---- */

static char priv_b64[45], priv_hex[65];

static void make_key(const char *path, mode_t mode)
{
	char line[64];

	snprintf(line, sizeof(line), "%s\n", priv_b64);
	write_file(path, line, mode);
}

static void check_no_key(const char *err, const char *what)
{
	CHECK(!strstr(err, priv_b64) && !strstr(err, priv_hex) && !strstr(err, "\n"),
	      "%s: key material in message", what);
	/* Not even a recognisable chunk of it. */
	for (size_t i = 0; i + 8 <= strlen(priv_b64); i++) {
		char chunk[9];

		memcpy(chunk, priv_b64 + i, 8);
		chunk[8] = '\0';
		CHECK(!strstr(err, chunk), "%s: key chunk in message", what);
	}
}

static int load_with_key(const char *keypath, const char *extra, struct mg_config *c, char *err,
			 size_t errlen)
{
	char conf[4096], path[256];

	snprintf(conf, sizeof(conf),
		 "meshgate: {\n name = \"mg0\";\n private_key_file = \"%s\";\n};\n" DP "%s",
		 keypath, extra);
	snprintf(path, sizeof(path), "%s/keyed.conf", tmpdir);
	write_file(path, conf, 0644);
	return mg_config_load(path, MG_CONFIG_LOAD_KEYS, c, err, errlen);
}

static void test_key_modes(const char *keypath)
{
	static const struct {
		mode_t mode;
		bool ok;
	} modes[] = {{0600, true},  {0400, true},  {0644, false}, {0640, false},
		     {0604, false}, {0700, false}, {0660, false}};
	char err[1024], want[64];
	struct mg_config c;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		int ret;

		make_key(keypath, modes[i].mode);
		ret = load_with_key(keypath, "", &c, err, sizeof(err));
		if (modes[i].ok) {
			char b64[45];

			CHECK(ret == 0 && c.has_private_key, "mode %04o refused: %s", modes[i].mode,
			      err);
			mg_key_to_base64(c.private_key, b64);
			CHECK(!strcmp(b64, priv_b64), "mode %04o: wrong key", modes[i].mode);
		} else {
			snprintf(want, sizeof(want), "mode %04o", modes[i].mode);
			CHECK(ret == -EINVAL && strstr(err, keypath) && strstr(err, want) &&
				  strstr(err, ":3: meshgate.private_key_file: "),
			      "mode %04o: %s", modes[i].mode, err);
			check_no_key(err, "bad mode");
		}
		mg_config_free(&c);
		unlink(keypath);
	}
}

static void test_keys_loaded(const char *keypath)
{
	char err[1024], psk_path[256], extra[512], b64[45];
	struct mg_config c;
	int ret;

	make_key(keypath, 0600);
	snprintf(psk_path, sizeof(psk_path), "%s/peer.psk", tmpdir);
	write_file(psk_path, KEY_B "\n", 0400);
	snprintf(extra, sizeof(extra),
		 "peers = ( { public_key = \"%s\";\n preshared_key_file = \"%s\"; } );\n", KEY_A,
		 psk_path);
	ret = load_with_key(keypath, extra, &c, err, sizeof(err));
	CHECK(ret == 0 && c.peers[0].has_psk, "psk: %s", err);
	if (!ret) {
		mg_key_to_base64(c.peers[0].psk, b64);
		CHECK(!strcmp(b64, KEY_B), "psk value");
	}
	mg_config_free(&c);

	/* Without the flag, key files are neither read nor required. */
	ret = mg_config_load_string(MG DP, "x", 0, &c, err, sizeof(err));
	CHECK(ret == 0 && !c.has_private_key, "no key needed without the flag");
	mg_config_free(&c);
	ret = mg_config_load_string(MG DP, "x", MG_CONFIG_LOAD_KEYS, &c, err, sizeof(err));
	CHECK(ret == -EINVAL && !strcmp(err, "x:1: meshgate.private_key_file: required setting "
					     "missing"),
	      "key required with the flag: %s", err);

	/* A later error after the key was read: message clean, struct wiped. */
	ret = load_with_key(keypath, "peers = ( { public_key = 5; } );\n", &c, err, sizeof(err));
	CHECK(ret == -EINVAL && is_zeroed(&c), "later error: %s", err);
	check_no_key(err, "later error");

	/* A peer that is ourselves. */
	uint8_t priv[32], pub[32];
	char extra2[256];

	mg_key_from_base64(priv_b64, priv);
	crypto_scalarmult_curve25519_base(pub, priv);
	mg_key_to_base64(pub, b64);
	snprintf(extra2, sizeof(extra2), "peers = (\n { public_key = \"%s\"; } );\n", b64);
	ret = load_with_key(keypath, extra2, &c, err, sizeof(err));
	CHECK(ret == -EINVAL && strstr(err, ":7: peers.[0].public_key: is this gateway's own "
					    "public key"),
	      "own key: %s", err);
	check_no_key(err, "own key");
	unlink(psk_path);
	unlink(keypath);
}

static void test_key_file_contents(const char *keypath)
{
	static const char *const bad[] = {
	    "",
	    "not a key\n",
	    "OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY",   /* 43 chars */
	    "OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY=x", /* trailing garbage */
	    " OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY=",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", /* all zeros */
	};
	char err[1024];
	struct mg_config c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(keypath, bad[i], 0600);
		CHECK(load_with_key(keypath, "", &c, err, sizeof(err)) == -EINVAL &&
			  strstr(err, keypath),
		      "bad key file %zu accepted: %s", i, err);
		CHECK(i < 2 || !strstr(err, "OQPAHz"), "bad key %zu quoted", i);
	}
	write_file(keypath, KEY_A "\r\n", 0600);
	CHECK(load_with_key(keypath, "", &c, err, sizeof(err)) == 0, "CRLF key: %s", err);
	mg_config_free(&c);
	unlink(keypath);
	CHECK(load_with_key(keypath, "", &c, err, sizeof(err)) == -EINVAL &&
		  strstr(err, "No such file"),
	      "missing key file: %s", err);
	CHECK(load_with_key(tmpdir, "", &c, err, sizeof(err)) == -EINVAL &&
		  strstr(err, "not a regular file"),
	      "directory as key file: %s", err);
}

/* coordination: defaults, values, the auth key file's rules. */
static void test_coord(void)
{
	char conf[2048], keypath[256], err[1024];
	struct mg_config c;
	int ret;

	ret = mg_config_load_string(MG DP, "x", 0, &c, err, sizeof(err));
	CHECK(ret == 0 && !c.coord.enabled && !strcmp(c.coord.state_dir, "/var/lib/meshgate") &&
		  !strcmp(c.coord.hostname, "mg0") && !c.coord_insecure_http,
	      "coord defaults: %s", err);
	mg_config_free(&c);

	snprintf(keypath, sizeof(keypath), "%s/auth.key", tmpdir);
	snprintf(conf, sizeof(conf),
		 MG DP "coordination: { server = \"http://127.0.0.1:8080\";\n"
		       " auth_key_file = \"%s\"; state_dir = \"/tmp/st\"; hostname = \"gw-1\";\n"
		       " advertise_routes = [\"10.88.0.1/24\", \"fd00:88::/64\"];\n"
		       " ca_file = \"/etc/ca.pem\"; };\n"
		       "testing: { coord_insecure_http = true; };\n",
		 keypath);
	write_file(keypath, "mgk-secret-123\n", 0600);
	ret = mg_config_load_string(conf, "x", MG_CONFIG_LOAD_KEYS, &c, err, sizeof(err));
	CHECK(ret == 0 && c.coord.enabled && c.coord_insecure_http &&
		  !strcmp(c.coord.server, "http://127.0.0.1:8080") && c.coord.has_auth_key &&
		  !strcmp(c.coord.auth_key, "mgk-secret-123") &&
		  !strcmp(c.coord.state_dir, "/tmp/st") && !strcmp(c.coord.hostname, "gw-1") &&
		  c.coord.n_routes == 2 &&
		  !strcmp(prefix_str(&c.coord.routes[0]), "10.88.0.0/24") &&
		  !strcmp(prefix_str(&c.coord.routes[1]), "fd00:88::/64") &&
		  !strcmp(c.coord.ca_file, "/etc/ca.pem") && !c.has_private_key,
	      "coord values: %s", err);
	mg_config_free(&c);

	/* Without the flag the file is not read. */
	ret = mg_config_load_string(conf, "x", 0, &c, err, sizeof(err));
	CHECK(ret == 0 && !c.coord.has_auth_key && !c.coord.auth_key[0], "auth key not read");
	mg_config_free(&c);

	/* A loose mode is refused, and the key is never quoted. */
	chmod(keypath, 0644);
	ret = mg_config_load_string(conf, "x", MG_CONFIG_LOAD_KEYS, &c, err, sizeof(err));
	CHECK(ret == -EINVAL && strstr(err, "coordination.auth_key_file") &&
		  strstr(err, "mode 0644") && !strstr(err, "secret"),
	      "auth key mode: %s", err);
	write_file(keypath, "mgk with space\n", 0600);
	ret = mg_config_load_string(conf, "x", MG_CONFIG_LOAD_KEYS, &c, err, sizeof(err));
	CHECK(ret == -EINVAL && strstr(err, "expected one pre-auth key") && !strstr(err, "space"),
	      "auth key contents: %s", err);

	/* Optional once registered: a missing file is fine. */
	unlink(keypath);
	ret = mg_config_load_string(conf, "x", MG_CONFIG_LOAD_KEYS, &c, err, sizeof(err));
	CHECK(ret == 0 && !c.coord.has_auth_key, "missing auth key file: %s", err);
	mg_config_free(&c);
}

static void test_key_files(void)
{
	char keypath[256];
	uint8_t priv[32];

	randombytes_buf(priv, sizeof(priv));
	mg_key_to_base64(priv, priv_b64);
	mg_key_to_hex(priv, priv_hex);
	snprintf(keypath, sizeof(keypath), "%s/mg0.key", tmpdir);
	test_key_modes(keypath);
	test_keys_loaded(keypath);
	test_key_file_contents(keypath);
	snprintf(keypath, sizeof(keypath), "%s/keyed.conf", tmpdir);
	unlink(keypath);
}

/* ---- keys.c encodings ---- */

static void test_key_encodings(void)
{
	static const struct {
		const char *in;
		bool ok;
	} b64[] = {
	    {KEY_A, true},
	    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", true},
	    {"OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY", false},
	    {"OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQY==", false},
	    {"OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQZ=", false}, /* non-canonical */
	    {"OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcpQ-=", false}, /* url alphabet */
	    {"OQPAHzNvle7L7cZg2pbygZ9GjvYfgRMZ8qdcYjhcp QY=", false},
	    {"", false},
	};
	static const struct {
		const char *in;
		bool ok;
	} hex[] = {
	    {"3903c01f336f95eecbedc660da96f2819f468ef61f811319f2a75c623855ca506", false},
	    {"3903c01f336f95eecbedc660da96f2819f468ef61f811319f2a75c62385ca506", true},
	    {"3903C01F336F95EECBEDC660DA96F2819F468EF61F811319F2A75C62385CA506", true},
	    {"3903c01f336f95eecbedc660da96f2819f468ef61f811319f2a75c62385ca50", false},
	    {"3903c01f336f95eecbedc660da96f2819f468ef61f811319f2a75c62385ca50g", false},
	    {"", false},
	};
	uint8_t k[32], k2[32];
	char out_b64[45], out_hex[65];

	for (size_t i = 0; i < sizeof(b64) / sizeof(b64[0]); i++)
		CHECK((mg_key_from_base64(b64[i].in, k) == 0) == b64[i].ok, "base64 case %zu",
		      i + 1);
	for (size_t i = 0; i < sizeof(hex) / sizeof(hex[0]); i++)
		CHECK((mg_key_from_hex(hex[i].in, k) == 0) == hex[i].ok, "hex case %zu", i + 1);
	mg_key_from_base64(KEY_A, k);
	mg_key_to_hex(k, out_hex);
	CHECK(!strcmp(out_hex, "3903c01f336f95eecbedc660da96f2819f468ef61f811319f2a75c62385ca506"),
	      "hex of KEY_A: %s", out_hex);
	mg_key_from_hex(out_hex, k2);
	mg_key_to_base64(k2, out_b64);
	CHECK(!memcmp(k, k2, 32) && !strcmp(out_b64, KEY_A), "round trip");
	CHECK(!mg_key_is_zero(k), "nonzero");
	memset(k, 0, sizeof(k));
	CHECK(mg_key_is_zero(k), "zero");
}

static void test_example(const char *path)
{
	char err[1024];
	struct mg_config c;
	int ret;

	if (!path) {
		fprintf(stderr, "no example config given: skipped\n");
		return;
	}
	ret = mg_config_load(path, 0, &c, err, sizeof(err));
	CHECK(ret == 0, "example config: %s", err);
	if (!ret) {
		int lan = mg_config_port(&c, MG_PORT_LAN);

		CHECK(c.n_ports == 2 && mg_config_port(&c, MG_PORT_WAN) >= 0 && lan >= 0 &&
			  c.n_peers == 2 && c.ports[lan].n_routes > 0,
		      "example config: a hub with wan, lan and two peers");
	}
	mg_config_free(&c);
}

/* The pktgen benchmark example: memif ports and a benchmark peer. */
static void test_pktgen_example(const char *path)
{
	char err[1024];
	struct mg_config c;
	int ret;

	if (!path) {
		fprintf(stderr, "no pktgen example config given: skipped\n");
		return;
	}
	ret = mg_config_load(path, 0, &c, err, sizeof(err));
	CHECK(ret == 0, "pktgen example config: %s", err);
	if (!ret) {
		int wan = mg_config_port(&c, MG_PORT_WAN), lan = mg_config_port(&c, MG_PORT_LAN);

		CHECK(c.n_ports == 2 && wan >= 0 && lan >= 0 &&
			  !strncmp(c.ports[wan].device, "net_memif", 9) &&
			  !strncmp(c.ports[lan].device, "net_memif", 9),
		      "pktgen example: memif wan and lan ports");
		CHECK(c.n_peers == 1 && c.peers[0].benchmark_no_replay &&
			  c.allow_benchmark_no_replay && !c.timers.overridden,
		      "pktgen example: one benchmark_no_replay peer, default timers");
	}
	mg_config_free(&c);
}

int main(int argc, char **argv)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_bad_configs();
	test_missing_file();
	test_defaults();
	test_full();
	test_include();
	test_stun_empty();
	test_derp_home_alone();
	test_benchmark_no_replay();
	test_key_files();
	test_coord();
	test_key_encodings();
	test_example(argc > 1 ? argv[1] : NULL);
	test_pktgen_example(argc > 2 ? argv[2] : NULL);
	rmdir(tmpdir);
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
