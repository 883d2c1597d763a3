/*
 * vchan-bench: the libxenvchan side of `scripts/bench vchan`, run in dom0.
 *
 * It speaks the benchmark protocol of tests/images/vchan-bench (the lichen side) over a vchan made
 * with Xen's own libxenvchan, in either vchan role (server or client) and either bench role:
 *
 *   control: runs a plan of operations, sending each one's 16-byte spec first, timing it, and
 *            printing one `vbench-row` line per operation; then sends END and closes.
 *   respond: waits for specs and does what each asks, until END or until the peer closes.
 *
 * Specs (all integers little endian): magic "VBEN" (0x4e454256), op, size, count, u32 each.
 *   push (1): the controller writes count messages of size bytes; the responder reads them all
 *             and answers with the byte count it received (u64).
 *   pull (2): the responder writes count messages of size bytes; the controller reads them.
 *   ping (3): count round trips: the controller writes size bytes, the responder echoes them.
 *   end  (0): the session is over.
 * A plan is a comma-separated list of `op:SIZExCOUNT`, e.g. `push:4096x1024,ping:64x200`.
 *
 * Usage:
 *   vchan-bench server|client control|respond --peer DOMID --path XS_PATH
 *               [--ring BYTES] [--session NAME] [--plan PLAN] [--wait S] [--op-timeout S]
 *               [--poll]
 * --ring is the server's minimum size of both rings (libxenvchan rounds it up to a power of two,
 * 4 KiB at least; 1024/2048 and below use its in-page rings). A client retries connecting for
 * --wait seconds (default 120). Every operation must end within --op-timeout seconds (default
 * 120): otherwise a `vbench-fail` line is printed and the program exits with status 3.
 * --poll is a diagnostic: the program then never sleeps for an event but spins on the rings
 * (libxenvchan's non-blocking calls), which takes the cost of waking it out of the figures.
 * Output lines (stdout):
 *   vbench-session session=NAME impl=libxenvchan vchan=server|client bench=control|respond
 *                  read_ring=BYTES write_ring=BYTES wait=event|poll
 *   vbench-row session=NAME op=push|pull size=S count=C bytes=B us=T
 *   vbench-row session=NAME op=ping size=S count=C median_us=M p99_us=P min_us=L
 *   vbench-fail session=NAME op=OP size=S reason=WHY
 */
#include <errno.h>
#include <libxenvchan.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPEC_MAGIC 0x4e454256u
#define SPEC_BYTES 16
#define MAX_PLAN 64
#define MAX_MESSAGE (16u << 20)
#define MAX_PINGS 100000u

enum op { OP_END = 0, OP_PUSH = 1, OP_PULL = 2, OP_PING = 3 };

struct spec {
	uint32_t op, size, count;
};

static const char *session = "vchan-bench";
static unsigned op_timeout_s = 120;
/* --poll: spin on the rings (libxenvchan's non-blocking mode) instead of sleeping for events. */
static int poll_mode;
/* The line the alarm handler prints: prepared before each operation is armed. */
static char timeout_line[256];

static const char *op_name(uint32_t op)
{
	switch (op) {
	case OP_PUSH: return "push";
	case OP_PULL: return "pull";
	case OP_PING: return "ping";
	case OP_END: return "end";
	default: return "unknown";
	}
}

static void on_alarm(int sig)
{
	(void)sig;
	/* Only async-signal-safe calls here. */
	ssize_t ignored = write(STDOUT_FILENO, timeout_line, strlen(timeout_line));
	(void)ignored;
	_exit(3);
}

/* Arms the watchdog: `what` (an operation's name) must end within `seconds`. */
static void arm_for(const char *what, uint32_t size, unsigned seconds)
{
	snprintf(timeout_line, sizeof timeout_line,
		 "vbench-fail session=%s op=%s size=%u reason=timeout-%us\n",
		 session, what, size, seconds);
	alarm(seconds);
}

/* Arms the watchdog of one operation. */
static void arm(uint32_t op, uint32_t size)
{
	arm_for(op_name(op), size, op_timeout_s);
}

static void disarm(void)
{
	alarm(0);
}

