/* SPDX-License-Identifier: MIT */
/*
 * The packet filter (acl.h): one rte_acl context per address family.
 *
 * rte_acl does not read packets here: each packet that needs the classifier
 * gets a small key (protocol, addresses, destination port) laid out for
 * rte_acl's rules on input fields: the first field is one byte, and every
 * input_index covers 4 consecutive bytes (the run-time reads 4 bytes per
 * index), so the protocol byte stands alone in its word, and the 2-byte
 * destination port shares its word with a 2-byte field every rule matches
 * whole. Rule values are host order, key bytes network order, as rte_acl
 * wants. Every rule is an accept in category 0 with userdata 1: a result of
 * 0 is "no rule", a deny.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include <rte_acl.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include "acl.h"
#include "addr.h"
#include "l4.h"

#define CHUNK	  64   /* packets per rte_acl_classify call */
#define ADD_BATCH 1024 /* rules per rte_acl_add_rules call */
/*
 * Run-time memory cap per context: past it rte_acl_build splits the rules
 * into more tries (slower lookups) rather than take more of the hugepage
 * heap, and fails with ERANGE if even that does not fit. Policies compiled
 * by policy/ stay far below (10,000 rules: a few MiB).
 */
#define MAX_SIZE     (64u << 20)
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

struct key4 {
	uint8_t proto, pad0[3];
	uint8_t src[4], dst[4];
	uint8_t dport[2], pad1[2];
};

struct key6 {
	uint8_t proto, pad0[3];
	uint8_t src[16], dst[16];
	uint8_t dport[2], pad1[2];
};

enum { F4_PROTO, F4_SRC, F4_DST, F4_DPORT, F4_PAD, F4_NUM };
enum { F6_PROTO, F6_SRC0, F6_DST0 = F6_SRC0 + 4, F6_DPORT = F6_DST0 + 4, F6_PAD, F6_NUM };

RTE_ACL_RULE_DEF(acl4_rule, F4_NUM);
RTE_ACL_RULE_DEF(acl6_rule, F6_NUM);

struct dp_acl {
	struct rte_acl_ctx *ctx4, *ctx6; /* NULL: no rules of that family */
	size_t n4, n6;
};

static uint32_t ctx_seq;

/* ---- field definitions ---- */

static struct rte_acl_field_def fdef(uint8_t type, uint8_t size, uint8_t field, uint8_t input,
				     uint32_t offset)
{
	return (struct rte_acl_field_def){
	    .type = type,
	    .size = size,
	    .field_index = field,
	    .input_index = input,
	    .offset = offset,
	};
}

static void defs4(struct rte_acl_config *cfg)
{
	cfg->num_fields = F4_NUM;
	cfg->defs[F4_PROTO] =
	    fdef(RTE_ACL_FIELD_TYPE_BITMASK, 1, F4_PROTO, 0, offsetof(struct key4, proto));
	cfg->defs[F4_SRC] = fdef(RTE_ACL_FIELD_TYPE_MASK, 4, F4_SRC, 1, offsetof(struct key4, src));
	cfg->defs[F4_DST] = fdef(RTE_ACL_FIELD_TYPE_MASK, 4, F4_DST, 2, offsetof(struct key4, dst));
	cfg->defs[F4_DPORT] =
	    fdef(RTE_ACL_FIELD_TYPE_RANGE, 2, F4_DPORT, 3, offsetof(struct key4, dport));
	cfg->defs[F4_PAD] =
	    fdef(RTE_ACL_FIELD_TYPE_RANGE, 2, F4_PAD, 3, offsetof(struct key4, pad1));
}

static void defs6(struct rte_acl_config *cfg)
{
	cfg->num_fields = F6_NUM;
	cfg->defs[F6_PROTO] =
	    fdef(RTE_ACL_FIELD_TYPE_BITMASK, 1, F6_PROTO, 0, offsetof(struct key6, proto));
	for (uint8_t i = 0; i < 4; i++) {
		cfg->defs[F6_SRC0 + i] = fdef(RTE_ACL_FIELD_TYPE_MASK, 4, F6_SRC0 + i, 1 + i,
					      (uint32_t)(offsetof(struct key6, src) + 4 * i));
		cfg->defs[F6_DST0 + i] = fdef(RTE_ACL_FIELD_TYPE_MASK, 4, F6_DST0 + i, 5 + i,
					      (uint32_t)(offsetof(struct key6, dst) + 4 * i));
	}
	cfg->defs[F6_DPORT] =
	    fdef(RTE_ACL_FIELD_TYPE_RANGE, 2, F6_DPORT, 9, offsetof(struct key6, dport));
	cfg->defs[F6_PAD] =
	    fdef(RTE_ACL_FIELD_TYPE_RANGE, 2, F6_PAD, 9, offsetof(struct key6, pad1));
}

