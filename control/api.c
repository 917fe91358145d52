/* SPDX-License-Identifier: MIT */
/*
 * The WireGuard userspace API (served by control/uapi.c) on top of the
 * device model: `wg show` reads it, `wg set`/`wg setconf` change it at run
 * time without disturbing other peers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cp.h"
#include "log.h"
#include "uapi.h"

static void release_view(void *ctx, struct cp_uapi_dev_view *v)
{
	(void)ctx;
	sodium_memzero(v->private_key, sizeof(v->private_key));
	struct cp_uapi_peer_view *pv = (struct cp_uapi_peer_view *)v->peers;
	for (size_t i = 0; i < v->n_peers; i++)
		sodium_memzero(pv[i].psk, sizeof(pv[i].psk));
	free(pv);
}

static int api_get(void *ctx, struct cp_uapi_dev_view *v,
		   void (**release)(void *ctx, struct cp_uapi_dev_view *))
{
	struct cp_device *d = ctx;
	struct cp_uapi_peer_view *pv = calloc(d->n_peers ? d->n_peers : 1, sizeof(*pv));
	size_t n = 0;

	if (!pv)
		return -ENOMEM;
	memset(v, 0, sizeof(*v));
	v->has_private_key = d->local.has_identity;
	memcpy(v->private_key, d->local.private_key, 32);
	v->listen_port = d->listen_port;
	v->fwmark = d->fwmark;
	for (uint32_t i = 0; i < d->max_peers && n < d->n_peers; i++) {
		struct cp_peer *p = d->by_slot[i];
		if (!p)
			continue;
		cp_peer_refresh_stats(d, p);
		struct cp_uapi_peer_view *x = &pv[n++];
		memcpy(x->public_key, p->noise.public_key, 32);
		x->has_psk = p->has_psk;
		memcpy(x->psk, p->noise.preshared_key, 32);
		x->endpoint = p->endpoint;
		x->last_handshake_sec = (int64_t)(p->last_handshake_real_ns / 1000000000ull);
		x->last_handshake_nsec = (int64_t)(p->last_handshake_real_ns % 1000000000ull);
		x->rx_bytes = p->rx_bytes;
		x->tx_bytes = p->tx_bytes;
		x->keepalive = p->persistent_keepalive;
		x->allowed_ips = p->aips;
		x->n_allowed_ips = p->n_aips;
	}
	v->peers = pv;
	v->n_peers = n;
	*release = release_view;
	return 0;
}

static void push_dirty(struct cp_device *d)
{
	for (uint32_t i = 0; i < d->max_peers; i++) {
		struct cp_peer *p = d->by_slot[i];
		if (p && p->aips_dirty)
			cp_dp_aips_push(d, p);
	}
}

static int apply_peer(struct cp_device *d, const struct cp_uapi_peer_op *op)
{
	struct cp_peer *p = cp_peer_find(d, op->public_key);
	bool created = false;
	int err;

	if (op->remove) {
		if (p)
			cp_peer_remove(d, p);
		return 0;
	}
	if (d->local.has_identity && !sodium_memcmp(op->public_key, d->local.public_key, 32))
		return 0; /* WireGuard ignores a peer with our own key */
	if (!p) {
		if (op->update_only)
			return 0;
		p = cp_peer_create(d, op->public_key, &err);
		if (!p)
			return err;
		created = true;
	}
	if (op->has_psk)
		cp_peer_set_psk(d, p, op->psk);
	if (op->has_endpoint)
		p->endpoint = op->endpoint;
	if (op->has_keepalive)
		p->persistent_keepalive = op->keepalive;
	if (op->replace_allowed_ips)
		cp_peer_aip_clear(d, p);
	for (size_t i = 0; i < op->n_allowed_ips; i++)
		if ((err = cp_peer_aip_add(d, p, &op->allowed_ips[i])))
			return err;
	if (created || op->has_endpoint || op->has_keepalive)
		cp_dp_peer_push(d, p);
	if (created)
		p->aips_dirty = true;
	return 0;
}

static int api_set(void *ctx, const struct cp_uapi_set *s)
{
	struct cp_device *d = ctx;
	int rc = 0;

	if (s->has_private_key)
		cp_device_set_private_key(d, s->private_key);
	if (s->has_listen_port && s->listen_port != d->listen_port) {
		struct mg_msg m;
		struct mg_msg_iface *f = (struct mg_msg_iface *)m.data;
		d->listen_port = s->listen_port;
		m.hdr = (struct mg_msg_hdr){.type = MG_MSG_IFACE_SET, .len = sizeof(*f)};
		*f = (struct mg_msg_iface){.listen_port = d->listen_port, .mtu = d->cfg->mtu};
		cp_dp_send(d, &m);
	}
	if (s->has_fwmark)
		d->fwmark = s->fwmark; /* accepted for compatibility; no meaning here */
	if (s->replace_peers) {
		for (uint32_t i = 0; i < d->max_peers; i++)
			if (d->by_slot[i])
				cp_peer_remove(d, d->by_slot[i]);
	}
	for (size_t i = 0; i < s->n_peers && rc == 0; i++)
		rc = apply_peer(d, &s->peers[i]);
	push_dirty(d);
	if (rc)
		mg_log(LOG_WARNING, "uapi set failed: %s", strerror(-rc));
	return rc;
}

static const struct cp_uapi_ops api_ops = {.get = api_get, .set = api_set};

const struct cp_uapi_ops *cp_api_ops(void)
{
	return &api_ops;
}