static void fail(uint32_t op, uint32_t size, const char *why)
{
	printf("vbench-fail session=%s op=%s size=%u reason=%s\n", session, op_name(op), size, why);
	fflush(stdout);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Writes all of buf (a blocking write loops until done; a polling one returns what fit); 0 or -1. */
static int write_all(struct libxenvchan *ch, const void *buf, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		int n = libxenvchan_write(ch, (const uint8_t *)buf + pos, len - pos);
		if (n < 0)
			return -1;
		pos += (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes (a polling read may return 0 bytes); 0, or -1 when the peer closed or
 * the channel broke first. */
static int read_exact(struct libxenvchan *ch, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		int n = libxenvchan_read(ch, (uint8_t *)buf + got, len - got);
		if (n < 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int send_spec(struct libxenvchan *ch, const struct spec *s)
{
	uint8_t b[SPEC_BYTES];
	put32(b, SPEC_MAGIC);
	put32(b + 4, s->op);
	put32(b + 8, s->size);
	put32(b + 12, s->count);
	return write_all(ch, b, sizeof b);
}

/* Reads the next spec: 0, 1 when the peer closed, -1 for a bad spec. */
static int recv_spec(struct libxenvchan *ch, struct spec *s)
{
	uint8_t b[SPEC_BYTES];
	if (read_exact(ch, b, sizeof b))
		return 1;
	if (get32(b) != SPEC_MAGIC)
		return -1;
	s->op = get32(b + 4);
	s->size = get32(b + 8);
	s->count = get32(b + 12);
	if (s->op > OP_PING || (s->op != OP_END && (s->size == 0 || s->size > MAX_MESSAGE)))
		return -1;
	if (s->op == OP_PING && s->count > MAX_PINGS)
		return -1;
	return 0;
}

/* Reads count*size bytes in reads of at most size bytes; the byte count, or -1. */
static int64_t drain(struct libxenvchan *ch, uint8_t *buf, uint32_t size, uint32_t count)
{
	uint64_t want = (uint64_t)size * count, got = 0;
	while (got < want) {
		uint64_t left = want - got;
		int n = libxenvchan_read(ch, buf, left < size ? (size_t)left : size);
		if (n < 0)
			return -1;
		got += (uint64_t)n;
	}
	return (int64_t)got;
}

static int stream(struct libxenvchan *ch, const uint8_t *buf, uint32_t size, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		if (write_all(ch, buf, size))
			return -1;
	return 0;
}

/* The responder: serves specs until END or the peer's close. 0 on a clean end. */
static int respond(struct libxenvchan *ch)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	for (;;) {
		struct spec s;
		int r = recv_spec(ch, &s);
		if (r == 1) {
			free(buf);
			return 0;
		}
		if (r < 0) {
			fail(OP_END, 0, "bad-spec");
			free(buf);
			return 1;
		}
		if (s.op == OP_END) {
			free(buf);
			return 0;
		}
		if (s.size > cap) {
			free(buf);
			buf = malloc(s.size);
			if (!buf) {
				fail(s.op, s.size, "out-of-memory");
				return 1;
			}
			memset(buf, 0x5a, s.size);
			cap = s.size;
		}
		arm(s.op, s.size);
		int ok = 0;
		if (s.op == OP_PUSH) {
			int64_t got = drain(ch, buf, s.size, s.count);
			uint8_t ack[8];
			put32(ack, (uint32_t)got);
			put32(ack + 4, (uint32_t)((uint64_t)got >> 32));
			ok = got >= 0 && write_all(ch, ack, sizeof ack) == 0;
		} else if (s.op == OP_PULL) {
			ok = stream(ch, buf, s.size, s.count) == 0;
		} else {
			ok = 1;
			for (uint32_t i = 0; ok && i < s.count; i++)
				ok = read_exact(ch, buf, s.size) == 0 && write_all(ch, buf, s.size) == 0;
		}
		disarm();
		if (!ok) {
			fail(s.op, s.size, "channel-closed");
			free(buf);
			return 1;
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One operation of the plan, timed and printed; 0, or -1 when the channel broke. */
static int control_one(struct libxenvchan *ch, const struct spec *s, uint8_t *buf)
{
	arm(s->op, s->size);
	if (s->op == OP_PING) {
		double *rtt = malloc(sizeof(double) * s->count);
		int ok = rtt && send_spec(ch, s) == 0;
		for (uint32_t i = 0; ok && i < s->count; i++) {
			double t0 = now_us();
			ok = write_all(ch, buf, s->size) == 0 && read_exact(ch, buf, s->size) == 0;
			rtt[i] = now_us() - t0;
		}
		disarm();
		if (!ok) {
			free(rtt);
			fail(s->op, s->size, "channel-closed");
			return -1;
		}
		qsort(rtt, s->count, sizeof(double), cmp_double);
		printf("vbench-row session=%s op=ping size=%u count=%u median_us=%.1f p99_us=%.1f min_us=%.1f\n",
		       session, s->size, s->count, rtt[s->count / 2],
		       rtt[(size_t)(s->count - 1) * 99 / 100], rtt[0]);
		free(rtt);
		fflush(stdout);
		return 0;
	}
	double t0 = now_us();
	int64_t moved = -1;
	if (send_spec(ch, s) == 0) {
		if (s->op == OP_PUSH) {
			uint8_t ack[8];
			if (stream(ch, buf, s->size, s->count) == 0 && read_exact(ch, ack, sizeof ack) == 0)
				moved = (int64_t)(get32(ack) | (uint64_t)get32(ack + 4) << 32);
		} else {
			moved = drain(ch, buf, s->size, s->count);
		}
	}
	double us = now_us() - t0;
	disarm();
	if (moved != (int64_t)((uint64_t)s->size * s->count)) {
		fail(s->op, s->size, moved < 0 ? "channel-closed" : "short-transfer");
		return -1;
	}
	printf("vbench-row session=%s op=%s size=%u count=%u bytes=%lld us=%.0f\n", session,
	       op_name(s->op), s->size, s->count, (long long)moved, us);
	fflush(stdout);
	return 0;
}

/* Parses `op:SIZExCOUNT[,...]`; the number of specs, or -1. */
static int parse_plan(const char *text, struct spec *plan)
{
	int n = 0;
	char *copy = strdup(text), *save = NULL;
	if (!copy)
		return -1;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char op[8];
		unsigned size, count;
		char extra;
		if (n == MAX_PLAN || sscanf(item, "%7[a-z]:%ux%u%c", op, &size, &count, &extra) != 3)
			goto bad;
		if (!strcmp(op, "push"))
			plan[n].op = OP_PUSH;
		else if (!strcmp(op, "pull"))
			plan[n].op = OP_PULL;
		else if (!strcmp(op, "ping"))
			plan[n].op = OP_PING;
		else
			goto bad;
		if (size == 0 || size > MAX_MESSAGE || count == 0 ||
		    (plan[n].op == OP_PING && count > MAX_PINGS))
			goto bad;
		plan[n].size = size;
		plan[n].count = count;
		n++;
	}
	free(copy);
	return n;
bad:
	free(copy);
	return -1;
}

static int control(struct libxenvchan *ch, const struct spec *plan, int steps)
{
	uint32_t largest = 8;
	for (int i = 0; i < steps; i++)
		if (plan[i].size > largest)
			largest = plan[i].size;
	uint8_t *buf = malloc(largest);
	if (!buf) {
		fail(OP_END, largest, "out-of-memory");
		return 1;
	}
	memset(buf, 0xa5, largest);
	int failed = 0;
	for (int i = 0; i < steps && !failed; i++)
		failed = control_one(ch, &plan[i], buf) != 0;
	if (!failed) {
		struct spec end = { OP_END, 0, 0 };
		arm(OP_END, 0);
		failed = send_spec(ch, &end) != 0;
		disarm();
	}
	free(buf);
	return failed;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: vchan-bench server|client control|respond --peer DOMID --path XS_PATH\n"
		"       [--ring BYTES] [--session NAME] [--plan op:SIZExCOUNT,...] [--wait S] [--op-timeout S]\n"
		"       [--poll]\n");
	exit(2);
}

static unsigned long number(const char *what, const char *text, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno || *end || end == text || v > max) {
		fprintf(stderr, "vchan-bench: bad %s '%s'\n", what, text);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	int server = !strcmp(argv[1], "server");
	int controller = !strcmp(argv[2], "control");
	if ((!server && strcmp(argv[1], "client")) || (!controller && strcmp(argv[2], "respond")))
		usage();
	const char *path = NULL, *plan_text = NULL;
	long peer = -1;
	unsigned long ring = 65536, wait_s = 120;
	for (int i = 3; i < argc; i++) {
		const char *k = argv[i];
		if (!strcmp(k, "--poll")) {
			poll_mode = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(k, "--peer"))
			peer = (long)number("domid", v, 32767);
		else if (!strcmp(k, "--path"))
			path = v;
		else if (!strcmp(k, "--ring"))
			ring = number("ring size", v, 1ul << 20);
		else if (!strcmp(k, "--session"))
			session = v;
		else if (!strcmp(k, "--plan"))
			plan_text = v;
		else if (!strcmp(k, "--wait"))
			wait_s = number("wait", v, 3600);
		else if (!strcmp(k, "--op-timeout"))
			op_timeout_s = (unsigned)number("op timeout", v, 3600);
		else
			usage();
	}
	if (peer < 0 || !path || (controller && !plan_text))
		usage();
	struct spec plan[MAX_PLAN];
	int steps = 0;
	if (controller && (steps = parse_plan(plan_text, plan)) <= 0) {
		fprintf(stderr, "vchan-bench: bad plan '%s' (want op:SIZExCOUNT,... with op push, pull or ping)\n",
			plan_text);
		return 2;
	}
	signal(SIGALRM, on_alarm);
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct libxenvchan *ch = NULL;
	if (server) {
		ch = libxenvchan_server_init(NULL, (int)peer, path, ring, ring);
	} else {
		double deadline = now_us() + wait_s * 1e6;
		while (!(ch = libxenvchan_client_init(NULL, (int)peer, path)) && now_us() < deadline)
			usleep(50000);
	}
	if (!ch) {
		fail(OP_END, 0, server ? "server-init" : "client-init");
		return 1;
	}
	ch->blocking = !poll_mode;
	if (server) {
		/* Wait for the client (cli_live goes from 2 to 1), within the connect wait. */
		arm_for("connect", 0, (unsigned)wait_s);
		while (libxenvchan_is_open(ch) == 2)
			libxenvchan_wait(ch);
		disarm();
		if (libxenvchan_is_open(ch) != 1) {
			fail(OP_END, 0, "client-gone");
			libxenvchan_close(ch);
			return 1;
		}
	}
	printf("vbench-session session=%s impl=libxenvchan vchan=%s bench=%s read_ring=%u write_ring=%u wait=%s\n",
	       session, server ? "server" : "client", controller ? "control" : "respond",
	       1u << ch->read.order, 1u << ch->write.order, poll_mode ? "poll" : "event");
	int rc = controller ? control(ch, plan, steps) : respond(ch);
	libxenvchan_close(ch);
	return rc;
}