/* ---- rules ---- */

static uint32_t word(const uint8_t *a)
{
	return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

/* The bits of a /len prefix that fall in 32-bit word i. */
static uint32_t word_len(unsigned len, unsigned i)
{
	return len <= 32 * i ? 0 : len >= 32 * (i + 1) ? 32 : len - 32 * i;
}

static void rule_common(struct rte_acl_rule_data *d, struct rte_acl_field *proto,
			struct rte_acl_field *dport, struct rte_acl_field *pad,
			const struct mg_acl_rule *r)
{
	d->category_mask = 1;
	d->priority = 1;
	d->userdata = 1;
	proto->value.u8 = r->proto;
	proto->mask_range.u8 = r->proto ? 0xff : 0;
	dport->value.u16 = r->dport_lo;
	dport->mask_range.u16 = r->dport_hi;
	pad->value.u16 = 0;
	pad->mask_range.u16 = UINT16_MAX;
}

static void rule4(struct acl4_rule *o, const struct mg_acl_rule *r)
{
	memset(o, 0, sizeof(*o));
	rule_common(&o->data, &o->field[F4_PROTO], &o->field[F4_DPORT], &o->field[F4_PAD], r);
	o->field[F4_SRC].value.u32 = word(r->src);
	o->field[F4_SRC].mask_range.u32 = RTE_MIN(r->src_len, 32);
	o->field[F4_DST].value.u32 = word(r->dst);
	o->field[F4_DST].mask_range.u32 = RTE_MIN(r->dst_len, 32);
}

static void rule6(struct acl6_rule *o, const struct mg_acl_rule *r)
{
	memset(o, 0, sizeof(*o));
	rule_common(&o->data, &o->field[F6_PROTO], &o->field[F6_DPORT], &o->field[F6_PAD], r);
	for (unsigned i = 0; i < 4; i++) {
		o->field[F6_SRC0 + i].value.u32 = word(r->src + 4 * i);
		o->field[F6_SRC0 + i].mask_range.u32 = word_len(RTE_MIN(r->src_len, 128), i);
		o->field[F6_DST0 + i].value.u32 = word(r->dst + 4 * i);
		o->field[F6_DST0 + i].mask_range.u32 = word_len(RTE_MIN(r->dst_len, 128), i);
	}
}

/* Add the rules of one family to ctx, ADD_BATCH at a time. */
static int add_rules(struct rte_acl_ctx *ctx, int family, const struct mg_acl_rule *rules, size_t n)
{
	size_t rsz = family == AF_INET ? sizeof(struct acl4_rule) : sizeof(struct acl6_rule);
	uint8_t *buf = malloc(ADD_BATCH * rsz);
	size_t k = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i <= n && ret == 0; i++) {
		if (k == ADD_BATCH || (i == n && k)) {
			ret = rte_acl_add_rules(ctx, (const struct rte_acl_rule *)buf, (uint32_t)k);
			k = 0;
		}
		if (i == n || rules[i].family != family)
			continue;
		if (family == AF_INET)
			rule4((struct acl4_rule *)(buf + k * rsz), &rules[i]);
		else
			rule6((struct acl6_rule *)(buf + k * rsz), &rules[i]);
		k++;
	}
	free(buf);
	return ret;
}

