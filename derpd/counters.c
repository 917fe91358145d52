/* SPDX-License-Identifier: MIT */
/*
 * The counters, two ways: one stderr line (SIGUSR1, exit), in the style of
 * meshgate-stund's, and the Prometheus text exposition served on /metrics.
 * Names come from the lists in derpd.h, so a new reason shows up in both.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "derpd.h"

#define DROP_NAME(id, name)   [DROP_##id] = name,
#define REJECT_NAME(id, name) [REJECT_##id] = name,
#define HTTP_NAME(id, name)   [HTTP_##id] = name,
const char *const derpd_drop_names[DERPD_DROP_COUNT] = {DERPD_DROPS(DROP_NAME)};
const char *const derpd_reject_names[DERPD_REJECT_COUNT] = {DERPD_REJECTS(REJECT_NAME)};
static const char *const http_names[DERPD_HTTP_COUNT] = {DERPD_HTTP_KINDS(HTTP_NAME)};

/* Append to out[0..cap) at *n; once something did not fit, *n > cap and
 * stays so. */
static void put(char *out, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *out, size_t cap, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*n >= cap) {
		*n = cap + 1;
		return;
	}
	va_start(ap, fmt);
	r = vsnprintf(out + *n, cap - *n, fmt, ap);
	va_end(ap);
	*n = r < 0 ? cap + 1 : *n + (size_t)r;
}

/* ", name N" for each of a list, after a label. */
static void put_list(char *out, size_t cap, size_t *n, const char *label, const char *const *names,
		     const uint64_t *v, int count)
{
	put(out, cap, n, ", %s:", label);
	for (int i = 0; i < count; i++)
		put(out, cap, n, "%s %s %" PRIu64, i ? "," : "", names[i], v[i]);
}

void derpd_counters_print(const struct derpd *d)
{
	const struct derpd_counters *c = &d->c;
	char line[1024];
	size_t n = 0;

	put(line, sizeof(line), &n,
	    "derpd: clients %u, accepted %" PRIu64 ", forwarded %" PRIu64 " packets %" PRIu64
	    " bytes",
	    d->n_clients, c->connections, c->forwarded, c->forwarded_bytes);
	put_list(line, sizeof(line), &n, "dropped", derpd_drop_names, c->drops, DERPD_DROP_COUNT);
	put_list(line, sizeof(line), &n, "rejected", derpd_reject_names, c->rejects,
		 DERPD_REJECT_COUNT);
	put_list(line, sizeof(line), &n, "http", http_names, c->http, DERPD_HTTP_COUNT);
	put(line, sizeof(line), &n, "\n");
	fputs(line, stderr);
	fflush(stderr);
}

static void metric_head(char *out, size_t cap, size_t *n, const char *name, const char *type,
			const char *help)
{
	put(out, cap, n, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(char *out, size_t cap, size_t *n, const char *name, const char *type,
		   const char *help, uint64_t v)
{
	metric_head(out, cap, n, name, type, help);
	put(out, cap, n, "%s %" PRIu64 "\n", name, v);
}

static void metric_labelled(char *out, size_t cap, size_t *n, const char *name, const char *label,
			    const char *help, const char *const *names, const uint64_t *v,
			    int count)
{
	metric_head(out, cap, n, name, "counter", help);
	for (int i = 0; i < count; i++)
		put(out, cap, n, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, names[i], v[i]);
}

size_t derpd_metrics_render(const struct derpd *d, char *out, size_t cap)
{
	const struct derpd_counters *c = &d->c;
	size_t n = 0;

	metric(out, cap, &n, "meshgate_derp_clients", "gauge",
	       "Clients connected (handshake complete).", d->n_clients);
	metric(out, cap, &n, "meshgate_derp_clients_preferred", "gauge",
	       "Connected clients that chose this relay as their home.", d->n_preferred);
	metric(out, cap, &n, "meshgate_derp_connections", "gauge",
	       "Open TCP connections, those still in handshake included.", d->n_conns);
	metric(out, cap, &n, "meshgate_derp_connections_total", "counter",
	       "TCP connections accepted, those refused at once included.", c->connections);
	metric(out, cap, &n, "meshgate_derp_packets_forwarded_total", "counter",
	       "Packets written to their destination client.", c->forwarded);
	metric(out, cap, &n, "meshgate_derp_bytes_forwarded_total", "counter",
	       "Bytes of packets written to their destination client.", c->forwarded_bytes);
	metric_labelled(out, cap, &n, "meshgate_derp_drops_total", "reason",
			"Packets not delivered, by reason.", derpd_drop_names, c->drops,
			DERPD_DROP_COUNT);
	metric_labelled(out, cap, &n, "meshgate_derp_rejected_total", "reason",
			"Connections refused or closed by the server, by reason.",
			derpd_reject_names, c->rejects, DERPD_REJECT_COUNT);
	metric_labelled(out, cap, &n, "meshgate_derp_http_requests_total", "kind",
			"Plain HTTP requests answered, by kind.", http_names, c->http,
			DERPD_HTTP_COUNT);
	return n < cap ? n : 0;
}
