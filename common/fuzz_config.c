// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the config loader: the input is config text, run
 * through libconfig and the same schema validation as a file (keys are not
 * loaded, so no file is ever opened). Checks the loader's contract: success
 * gives a consistent config, failure gives one line naming the input and a
 * zeroed struct.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "config.h"

#define NAME "fuzz.conf"

static void check_loaded(const struct mg_config *c)
{
	char buf[MG_PREFIX_STRLEN];

	if (!c->name[0] || c->n_ports < 1 || c->n_ports > MG_MAX_PORTS || c->n_workers < 1)
		abort();
	if (mg_config_port(c, MG_PORT_WAN) < 0)
		abort();
	for (int i = 0; i < c->n_ports; i++)
		for (int j = 0; j < c->ports[i].n_addrs; j++)
			if (!mg_prefix_fmt(&c->ports[i].addrs[j], buf, sizeof(buf)))
				abort();
	for (int i = 0; i < c->n_peers; i++) {
		const struct mg_peer_conf *p = &c->peers[i];

		for (int j = 0; j < p->n_allowed_ips; j++) {
			struct mg_prefix q = p->allowed_ips[j];

			mg_prefix_mask(&q); /* already normalized: a no-op */
			if (memcmp(&q, &p->allowed_ips[j], sizeof(q)))
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct mg_config zero;
	struct mg_config c;
	char err[1024];
	char *text;

	/* libconfig would open @include'd files: not the parser under test. */
	if (memmem(data, size, "@include", 8))
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (mg_config_load_string(text, NAME, 0, &c, err, sizeof(err)) == 0) {
		check_loaded(&c);
		mg_config_free(&c);
	} else if (strncmp(err, NAME ":", strlen(NAME ":")) || strchr(err, '\n') ||
		   memcmp(&c, &zero, sizeof(c))) {
		abort();
	}
	free(text);
	return 0;
}