static struct rte_acl_ctx *build_ctx(int family, const struct mg_acl_rule *rules, size_t n,
				     size_t count, int socket_id, char *err, size_t errlen)
{
	const char *fam = family == AF_INET ? "IPv4" : "IPv6";
	struct rte_acl_config cfg = {.num_categories = 1, .max_size = MAX_SIZE};
	char name[RTE_ACL_NAMESIZE];
	struct rte_acl_param p = {
	    .name = name,
	    .socket_id = socket_id,
	    .rule_size = family == AF_INET ? RTE_ACL_RULE_SZ(F4_NUM) : RTE_ACL_RULE_SZ(F6_NUM),
	    .max_rule_num = (uint32_t)count,
	};
	struct rte_acl_ctx *ctx;
	int ret;

	snprintf(name, sizeof(name), "mgacl%c_%" PRIu32, family == AF_INET ? '4' : '6',
		 __atomic_fetch_add(&ctx_seq, 1, __ATOMIC_RELAXED));
	ctx = rte_acl_create(&p);
	if (!ctx) {
		snprintf(err, errlen, "acl: rte_acl_create(%s, %zu rules): %s", fam, count,
			 rte_strerror(rte_errno));
		return NULL;
	}
	if (family == AF_INET)
		defs4(&cfg);
	else
		defs6(&cfg);
	ret = add_rules(ctx, family, rules, n);
	if (ret == 0)
		ret = rte_acl_build(ctx, &cfg);
	if (ret) {
		snprintf(err, errlen, "acl: building the %s classifier (%zu rules): %s", fam, count,
			 ret == -ERANGE ? "needs more than the 64 MiB limit" : strerror(-ret));
		rte_acl_free(ctx);
		rte_errno = -ret;
		return NULL;
	}
	return ctx;
}

struct dp_acl *dp_acl_build(const struct mg_acl_rule *rules, size_t n, int socket_id, char *err,
			    size_t errlen)
{
	struct dp_acl *acl;

	if (errlen)
		err[0] = '\0';
	acl = calloc(1, sizeof(*acl));
	if (!acl) {
		snprintf(err, errlen, "acl: out of memory");
		rte_errno = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const struct mg_acl_rule *r = &rules[i];

		if ((r->family != AF_INET && r->family != AF_INET6) ||
		    r->src_len > (r->family == AF_INET ? 32 : 128) ||
		    r->dst_len > (r->family == AF_INET ? 32 : 128) || r->dport_lo > r->dport_hi) {
			snprintf(err, errlen, "acl: rule %zu: bad family, prefix length or ports",
				 i);
			free(acl);
			rte_errno = EINVAL;
			return NULL;
		}
		if (r->family == AF_INET)
			acl->n4++;
		else
			acl->n6++;
	}
	if (acl->n4 > UINT32_MAX / 2 || acl->n6 > UINT32_MAX / 2) {
		snprintf(err, errlen, "acl: too many rules (%zu)", n);
		free(acl);
		rte_errno = E2BIG;
		return NULL;
	}
	if (acl->n4 && !(acl->ctx4 = build_ctx(AF_INET, rules, n, acl->n4, socket_id, err, errlen)))
		goto fail;
	if (acl->n6 &&
	    !(acl->ctx6 = build_ctx(AF_INET6, rules, n, acl->n6, socket_id, err, errlen)))
		goto fail;
	return acl;
fail:
	dp_acl_free(acl);
	return NULL;
}

void dp_acl_free(struct dp_acl *acl)
{
	if (!acl)
		return;
	rte_acl_free(acl->ctx4);
	rte_acl_free(acl->ctx6);
	free(acl);
}

size_t dp_acl_count(const struct dp_acl *acl, int family)
{
	if (!acl)
		return 0;
	return family == AF_INET ? acl->n4 : family == AF_INET6 ? acl->n6 : 0;
}

/* ---- the filter ---- */

/* V_CLASSIFY_UDP: the rules first; if they deny, the reverse-flow table
 * (allowed traffic, the common case, never pays for the flow lookup). */
enum verdict { V_DENY, V_ACCEPT, V_CLASSIFY, V_CLASSIFY_UDP };

static bool icmp4_passes(uint8_t type)
{
	return type == 0 || type == 3 || type == 11 || type == 12;
}

static bool icmp6_passes(uint8_t type)
{
	return (type >= 1 && type <= 4) || type == 129;
}

/* Whether a LAN host sent the reverse of this inbound UDP packet recently. */
static bool udp_reply(const struct dp_flows *flows, uint64_t now, const struct dp_l4 *l,
		      const uint8_t *udp)
{
	struct dp_flow_key k;

	dp_flow_key_make(&k, l->family, l->dst, l->src, udp + 2, udp);
	return dp_flows_seen(flows, now, &k);
}

/*
 * What the semantics decide before any rule; for V_CLASSIFY the destination
 * port to look up is in *dport (2 bytes, network order).
 */
