/* SPDX-License-Identifier: MIT */
/*
 * Ports: any DPDK device string (PCI address, net_af_packet, net_tap,
 * net_memif, net_pcap, net_null, ...), one RX and one TX queue per worker.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_dev.h>
#include <rte_ethdev.h>

#include "dp.h"
#include "log.h"

#define RX_DESC 1024
#define TX_DESC 1024

/* The ethdev name is the device string up to the first comma. */
static int probe(const struct mg_port_conf *pc, unsigned n_workers, uint16_t *port_id)
{
	char name[256], dev[300];
	snprintf(name, sizeof(name), "%s", pc->device);
	name[strcspn(name, ",")] = 0;
	if (rte_eth_dev_get_port_by_name(name, port_id) == 0)
		return 0; /* given on the EAL command line */
	snprintf(dev, sizeof(dev), "%s", pc->device);
	/* af_packet opens one socket per queue pair; it needs to know how many. */
	if (!strncmp(name, "net_af_packet", 13) && !strstr(pc->device, "qpairs=") && n_workers > 1)
		snprintf(dev, sizeof(dev), "%s,qpairs=%u", pc->device, n_workers);
	int rc = rte_dev_probe(dev);
	if (rc < 0) {
		mg_log(LOG_ERR, "port %s: cannot probe device \"%s\": %s", pc->name, dev,
		       strerror(-rc));
		return rc;
	}
	if (rte_eth_dev_get_port_by_name(name, port_id)) {
		mg_log(LOG_ERR, "port %s: device \"%s\" is not an ethdev", pc->name, name);
		return -ENODEV;
	}
	return 0;
}

static int configure(struct dp_ctx *dp, struct dp_port *p, const struct mg_port_conf *pc)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf conf = {0};
	uint16_t nq = (uint16_t)dp->n_workers, rxd = RX_DESC, txd = TX_DESC;
	int rc = rte_eth_dev_info_get(p->port_id, &info);

	if (rc)
		return rc;
	if (nq > info.max_rx_queues || nq > info.max_tx_queues) {
		mg_log(LOG_ERR, "port %s: %u workers need %u queues, device has %u/%u", pc->name,
		       nq, nq, info.max_rx_queues, info.max_tx_queues);
		return -EINVAL;
	}
	if (nq > 1 && info.flow_type_rss_offloads) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf =
			info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP);
	}
	rc = rte_eth_dev_configure(p->port_id, nq, nq, &conf);
	if (rc == 0)
		rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &rxd, &txd);
	for (uint16_t q = 0; rc == 0 && q < nq; q++) {
		rc = rte_eth_rx_queue_setup(p->port_id, q, rxd, rte_eth_dev_socket_id(p->port_id),
					    NULL, dp->pool);
		if (rc == 0)
			rc = rte_eth_tx_queue_setup(p->port_id, q, txd,
						    rte_eth_dev_socket_id(p->port_id), NULL);
	}
	if (rc == 0 && pc->mtu)
		rte_eth_dev_set_mtu(p->port_id, pc->mtu); /* not every PMD can; not fatal */
	if (rc == 0)
		rc = rte_eth_dev_start(p->port_id);
	if (rc) {
		mg_log(LOG_ERR, "port %s: setup failed: %s", pc->name, strerror(rc < 0 ? -rc : rc));
		return rc;
	}
	rte_eth_allmulticast_enable(p->port_id); /* solicited-node multicast for ND */
	return 0;
}

static void fill_iface(struct dp_port *p, const struct mg_port_conf *pc)
{
	struct dp_neigh_iface *ifc = &p->ifc;
	memset(ifc, 0, sizeof(*ifc));
	ifc->port_id = p->port_id;
	ifc->mac = p->mac;
	for (int i = 0; i < pc->n_addrs; i++) {
		const struct mg_prefix *a = &pc->addrs[i];
		if (a->family == AF_INET && ifc->n_addr4 < 8) {
			memcpy(&ifc->addr4[ifc->n_addr4], a->addr, 4);
			ifc->plen4[ifc->n_addr4++] = a->cidr;
		} else if (a->family == AF_INET6 && ifc->n_addr6 < 8) {
			memcpy(ifc->addr6[ifc->n_addr6], a->addr, 16);
			ifc->plen6[ifc->n_addr6++] = a->cidr;
		}
	}
	dp_neigh_iface_init(ifc);
}

int dp_ports_init(struct dp_ctx *dp)
{
	const struct mg_config *cfg = dp->cfg;
	dp->wan = dp->lan = -1;
	for (int i = 0; i < cfg->n_ports; i++) {
		const struct mg_port_conf *pc = &cfg->ports[i];
		struct dp_port *p = &dp->ports[i];
		int rc = probe(pc, dp->n_workers, &p->port_id);
		if (rc == 0)
			rc = configure(dp, p, pc);
		if (rc)
			return rc;
		dp->n_ports = i + 1;
		p->role = pc->role;
		p->mtu = pc->mtu;
		p->gateway4 = pc->gateway4;
		p->gateway6 = pc->gateway6;
		rte_eth_macaddr_get(p->port_id, &p->mac);
		fill_iface(p, pc);
		if (pc->role == MG_PORT_WAN && dp->wan < 0)
			dp->wan = i;
		if (pc->role == MG_PORT_LAN && dp->lan < 0)
			dp->lan = i;
		struct mg_port_export *e = &dp->shm.ports[i];
		snprintf(e->name, sizeof(e->name), "%s", pc->name);
		e->role = (uint8_t)pc->role;
		memcpy(e->mac, p->mac.addr_bytes, 6);
		mg_log(LOG_INFO, "port %s (%s): ethdev %u, mac " RTE_ETHER_ADDR_PRT_FMT ", %u queue(s)",
		       pc->name, pc->role == MG_PORT_WAN ? "wan" : "lan", p->port_id,
		       RTE_ETHER_ADDR_BYTES(&p->mac), dp->n_workers);
	}
	dp->shm.hdr->n_ports = (uint32_t)dp->n_ports;
	return 0;
}

void dp_ports_fini(struct dp_ctx *dp)
{
	for (int i = 0; i < dp->n_ports; i++) {
		rte_eth_dev_stop(dp->ports[i].port_id);
		rte_eth_dev_close(dp->ports[i].port_id);
	}
}

void dp_ports_export_stats(struct dp_ctx *dp)
{
	for (int i = 0; i < dp->n_ports; i++) {
		struct rte_eth_stats st;
		struct mg_port_export *e = &dp->shm.ports[i];
		if (rte_eth_stats_get(dp->ports[i].port_id, &st))
			continue;
		e->rx_packets = st.ipackets;
		e->rx_bytes = st.ibytes;
		e->tx_packets = st.opackets;
		e->tx_bytes = st.obytes;
		e->rx_missed = st.imissed;
		e->rx_errors = st.ierrors;
		e->tx_errors = st.oerrors;
	}
}