static enum verdict pre_check(const uint8_t *ip,
			      uint16_t len, struct dp_l4 *l, const uint8_t **dport)
{
	static const uint8_t port0[2];
	const uint8_t *p;

	if (dp_l4_parse(ip, len, l))
		return V_DENY;
	*dport = port0;
	if (l->later_frag)
		return V_CLASSIFY;
	p = ip + l->off;
	switch (l->proto) {
	case IPPROTO_TCP:
		if (l->l4_len < 20)
			return V_DENY;
		if ((p[13] & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN)
			return V_ACCEPT;
		*dport = p + 2;
		return V_CLASSIFY;
	case IPPROTO_UDP:
		if (l->l4_len < 8)
			return V_DENY;
		*dport = p + 2;
		return V_CLASSIFY_UDP;
	case IPPROTO_SCTP:
		if (l->l4_len < 12)
			return V_DENY;
		*dport = p + 2;
		return V_CLASSIFY;
	case IPPROTO_ICMP:
		if (l->family != AF_INET)
			return V_CLASSIFY;
		if (l->l4_len < 4)
			return V_DENY;
		return icmp4_passes(p[0]) ? V_ACCEPT : V_CLASSIFY;
	case IPPROTO_ICMPV6:
		if (l->family != AF_INET6)
			return V_CLASSIFY;
		if (l->l4_len < 4)
			return V_DENY;
		return icmp6_passes(p[0]) ? V_ACCEPT : V_CLASSIFY;
	default:
		return V_CLASSIFY;
	}
}

static void check_chunk(const struct dp_acl *acl, const struct dp_flows *flows, uint64_t now,
			uint8_t *const *ip, const uint16_t *len, uint16_t n, uint8_t *accept)
{
	struct key4 k4[CHUNK];
	struct key6 k6[CHUNK];
	const uint8_t *d4[CHUNK], *d6[CHUNK];
	uint32_t r4[CHUNK], r6[CHUNK];
	uint16_t i4[CHUNK], i6[CHUNK];
	uint32_t n4 = 0, n6 = 0;
	uint8_t udp[CHUNK];
	bool any_udp = false;

	for (uint16_t i = 0; i < n; i++) {
		const uint8_t *dport;
		struct dp_l4 l;
		enum verdict v = pre_check(ip[i], len[i], &l, &dport);

		accept[i] = v == V_ACCEPT;
		udp[i] = v == V_CLASSIFY_UDP;
		any_udp |= udp[i];
		if (v != V_CLASSIFY && v != V_CLASSIFY_UDP)
			continue;
		if (l.family == AF_INET) {
			struct key4 *k = &k4[n4];

			k->proto = l.proto;
			memcpy(k->src, l.src, 4);
			memcpy(k->dst, l.dst, 4);
			memcpy(k->dport, dport, 2);
			d4[n4] = (const uint8_t *)k;
			i4[n4++] = i;
		} else {
			struct key6 *k = &k6[n6];

			k->proto = l.proto;
			memcpy(k->src, l.src, 16);
			memcpy(k->dst, l.dst, 16);
			memcpy(k->dport, dport, 2);
			d6[n6] = (const uint8_t *)k;
			i6[n6++] = i;
		}
	}
	/* No context for a family: nothing of it is allowed (accept[] stays 0). */
	if (n4 && acl->ctx4 && rte_acl_classify(acl->ctx4, d4, r4, n4, 1) == 0)
		for (uint32_t j = 0; j < n4; j++)
			accept[i4[j]] = r4[j] != 0;
	if (n6 && acl->ctx6 && rte_acl_classify(acl->ctx6, d6, r6, n6, 1) == 0)
		for (uint32_t j = 0; j < n6; j++)
			accept[i6[j]] = r6[j] != 0;
	if (!any_udp || !flows)
		return;
	for (uint16_t i = 0; i < n; i++) {
		struct dp_l4 l;
		if (udp[i] && !accept[i] && !dp_l4_parse(ip[i], len[i], &l))
			accept[i] = udp_reply(flows, now, &l, ip[i] + l.off);
	}
}

void dp_acl_check_burst(const struct dp_acl *acl, const struct dp_flows *flows, uint64_t now_tsc,
			uint8_t *const *ip, const uint16_t *len, uint16_t n, uint8_t *accept)
{
	if (!acl) {
		memset(accept, 1, n);
		return;
	}
	for (uint16_t off = 0; off < n; off = (uint16_t)(off + RTE_MIN(n - off, CHUNK)))
		check_chunk(acl, flows, now_tsc, ip + off, len + off,
			    (uint16_t)RTE_MIN(n - off, CHUNK), accept + off);
}

/* ---- policy tests ---- */

#define TEST_PKT   80
#define TEST_SPORT 40000

/* A synthetic packet for t into buf; returns its length. */
static uint16_t test_packet(const struct mg_acl_test *t, uint8_t *buf)
{
	uint16_t hl = t->family == AF_INET ? 20 : 40, l4 = 8;
	uint8_t *p = buf + hl;

	memset(buf, 0, TEST_PKT);
	if (t->proto == IPPROTO_TCP)
		l4 = 20;
	else if (t->proto == IPPROTO_SCTP)
		l4 = 12;
	if (t->family == AF_INET) {
		buf[0] = 0x45;
		buf[2] = (uint8_t)((hl + l4) >> 8);
		buf[3] = (uint8_t)(hl + l4);
		buf[8] = 64;
		buf[9] = t->proto;
		memcpy(buf + 12, t->src, 4);
		memcpy(buf + 16, t->dst, 4);
	} else {
		buf[0] = 0x60;
		buf[5] = (uint8_t)l4;
		buf[6] = t->proto;
		buf[7] = 64;
		memcpy(buf + 8, t->src, 16);
		memcpy(buf + 24, t->dst, 16);
	}
	switch (t->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		p[0] = TEST_SPORT >> 8;
		p[1] = TEST_SPORT & 0xff;
		p[2] = (uint8_t)(t->dport >> 8);
		p[3] = (uint8_t)t->dport;
		if (t->proto == IPPROTO_TCP) {
			p[12] = 0x50;
			p[13] = TCP_FLAG_SYN;
		} else if (t->proto == IPPROTO_UDP) {
			p[5] = (uint8_t)l4;
		}
		break;
	case IPPROTO_ICMP:
		p[0] = 8; /* echo request */
		break;
	case IPPROTO_ICMPV6:
		p[0] = 128; /* echo request */
		break;
	}
	return (uint16_t)(hl + l4);
}

static const char *proto_name(uint8_t proto, char *buf, size_t len)
{
	const char *name = mg_ip_proto_name(proto);

	if (name)
		return name;
	snprintf(buf, len, "proto %u", proto);
	return buf;
}

static void test_failure(const struct mg_acl_test *t, bool got, char *err, size_t errlen)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], pb[16];
	int af = t->family == AF_INET ? AF_INET : AF_INET6;

	inet_ntop(af, t->src, s, sizeof(s));
	inet_ntop(af, t->dst, d, sizeof(d));
	snprintf(err, errlen,
		 "tests[%" PRIu32 "].%s[%" PRIu32 "]: %s %s -> %s%s%s:%u: expected %s, got %s",
		 t->test_index, t->expect_accept ? "accept" : "deny", t->item_index,
		 proto_name(t->proto, pb, sizeof(pb)), s, af == AF_INET6 ? "[" : "", d,
		 af == AF_INET6 ? "]" : "", t->dport, t->expect_accept ? "accept" : "deny",
		 got ? "accept" : "deny");
}

int dp_acl_run_tests(const struct dp_acl *acl, const struct mg_acl_test *tests, size_t n, char *err,
		     size_t errlen)
{
	uint8_t bufs[CHUNK][TEST_PKT], *ip[CHUNK], accept[CHUNK];
	uint16_t len[CHUNK];

	if (errlen)
		err[0] = '\0';
	for (size_t off = 0; off < n; off += CHUNK) {
		uint16_t m = (uint16_t)RTE_MIN(n - off, (size_t)CHUNK);

		for (uint16_t i = 0; i < m; i++) {
			if (tests[off + i].family != AF_INET && tests[off + i].family != AF_INET6) {
				snprintf(err, errlen, "tests[%" PRIu32 "]: bad address family",
					 tests[off + i].test_index);
				return -1;
			}
			ip[i] = bufs[i];
			len[i] = test_packet(&tests[off + i], bufs[i]);
		}
		dp_acl_check_burst(acl, NULL, 0, ip, len, m, accept);
		for (uint16_t i = 0; i < m; i++) {
			if (!accept[i] != !tests[off + i].expect_accept) {
				test_failure(&tests[off + i], accept[i], err, errlen);
				return -1;
			}
		}
	}
	return 0;
}
